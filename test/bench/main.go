// Command bench is Gantry's benchmark harness (`make bench`). It starts the
// local stack (test/stack: kube-apiserver with the aggregator, a real
// Prometheus, Gantry as a child process) once per value-cache setting, and
// runs these scenarios on it:
//
//   - pods: a Pods metric over N pods behind one label selector. Requests go
//     sequentially through the aggregator, one block per client
//     (-pods-clients; clients.go): the HPA controller's (k8s.io/metrics'
//     custom metrics client, protobuf, no gzip, HTTP/2) and JSON with and
//     without gzip, since Gantry's cost per request depends on what the
//     client asks for. In each block, interleaved, the exact PromQL query
//     Gantry sends is sent straight to Prometheus (and, for reference, the
//     query naming every pod that prometheus-adapter sends). The overhead
//     ratio is Gantry p99 / raw p99. Gantry's CPU comes from
//     /proc/<pid>/stat (user+system, all its threads) before and after the
//     block; its idle CPU, read before the blocks, says how much of that is
//     background work.
//   - fleet: H simulated HPAs, each polling its own Deployment's Pods metric
//     every poll interval with k8s.io/metrics' custom metrics client (as the
//     HPA controller does), for a fixed duration.
//   - discovery: S series (100k, 1M) loaded into Prometheus while Gantry is
//     stopped (backfilled blocks or remote write), then Gantry started: time
//     to the first complete metric list, RSS after it, cost of a relist
//     (discovery.go).
//   - soak: mixed Pods/Object/External requests through the aggregator at a
//     steady rate with periodic bursts, reported per minute (soak.go).
//   - flood: one namespace of N pods flooded through the aggregator with
//     distinct label selectors, then distinct metric selectors, while a few
//     HPA-like pollers go on; Gantry's RSS every second, and whether it
//     stayed under a bound and the pollers kept their answers (flood.go).
//   - thanos (-thanos-pods): on a second stack whose Pods rule is routed to
//     a named backend, Thanos Query over two Prometheus replicas, the pods
//     scenario against Thanos Query; then the rule moves to an HA set of
//     two queriers, the preferred one is killed under steady requests, and
//     latency before and after is reported with Gantry's per-member
//     metrics (thanos.go).
//
// Pods are bound to a node that does not exist: nothing here runs pod GC or
// the node lifecycle controller, so they stay Pending and cost nothing but
// their metadata; the custom metrics API needs nothing else. Each pod has one
// counter series, written by remote write every 5s.
//
// It prints one JSON object per scenario on stdout, then a table.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	cmclient "k8s.io/metrics/pkg/client/custom_metrics"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/stack"
)

const (
	metric   = "http_requests_per_second"
	series   = "http_requests_total"
	nodeName = "bench-unscheduled" // no such Node: pods stay Pending, untouched
)

type flags struct {
	discovery []int
	load      string
	soak      soakFlags
	flood     floodFlags
	thanos    thanosFlags
	pods      []int
	clients   []string
	idle      time.Duration
	requests  int
	ttls      []string
	fleet     []int
	fleetPods int
	fleetNS   int
	fleetDur  time.Duration
	poll      time.Duration
	workDir   string
	binDir    string
	timeout   time.Duration
	relist    time.Duration
	pprofDir  string
	pprofSecs int
	verbose   bool
	gantry    []string // extra Gantry flags

	// The metricrules and explain scenarios' (metricrules.go, explain.go).
	metricRules metricRulesFlags
	explain     explainFlags
}

func main() { os.Exit(run(os.Args[1:], os.Stdout)) }

// run is the whole program, writing JSON lines and the table to out, so
// that a test can run a small configuration of it.
func run(args []string, out io.Writer) int {
	var f flags
	var pods, ttls, fleet, disc, clients string
	flag := flag.NewFlagSet("bench", flag.ContinueOnError)
	flag.StringVar(&disc, "discovery", "", "discovery scenario: comma-separated series counts (ascending), e.g. 100000,1000000; empty skips it")
	flag.StringVar(&f.load, "discovery-load", "backfill", "discovery scenario: how series get into Prometheus: backfill (promtool blocks, Prometheus restarted) or remote-write")
	f.soak.register(flag)
	f.flood.register(flag)
	f.thanos.register(flag)
	f.metricRules.register(flag)
	f.explain.register(flag)
	flag.StringVar(&pods, "pods", "100,1000", "pods scenario: comma-separated pod counts (ascending); empty skips it")
	flag.DurationVar(&f.idle, "idle-window", 10*time.Second, "pods scenario: how long Gantry's CPU is read without requests before the blocks, for its background share (0 skips it)")
	flag.IntVar(&f.requests, "requests", 200, "pods scenario: sequential requests per pod count and client")
	flag.StringVar(&clients, "pods-clients", strings.Join(podsClients, ","), "pods scenario: comma-separated clients, one block of requests each: "+
		"hpa (k8s.io/metrics' custom metrics client configured as kube-controller-manager's HPA controller: protobuf, no gzip, HTTP/2), "+
		"json (JSON, gzip accepted), json-nogzip (JSON, identity)")
	flag.StringVar(&ttls, "value-cache-ttl", "0,5s", "comma-separated --value-cache-ttl values; one stack each")
	flag.StringVar(&fleet, "hpas", "", "fleet scenario: comma-separated HPA counts, e.g. 100,1000; empty skips it")
	flag.IntVar(&f.fleetPods, "hpa-pods", 3, "fleet scenario: pods per HPA")
	flag.IntVar(&f.fleetNS, "hpa-namespaces", 10, "fleet scenario: namespaces the HPAs are spread over")
	flag.DurationVar(&f.fleetDur, "hpa-duration", time.Minute, "fleet scenario: how long the HPAs poll")
	flag.DurationVar(&f.poll, "hpa-poll", 15*time.Second, "fleet scenario: poll interval of each HPA")
	flag.StringVar(&f.workDir, "workdir", "", "where the stacks keep their files (default: a temporary directory, removed)")
	flag.StringVar(&f.binDir, "bin", "", "directory of gantry and the tools (default $GANTRY_BIN_DIR or <repo>/bin)")
	flag.DurationVar(&f.timeout, "timeout", 30*time.Minute, "bound of the whole run")
	flag.DurationVar(&f.relist, "relist", 30*time.Second, "Gantry's --metrics-relist-interval")
	flag.StringVar(&f.pprofDir, "pprof-dir", "", "write a CPU profile of Gantry during each pods scenario's requests into this directory")
	flag.IntVar(&f.pprofSecs, "pprof-seconds", 8, "length of each -pprof-dir profile, from the start of a block's requests (make the block at least this long with -requests)")
	flag.BoolVar(&f.verbose, "v", false, "log the stack's progress")
	flag.Func("gantry-flag", "an extra flag for Gantry, e.g. -gantry-flag=--backend-max-in-flight=8; repeatable (Gantry otherwise runs with its defaults but --value-cache-ttl)", func(v string) error {
		f.gantry = append(f.gantry, v)
		return nil
	})
	var kubeletNodes string
	var kubeletDur time.Duration
	flag.StringVar(&kubeletNodes, "kubelet-nodes", "", "kubelet scenario: comma-separated node counts (ascending), 10 pods each, e.g. 10,100,1000; per-node figures are slopes from the first count; Gantry's kubelet collector and metrics-server side by side; empty skips it")
	flag.DurationVar(&kubeletDur, "kubelet-duration", 2*time.Minute, "kubelet scenario: measurement window per node count")
	if err := flag.Parse(args); err != nil {
		return 2
	}
	var err error
	if f.discovery, err = ints(disc); err != nil {
		return fail(fmt.Errorf("-discovery: %w", err))
	}
	if f.load != "backfill" && f.load != "remote-write" {
		return fail(fmt.Errorf("-discovery-load: %q is neither backfill nor remote-write", f.load))
	}
	if f.pods, err = ints(pods); err != nil {
		return fail(fmt.Errorf("-pods: %w", err))
	}
	for _, c := range strings.Split(clients, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if !slices.Contains(podsClients, c) {
			return fail(fmt.Errorf("-pods-clients: %q is none of %s", c, strings.Join(podsClients, ", ")))
		}
		f.clients = append(f.clients, c)
	}
	if len(f.pods) > 0 && len(f.clients) == 0 {
		return fail(errors.New("-pods-clients: the pods scenario needs a client"))
	}
	if f.fleet, err = ints(fleet); err != nil {
		return fail(fmt.Errorf("-hpas: %w", err))
	}
	if err := f.flood.validate(); err != nil {
		return fail(err)
	}
	kubeletN, err := ints(kubeletNodes)
	if err != nil {
		return fail(fmt.Errorf("-kubelet-nodes: %w", err))
	}
	for _, s := range strings.Split(ttls, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if s == "0" {
			s = "0s"
		}
		if _, err := time.ParseDuration(s); err != nil {
			return fail(fmt.Errorf("-value-cache-ttl: %w", err))
		}
		f.ttls = append(f.ttls, s)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, f.timeout)
	defer cancelT()

	if f.workDir == "" {
		dir, err := os.MkdirTemp("", "gantry-bench-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		f.workDir = dir
	}
	var results []result
	for _, ttl := range f.ttls {
		rs, err := runStack(ctx, f, ttl, out)
		results = append(results, rs...)
		if err == nil && len(f.thanos.pods) > 0 {
			rs, err = runThanos(ctx, f, ttl, out)
			results = append(results, rs...)
		}
		if err != nil {
			printTable(out, results)
			return fail(err)
		}
	}
	var kubeletRs []kubeletResult
	if len(kubeletN) > 0 {
		logf := func(string, ...any) {}
		if f.verbose {
			logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
		}
		kubeletRs, err = runKubeletScenario(ctx, f.binDir, filepath.Join(f.workDir, "kubelet"), kubeletN, 10, kubeletDur, logf)
		for _, r := range kubeletRs {
			data, _ := json.Marshal(r)
			fmt.Fprintln(out, string(data))
		}
	}
	printTable(out, results)
	printKubeletTable(out, kubeletRs)
	if err != nil {
		return fail(err)
	}
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "bench:", err)
	return 1
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive count", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// latencies are in milliseconds.
type latencies struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type result struct {
	Scenario string `json:"scenario"`
	Client   string `json:"client,omitempty"`  // pods scenario: -pods-clients
	Started  string `json:"started,omitempty"` // UTC, for matching runs with the machine's load
	LoadAvg  string `json:"loadavg,omitempty"` // /proc/loadavg when the scenario started
	// CalibrationMs is calibrate's figure when the scenario started: CPU
	// figures are comparable only at similar values of it.
	CalibrationMs float64  `json:"calibration_cpu_ms,omitempty"`
	Cores         int      `json:"cores"`
	ValueCacheTTL string   `json:"value_cache_ttl"`
	GantryFlags   []string `json:"gantry_flags,omitempty"` // -gantry-flag
	Pods          int      `json:"pods"`
	HPAs          int      `json:"hpas,omitempty"`
	Requests      int      `json:"requests"`
	Errors        int      `json:"errors"`
	RequestsPerS  float64  `json:"requests_per_second,omitempty"`

	Wire     *wire      `json:"wire,omitempty"` // pods scenario: what its client sent and got
	Gantry   latencies  `json:"gantry_ms"`
	Raw      *latencies `json:"raw_query_ms,omitempty"`
	RawNames *latencies `json:"raw_names_query_ms,omitempty"`
	// Hop is the aggregator's own share: a small request Gantry answers
	// from memory (its external.metrics.k8s.io discovery document) through
	// the same path, measured after the CPU figures are taken.
	Hop *latencies `json:"aggregator_hop_ms,omitempty"`
	// HandlerMeanMs is the mean time Gantry spent on a request by its own
	// clock (gantry_request_duration_seconds), QueryMeanMs the mean of its
	// backend queries (gantry_backend_request_duration_seconds).
	HandlerMeanMs float64 `json:"gantry_handler_mean_ms,omitempty"`
	QueryMeanMs   float64 `json:"gantry_query_mean_ms,omitempty"`
	// OverheadP99 is Gantry p99 / raw query p99, OverheadP50 the same at p50.
	OverheadP99 float64 `json:"overhead_p99,omitempty"`
	OverheadP50 float64 `json:"overhead_p50,omitempty"`

	GantryCPUPer1000 float64 `json:"gantry_cpu_seconds_per_1000_requests"`
	GantryCores      float64 `json:"gantry_cores,omitempty"`
	// GantryIdleCores is Gantry's CPU without requests (relists, informers,
	// its own loops), read over -idle-window before the pods scenario's
	// blocks; GantryIdlePer1000 is the share of GantryCPUPer1000 it
	// accounts for over the block's wall time (BlockSeconds), whatever
	// the requests cost.
	GantryIdleCores     *float64 `json:"gantry_idle_cores,omitempty"`
	GantryIdlePer1000   *float64 `json:"gantry_idle_cpu_seconds_per_1000_requests,omitempty"`
	BlockSeconds        float64  `json:"block_seconds,omitempty"`
	APIServerCPUPer1000 float64  `json:"apiserver_cpu_seconds_per_1000_requests"`
	GantryRSSMiB        float64  `json:"gantry_rss_mib"`
	// GantryAllocKiBPerRequest is what Gantry allocated on its heap per
	// request (go_memstats_alloc_bytes_total), GantryGCCycles the
	// collections it ran meanwhile (go_gc_duration_seconds_count): the
	// garbage collector's share of the CPU follows them.
	GantryAllocKiBPerRequest float64 `json:"gantry_alloc_kib_per_request,omitempty"`
	GantryGCCycles           float64 `json:"gantry_gc_cycles,omitempty"`
	BackendQueries           float64 `json:"backend_queries"`
	CacheHits                float64 `json:"cache_hits"`
	CacheMisses              float64 `json:"cache_misses"`
	Query                    string  `json:"query,omitempty"`
	QueryBytes               int     `json:"query_bytes,omitempty"`
	NamesQueryBytes          int     `json:"names_query_bytes,omitempty"`

	Discovery *discoveryResult `json:"discovery,omitempty"`
	Soak      *soakResult      `json:"soak,omitempty"`
	Flood     *floodResult     `json:"flood,omitempty"`
	Failover  *failoverResult  `json:"failover,omitempty"`
	// MetricRules and Explain are the metricrules and explain scenarios'
	// (metricrules.go, explain.go).
	MetricRules *metricRulesResult `json:"metricrules,omitempty"`
	Explain     *explainResult     `json:"explain,omitempty"`
}

// bench is one running stack and its clients.
type bench struct {
	out    io.Writer
	f      flags
	ttl    string
	st     *stack.Stack
	kube   kubernetes.Interface
	hc     *http.Client // to the kube-apiserver, as admin
	gantry *http.Client // to Gantry's /metrics, as admin
	prom   *http.Client
	feed   *stack.Feeder
	rule   *rules.Rule
	pods   map[string]int // pods created per namespace

	discLoaded  int          // series of the discovery scenario in Prometheus
	plainGantry *http.Client // b.gantry without compression
	rawURL      string       // where rawQuery sends queries; "" is the stack's Prometheus
}

func runStack(ctx context.Context, f flags, ttl string, out io.Writer) (results []result, err error) {
	logf := func(string, ...any) {}
	if f.verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	fmt.Fprintf(os.Stderr, "bench: starting the stack with --value-cache-ttl=%s\n", ttl)
	st, err := stack.Start(ctx, stack.Options{
		BinDir:         f.binDir,
		WorkDir:        filepath.Join(f.workDir, "ttl-"+ttl),
		Logf:           logf,
		RelistInterval: f.relist,
		Rules:          benchRules,
		Cluster:        cluster.Options{APIServerFlags: []string{"--max-requests-inflight=2000"}},
		GantryArgs:     append([]string{"--value-cache-ttl=" + ttl, "--v=1"}, f.gantry...),
	})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, st.Stop()) }()

	b, err := newBench(out, f, ttl, st)
	if err != nil {
		return nil, err
	}
	b.feed = stack.NewFeeder(st.Prom, 5*time.Second)
	feedCtx, stopFeed := context.WithCancel(ctx)
	var feedWG sync.WaitGroup
	feedWG.Add(1)
	go func() {
		defer feedWG.Done()
		b.feed.Run(feedCtx, func(err error) { fmt.Fprintln(os.Stderr, "bench: feeder:", err) })
	}()
	defer func() { stopFeed(); feedWG.Wait() }()

	for _, n := range f.pods {
		rs, err := b.podsScenario(ctx, n)
		for _, r := range rs {
			b.emit(r)
		}
		results = append(results, rs...)
		if err != nil {
			return results, fmt.Errorf("pods scenario, %d pods, ttl %s: %w", n, ttl, err)
		}
	}
	for _, h := range f.fleet {
		r, err := b.fleetScenario(ctx, h)
		if err != nil {
			return results, fmt.Errorf("fleet scenario, %d HPAs, ttl %s: %w", h, ttl, err)
		}
		b.emit(r)
		results = append(results, r)
	}
	if f.soak.duration > 0 {
		r, err := b.soakScenario(ctx)
		if err != nil {
			return results, fmt.Errorf("soak scenario, ttl %s: %w", ttl, err)
		}
		b.emit(r)
		results = append(results, r)
	}
	if f.flood.pods > 0 {
		// Its figures are printed when it fails too: a failure is a
		// measurement.
		r, err := b.floodScenario(ctx)
		if r.Flood != nil {
			b.emit(r)
			results = append(results, r)
		}
		if err != nil {
			return results, fmt.Errorf("flood scenario, %d pods, ttl %s: %w", f.flood.pods, ttl, err)
		}
	}
	if f.metricRules.rules > 0 {
		rs, err := b.metricRulesScenario(ctx)
		for _, r := range rs {
			b.emit(r)
		}
		results = append(results, rs...)
		if err != nil {
			return results, fmt.Errorf("metricrules scenario, %d rules, ttl %s: %w", f.metricRules.rules, ttl, err)
		}
	}
	if f.explain.calls > 0 {
		r, err := b.explainScenario(ctx)
		if err != nil {
			return results, fmt.Errorf("explain scenario, %d calls, ttl %s: %w", f.explain.calls, ttl, err)
		}
		b.emit(r)
		results = append(results, r)
	}
	// Last: it stops and restarts Gantry and Prometheus.
	for _, s := range f.discovery {
		r, err := b.discoveryScenario(ctx, s)
		if err != nil {
			return results, fmt.Errorf("discovery scenario, %d series, ttl %s: %w", s, ttl, err)
		}
		b.emit(r)
		results = append(results, r)
	}
	return results, nil
}

// newBench is the bench's clients of a running stack.
func newBench(out io.Writer, f flags, ttl string, st *stack.Stack) (*bench, error) {
	b := &bench{out: out, f: f, ttl: ttl, st: st, pods: map[string]int{}}
	var err error
	cfg := st.Cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 2000, 4000
	if b.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if b.hc, err = rest.HTTPClientFor(cfg); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
	if err != nil {
		return nil, err
	}
	b.gantry = st.GantryClient()
	tr := b.gantry.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	b.gantry.Transport = tr
	b.prom = &http.Client{Timeout: 30 * time.Second}
	if b.rule, err = podsRule(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *bench) emit(r result) {
	r.GantryFlags = b.f.gantry
	data, _ := json.Marshal(r)
	fmt.Fprintln(b.out, string(data))
}

// stamp fills the scenario's start time and the machine's load then: the
// machine may be shared.
func stamp(r *result) {
	r.CalibrationMs = calibrate()
	r.Started = time.Now().UTC().Format(time.RFC3339)
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(data))
		if len(f) >= 3 {
			r.LoadAvg = strings.Join(f[:3], " ")
		}
	}
}

// podsRule is the compiled Pods rule of the stack's config, to build the
// exact queries Gantry sends.
func podsRule() (*rules.Rule, error) {
	cfg, err := config.Parse([]byte(stack.DefaultRules), "rules.yaml")
	if err != nil {
		return nil, err
	}
	m := benchMapper()
	custom, _, _, err := rules.CompileConfig(cfg, "rules.yaml", m)
	if err != nil {
		return nil, err
	}
	for _, r := range custom {
		if name, ok := r.MetricName(series); ok && name == metric {
			return r, nil
		}
	}
	return nil, errors.New("no rule for " + series + " in stack.DefaultRules")
}

// ensurePods creates pods name-0..name-(n-1) in namespace with label
// app=name, each with a counter series, and returns their names.
func (b *bench) ensurePods(ctx context.Context, namespace, app string, n int) ([]string, error) {
	if err := b.st.EnsureNamespace(ctx, namespace); err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%05d", app, i)
	}
	key := namespace + "/" + app
	have := b.pods[key]
	if have >= n {
		return names, nil
	}
	work := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: names[i], Namespace: namespace, Labels: map[string]string{"app": app}},
					Spec: corev1.PodSpec{
						NodeName:   nodeName,
						Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
					},
				}
				if _, err := b.kube.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					select {
					case errs <- fmt.Errorf("creating pod %s/%s: %w", namespace, names[i], err):
					default:
					}
				}
			}
		}()
	}
	begin := time.Now()
feed:
	for i := have; i < n; i++ {
		select {
		case work <- i:
		case err := <-errs:
			errs <- err
			break feed
		}
		b.feed.SetRate(map[string]string{"__name__": series, "namespace": namespace, "pod": names[i]}, float64(1+i%10))
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	b.pods[key] = n
	if n-have > 100 {
		fmt.Fprintf(os.Stderr, "bench: %d pods in %s/%s (%d created in %s)\n", n, namespace, app, n-have, time.Since(begin).Round(time.Millisecond))
	}
	// The feeder's own loop writes them within a step; flushing here too
	// could send two flushes out of order.
	return names, nil
}

func (b *bench) customURL(namespace, app string) string {
	return b.st.Cluster.URL() + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + namespace + "/pods/*/" + metric +
		"?labelSelector=" + url.QueryEscape("app="+app)
}

// waitItems waits until Gantry answers with want items: the metric is
// discovered, the pods are in its object cache and every series has values.
func (b *bench) waitItems(ctx context.Context, u string, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 3*b.f.relist+2*time.Minute)
	defer cancel()
	last := ""
	for {
		body, code, err := get(ctx, b.hc, u)
		if err == nil && code == http.StatusOK {
			var list struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(body, &list); err == nil && len(list.Items) == want {
				return nil
			}
			last = fmt.Sprintf("%d items", len(list.Items))
		} else if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", code, firstLine(string(body)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d items from %s: last answer %s", want, u, last)
		case <-time.After(time.Second):
		}
	}
}

func (b *bench) podsScenario(ctx context.Context, n int) ([]result, error) {
	const ns, app = "bench", "web"
	names, err := b.ensurePods(ctx, ns, app, n)
	if err != nil {
		return nil, err
	}
	if err := b.waitItems(ctx, b.customURL(ns, app), n); err != nil {
		return nil, err
	}
	q, err := b.rule.NamespaceQuery(series, rules.Pods, ns, labels.Everything())
	if err != nil {
		return nil, err
	}
	nq, err := b.rule.ObjectQuery(series, rules.Pods, ns, names, labels.Everything())
	if err != nil {
		return nil, err
	}
	idle := -1.0
	if b.f.idle > 0 {
		if idle, err = b.idleCores(ctx, b.f.idle); err != nil {
			return nil, err
		}
	}
	var rs []result
	for _, name := range b.f.clients {
		c, err := b.podsClient(name, ns, app)
		if err != nil {
			return rs, err
		}
		r, err := b.podsRun(ctx, n, c, q.Text, nq.Text)
		if err != nil {
			return rs, fmt.Errorf("client %s: %w", name, err)
		}
		if idle >= 0 {
			cores, per := round(idle, 4), round(idle*r.BlockSeconds*1000/float64(max(r.Requests, 1)), 3)
			r.GantryIdleCores, r.GantryIdlePer1000 = &cores, &per
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// idleCores is Gantry's CPU over d without requests, in cores.
func (b *bench) idleCores(ctx context.Context, d time.Duration) (float64, error) {
	pid := b.st.GantryPID()
	c0, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	c1, err := procCPU(pid)
	if err != nil {
		return 0, err
	}
	return (c1 - c0) / time.Since(t0).Seconds(), nil
}

// podsRun is one block of sequential requests of one client: Gantry's CPU
// around the block is that client's.
func (b *bench) podsRun(ctx context.Context, n int, c *podsClient, q, nq string) (result, error) {
	get := func() error {
		items, err := c.list(ctx)
		if err == nil && items != n {
			err = fmt.Errorf("%d items, want %d", items, n)
		}
		return err
	}
	// Warm up connections and caches on both paths.
	for range 10 {
		if err := get(); err != nil {
			return result{}, err
		}
		if err := b.rawQuery(ctx, q); err != nil {
			return result{}, err
		}
	}
	c.obs.reset()
	r := result{Scenario: "pods", Client: c.name, Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl, Pods: n, Requests: b.f.requests,
		Query: q, QueryBytes: len(q), NamesQueryBytes: len(nq)}
	stamp(&r)
	before, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}
	stopProfile := b.profile(ctx, fmt.Sprintf("gantry-pods-%d-ttl-%s-%s.pprof", n, b.ttl, c.name))
	defer stopProfile()
	var gt, rt, nt []time.Duration
	var lastErr error
	for i := range b.f.requests {
		t0 := time.Now()
		if err := get(); err != nil {
			r.Errors++
			lastErr = err
			if r.Errors > b.f.requests/10 {
				return r, err
			}
		}
		gt = append(gt, time.Since(t0))
		t0 = time.Now()
		if err := b.rawQuery(ctx, q); err != nil {
			return r, err
		}
		rt = append(rt, time.Since(t0))
		if i%4 == 0 { // the query naming every pod, for reference
			t0 = time.Now()
			if err := b.rawQuery(ctx, nq); err != nil {
				return r, err
			}
			nt = append(nt, time.Since(t0))
		}
	}
	after, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}
	r.BlockSeconds = round(after.at.Sub(before.at).Seconds(), 3)
	if lastErr != nil {
		fmt.Fprintf(os.Stderr, "bench: pods %d, client %s: %d errors, last: %v\n", n, c.name, r.Errors, lastErr)
	}
	r.Wire = c.obs.wire()
	r.Gantry = percentiles(gt)
	raw, rawNames := percentiles(rt), percentiles(nt)
	r.Raw, r.RawNames = &raw, &rawNames
	r.OverheadP99 = round(r.Gantry.P99/raw.P99, 2)
	r.OverheadP50 = round(r.Gantry.P50/raw.P50, 2)
	after.fill(&r, before, b.f.requests)
	var ht []time.Duration
	for range b.f.requests {
		t0 := time.Now()
		if _, err := b.okGet(ctx, b.st.Cluster.URL()+"/apis/external.metrics.k8s.io/v1beta1"); err != nil {
			return r, err
		}
		ht = append(ht, time.Since(t0))
	}
	hop := percentiles(ht)
	r.Hop = &hop
	return r, nil
}

// fleetScenario runs h HPAs, each with its own Deployment-like set of pods
// (label app=hpa-<i>), spread over namespaces, polling through the
// aggregator with k8s.io/metrics' client as the HPA controller does.
func (b *bench) fleetScenario(ctx context.Context, h int) (result, error) {
	type hpa struct{ ns, app string }
	hpas := make([]hpa, h)
	for i := range hpas {
		hpas[i] = hpa{ns: fmt.Sprintf("fleet-%02d", i%b.f.fleetNS), app: fmt.Sprintf("hpa-%04d", i)}
		if _, err := b.ensurePods(ctx, hpas[i].ns, hpas[i].app, b.f.fleetPods); err != nil {
			return result{}, err
		}
	}
	if err := b.waitItems(ctx, b.customURL(hpas[h-1].ns, hpas[h-1].app), b.f.fleetPods); err != nil {
		return result{}, err
	}
	client, err := b.metricsClient(0, nil)
	if err != nil {
		return result{}, err
	}

	var r result
	stamp(&r)
	before, err := b.snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	targets := make([]fleetTarget, len(hpas))
	for i, x := range hpas {
		targets[i] = fleetTarget{ns: x.ns, app: x.app, metric: metric}
	}
	lat, errs, lastEr, wall := b.poll(ctx, client, targets, b.f.fleetPods)
	after, err := b.snapshot(ctx)
	if err != nil {
		return result{}, err
	}
	if lastEr != nil {
		fmt.Fprintf(os.Stderr, "bench: fleet of %d: %d errors, last: %v\n", h, errs, lastEr)
	}
	r = result{Scenario: "fleet", Client: clientHPA, Started: r.Started, LoadAvg: r.LoadAvg, CalibrationMs: r.CalibrationMs, Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl, Pods: h * b.f.fleetPods, HPAs: h,
		Requests: len(lat), Errors: errs, RequestsPerS: round(float64(len(lat))/wall.Seconds(), 1), Gantry: percentiles(lat)}
	after.fill(&r, before, len(lat))
	r.GantryCores = round((after.gantryCPU-before.gantryCPU)/after.at.Sub(before.at).Seconds(), 3)
	return r, nil
}

// fleetTarget is what one HPA-like poller asks for: the Pods metric of
// the pods labelled app in ns.
type fleetTarget struct{ ns, app, metric string }

// poll runs one poller per target, each every -hpa-poll from a random
// phase (as HPAs created at different times have) for -hpa-duration,
// through client as the HPA controller asks; an answer without want
// items is an error. It returns every request's latency, the errors and
// the last one, and the wall time.
func (b *bench) poll(ctx context.Context, client cmclient.CustomMetricsClient, targets []fleetTarget, want int) (lat []time.Duration, errs int, lastErr error, wall time.Duration) {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	begin := time.Now()
	end := begin.Add(b.f.fleetDur)
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sel := labels.SelectorFromSet(labels.Set{"app": t.app})
			next := begin.Add(time.Duration(rand.Int64N(int64(b.f.poll))))
			for next.Before(end) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				t0 := time.Now()
				list, err := client.NamespacedMetrics(t.ns).GetForObjects(schema.GroupKind{Kind: "Pod"}, sel, t.metric, labels.Everything())
				d := time.Since(t0)
				if err == nil && len(list.Items) != want {
					err = fmt.Errorf("%s/%s %s: %d items, want %d", t.ns, t.app, t.metric, len(list.Items), want)
				}
				mu.Lock()
				lat = append(lat, d)
				if err != nil {
					errs++
					lastErr = err
				}
				mu.Unlock()
				next = next.Add(b.f.poll)
			}
		}()
	}
	wg.Wait()
	return lat, errs, lastErr, time.Since(begin)
}

// metricsClient is k8s.io/metrics' custom metrics client as the HPA
// controller uses it, each request bounded by timeout (0: unbounded);
// wrap, if not nil, wraps its transport.
func (b *bench) metricsClient(timeout time.Duration, wrap func(http.RoundTripper) http.RoundTripper) (cmclient.CustomMetricsClient, error) {
	cfg := b.st.Cluster.RESTConfig()
	cfg.QPS, cfg.Burst = 10000, 20000
	cfg.Timeout = timeout
	// kube-controller-manager's clients, the HPA controller's among them,
	// ask for protobuf (--kube-api-content-type's default) and not for
	// gzip (it sets DisableCompression on its kubeconfig).
	cfg.ContentType = kruntime.ContentTypeProtobuf
	cfg.DisableCompression = true
	kube, err := kubernetes.NewForConfig(cfg) // discovery, not observed
	if err != nil {
		return nil, err
	}
	if wrap != nil {
		cfg = rest.CopyConfig(cfg)
		cfg.Wrap(wrap)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Discovery()))
	return cmclient.NewForConfig(cfg, mapper, cmclient.NewAvailableAPIsGetter(kube.Discovery())), nil
}

// profile records a -pprof-seconds CPU profile of Gantry (/debug/pprof/profile, from
// the start of the requests) into -pprof-dir; stop waits for it.
func (b *bench) profile(ctx context.Context, name string) (stop func()) {
	if b.f.pprofDir == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := &http.Client{Transport: b.gantry.Transport}
		body, code, err := get(ctx, hc, b.st.GantryURL+"/debug/pprof/profile?seconds="+strconv.Itoa(max(b.f.pprofSecs, 1)))
		if err != nil || code != http.StatusOK {
			fmt.Fprintf(os.Stderr, "bench: profile %s: %d %v\n", name, code, err)
			return
		}
		if err := os.MkdirAll(b.f.pprofDir, 0o755); err == nil {
			err = os.WriteFile(filepath.Join(b.f.pprofDir, name), body, 0o644)
		}
	}()
	return func() { <-done; cancel() }
}

// snapshot is what is read from /proc and Gantry's /metrics around a run.
type snapshot struct {
	at           time.Time
	gantryCPU    float64 // seconds
	apiserverCPU float64
	rssMiB       float64
	metrics      map[string]float64
}

func (b *bench) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{at: time.Now()}
	var err error
	if s.gantryCPU, err = procCPU(b.st.GantryPID()); err != nil {
		return s, err
	}
	if s.apiserverCPU, err = procCPU(b.st.Cluster.PIDs()[cluster.APIServer]); err != nil {
		return s, err
	}
	if s.rssMiB, err = procRSS(b.st.GantryPID()); err != nil {
		return s, err
	}
	body, code, err := get(ctx, b.gantry, b.st.GantryURL+"/metrics")
	if err != nil || code != http.StatusOK {
		return s, fmt.Errorf("gantry /metrics: %d %v", code, err)
	}
	s.metrics = parseMetrics(body, map[string]bool{
		`gantry_value_cache_requests_total{result="hit"}`:  true,
		`gantry_value_cache_requests_total{result="miss"}`: true,
		"go_memstats_alloc_bytes_total":                    true,
		"go_gc_duration_seconds_count":                     true,
	}, "gantry_backend_request_duration_seconds_count")
	return s, nil
}

func (after snapshot) fill(r *result, before snapshot, requests int) {
	per := 1000 / float64(max(requests, 1))
	r.GantryCPUPer1000 = round((after.gantryCPU-before.gantryCPU)*per, 3)
	r.APIServerCPUPer1000 = round((after.apiserverCPU-before.apiserverCPU)*per, 3)
	r.GantryRSSMiB = round(after.rssMiB, 1)
	d := func(k string) float64 { return after.metrics[k] - before.metrics[k] }
	r.CacheHits = d(`gantry_value_cache_requests_total{result="hit"}`)
	r.CacheMisses = d(`gantry_value_cache_requests_total{result="miss"}`)
	r.BackendQueries = d(`queries`)
	r.GantryAllocKiBPerRequest = round(d("go_memstats_alloc_bytes_total")/1024/float64(max(requests, 1)), 1)
	r.GantryGCCycles = d("go_gc_duration_seconds_count")
	if n := d("handler_requests"); n > 0 {
		r.HandlerMeanMs = round(1000*d("handler_seconds")/n, 2)
	}
	if n := d("queries"); n > 0 {
		r.QueryMeanMs = round(1000*d("query_seconds")/n, 2)
	}
}

// parseMetrics reads the wanted samples of a text exposition, and sums the
// query calls of the backend histogram's _count as "queries".
func parseMetrics(body []byte, want map[string]bool, countName string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		switch {
		case want[name]:
			out[name] = v
		case strings.HasPrefix(name, countName) && strings.Contains(name, `call="query"`):
			out["queries"] += v
		case strings.HasPrefix(name, "gantry_backend_request_duration_seconds_sum") && strings.Contains(name, `call="query"`):
			out["query_seconds"] += v
		case strings.HasPrefix(name, "gantry_request_duration_seconds_sum"):
			out["handler_seconds"] += v
		case strings.HasPrefix(name, "gantry_request_duration_seconds_count"):
			out["handler_requests"] += v
		}
	}
	return out
}

func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

func (b *bench) okGet(ctx context.Context, u string) ([]byte, error) {
	body, code, err := get(ctx, b.hc, u)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", u, code, firstLine(string(body)))
	}
	return body, nil
}

func get(ctx context.Context, hc *http.Client, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

// rawQuery sends an instant query straight to Prometheus as Gantry's client
// does (POST, evaluated now) and reads the whole answer.
func (b *bench) rawQuery(ctx context.Context, q string) error {
	form := url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64)}}
	u := b.st.Prom.URL()
	if b.rawURL != "" {
		u = b.rawURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+"/api/v1/query", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.prom.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("prometheus: %d %s", resp.StatusCode, firstLine(string(body)))
	}
	return nil
}

func percentiles(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return round(float64(s[max(i, 0)])/float64(time.Millisecond), 2)
	}
	return latencies{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: at(1)}
}

func round(v float64, digits int) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// firstLine shortens an error or a response body to one line for a
// message (see proc.FirstLine).
var firstLine = proc.FirstLine

func printTable(out io.Writer, all []result) {
	var rs []result
	for _, r := range all {
		if r.Discovery == nil && r.Soak == nil && r.Flood == nil && r.Failover == nil && r.MetricRules == nil && r.Explain == nil {
			rs = append(rs, r)
		}
	}
	defer printDiscoveryTable(out, all)
	defer printSoakTable(out, all)
	defer printFloodTable(out, all)
	defer printFailoverTable(out, all)
	defer printMetricRulesTable(out, all)
	defer printExplainTable(out, all)
	if len(rs) == 0 {
		return
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "SCENARIO\tCLIENT\tTTL\tPODS\tHPAS\tREQ\tERR\tREQ/S\tGANTRY p50/p95/p99 ms\tRAW p50/p99 ms\tHOP p50/p99 ms\tOVERHEAD p99\tNAMES-QUERY p99 ms\tCPU s/1000 req\tOF IT IDLE\tALLOC KiB/req\tAPISERVER s/1000\tRSS MiB\tBACKEND Q\tHIT RATE\tCAL ms\t")
	for _, r := range rs {
		raw, names, over, hop := "-", "-", "-", "-"
		if r.Hop != nil {
			hop = fmt.Sprintf("%.1f/%.1f", r.Hop.P50, r.Hop.P99)
		}
		if r.Raw != nil {
			raw = fmt.Sprintf("%.1f/%.1f", r.Raw.P50, r.Raw.P99)
			names = fmt.Sprintf("%.1f", r.RawNames.P99)
			over = fmt.Sprintf("%.2f×", r.OverheadP99)
		}
		hit := "-"
		if t := r.CacheHits + r.CacheMisses; t > 0 {
			hit = fmt.Sprintf("%.0f%%", 100*r.CacheHits/t)
		}
		hpas, rps, client, idle := "-", "-", "-", "-"
		if r.GantryIdlePer1000 != nil {
			idle = fmt.Sprintf("%.3f", *r.GantryIdlePer1000)
		}
		if r.Client != "" {
			client = r.Client
		}
		if r.HPAs > 0 {
			hpas, rps = strconv.Itoa(r.HPAs), fmt.Sprintf("%.1f", r.RequestsPerS)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\t%.1f/%.1f/%.1f\t%s\t%s\t%s\t%s\t%.3f\t%s\t%.0f\t%.3f\t%.0f\t%.0f\t%s\t%.1f\t\n",
			r.Scenario, client, r.ValueCacheTTL, r.Pods, hpas, r.Requests, r.Errors, rps, r.Gantry.P50, r.Gantry.P95, r.Gantry.P99,
			raw, hop, over, names, r.GantryCPUPer1000, idle, r.GantryAllocKiBPerRequest, r.APIServerCPUPer1000, r.GantryRSSMiB, r.BackendQueries, hit, r.CalibrationMs)
	}
	w.Flush()
}

// benchMapper maps the resources the stack's rules name, as the cluster
// does, so the bench can compile them without asking the cluster.
func benchMapper() apimeta.RESTMapper {
	core := schema.GroupVersion{Version: "v1"}
	m := apimeta.NewDefaultRESTMapper([]schema.GroupVersion{core})
	m.Add(core.WithKind("Pod"), apimeta.RESTScopeNamespace)
	m.Add(core.WithKind("Service"), apimeta.RESTScopeNamespace)
	m.Add(core.WithKind("Namespace"), apimeta.RESTScopeRoot)
	m.Add(core.WithKind("Node"), apimeta.RESTScopeRoot)
	return m
}
