package main

// The kubelet scenario: what Gantry's kubelet collector (metrics.k8s.io
// straight from the kubelets, --resource-metrics=kubelet) costs per node,
// next to metrics-server v0.9.0 doing the same job against the same
// simulated kubelets in the same run.
//
// For each node count N there is one fresh stack (test/stack) whose cluster
// has KubeletMetrics: kwok's simulated kubelets behind the harness' TLS
// KubeletProxy, one listener per fake node address. Gantry runs with a
// config without rules (so it does nothing but the kubelet collector and its
// API server) and metrics-server runs beside it, both scraping every node at
// the same resolution. N nodes with podsPerNode pods each are created (usage
// set by annotations), both processes must serve every PodMetrics and
// NodeMetrics, then after a warm-up of two scrape rounds each process' CPU
// (/proc/<pid>/stat utime+stime) and RSS (/proc/<pid>/status VmRSS, sampled)
// are measured over the given duration. Afterwards both must still serve
// everything, with fresh timestamps, so a broken scrape cannot look cheap.
//
// Per-node cost is the slope between the run's smallest node count (the
// base) and N: (value(N) − value(base)) / (N − base). That removes each
// process' fixed cost (its API server, informers, Go runtime) as the issue's
// figures for metrics-server do ("0.033 mCPU and 0.18 MB RSS per node on top
// of a ≈ 75 MB base"). With a single node count there is no slope; the
// totals are reported alone.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	// kubeletResolution is both processes' scrape interval: Gantry's
	// --kubelet-scrape-interval and metrics-server's --metric-resolution.
	kubeletResolution = 15 * time.Second
	// kubeletWarmupRounds scrape rounds pass between both processes serving
	// every pod and the start of the measurement.
	kubeletWarmupRounds = 2
	// kubeletRSSEvery is how often RSS is sampled during the measurement.
	kubeletRSSEvery = 5 * time.Second
	// kubeletRules is Gantry's config: no rules, so only the kubelet
	// collector and the API server run.
	kubeletRules = "rules: []\n"
)

// kubeletResult is the kubelet scenario at one node count.
type kubeletResult struct {
	Scenario    string  `json:"scenario"` // "kubelet"
	Started     string  `json:"started"`
	LoadAvg     string  `json:"loadavg"`     // /proc/loadavg at the start of the measurement
	LoadAvgEnd  string  `json:"loadavg_end"` // and at its end
	Cores       int     `json:"cores"`
	MachineBusy float64 `json:"machine_busy"` // share of all cores busy during the measurement (/proc/stat)
	Nodes       int     `json:"nodes"`
	PodsPerNode int     `json:"pods_per_node"`
	Resolution  string  `json:"resolution"`
	Seconds     float64 `json:"seconds"` // length of the measurement

	Gantry        kubeletProcess `json:"gantry"`
	MetricsServer kubeletProcess `json:"metrics_server"`

	// BaseNodes is the node count the per-node figures are measured from
	// (the run's smallest); 0 when this is the base itself or the run had
	// one node count.
	BaseNodes int `json:"base_nodes,omitempty"`
	// Gantry / metrics-server, per node above the base.
	RatioMilliCPUPerNode float64 `json:"ratio_mcpu_per_node,omitempty"`
	RatioMiBPerNode      float64 `json:"ratio_mib_per_node,omitempty"`
	// Gantry / metrics-server, totals.
	RatioMilliCPU float64 `json:"ratio_mcpu"`
	RatioRSS      float64 `json:"ratio_rss"`

	// What serving the fake kubelets cost (for the machine's load): kwok,
	// and this process, which holds the KubeletProxy.
	KwokMilliCPU  float64 `json:"kwok_mcpu"`
	ProxyMilliCPU float64 `json:"proxy_and_bench_mcpu"`
	// KubeletRequests is how many requests the fake kubelets answered during
	// the measurement (both scrapers together).
	KubeletRequests int64 `json:"kubelet_requests"`
}

// kubeletProcess is one scraper's figures at one node count.
type kubeletProcess struct {
	MilliCPU   float64 `json:"mcpu"`         // user+system CPU over the measurement
	RSSMiB     float64 `json:"rss_mib"`      // mean of the samples
	PeakRSSMiB float64 `json:"peak_rss_mib"` // highest sample
	// Per node above the base (see kubeletResult.BaseNodes).
	MilliCPUPerNode float64 `json:"mcpu_per_node,omitempty"`
	MiBPerNode      float64 `json:"mib_per_node,omitempty"`
	// What it served after the measurement, and the oldest PodMetrics
	// timestamp's age then.
	PodMetrics    int     `json:"pod_metrics"`
	NodeMetrics   int     `json:"node_metrics"`
	OldestSeconds float64 `json:"oldest_sample_seconds"`
}

// runKubeletScenario measures Gantry's kubelet collector and metrics-server
// at each node count (ascending) with podsPerNode pods per node, for
// duration each, in stacks under workDir. It returns the results measured
// so far with any error.
func runKubeletScenario(ctx context.Context, binDir, workDir string, nodes []int, podsPerNode int, duration time.Duration,
	logf func(string, ...any)) ([]kubeletResult, error) {
	if binDir == "" {
		var err error
		if binDir, err = toolbin.Dir(); err != nil {
			return nil, err
		}
	}
	msBin, err := toolbin.Path(binDir, "metrics-server")
	if err != nil {
		return nil, fmt.Errorf("kubelet scenario: %w (bash test/tools/install-metrics-server.sh %s)", err, binDir)
	}
	var results []kubeletResult
	for _, n := range nodes {
		fmt.Fprintf(os.Stderr, "bench: kubelet scenario, %d nodes × %d pods\n", n, podsPerNode)
		r, err := kubeletAt(ctx, binDir, msBin, filepath.Join(workDir, fmt.Sprintf("kubelet-%d", n)), n, podsPerNode, duration, logf)
		if err != nil {
			return kubeletPerNode(results), fmt.Errorf("kubelet scenario, %d nodes: %w", n, err)
		}
		results = append(results, r)
	}
	return kubeletPerNode(results), nil
}

// kubeletPerNode fills the per-node figures of every result but the first
// (the base: the smallest node count) as slopes from the base.
func kubeletPerNode(rs []kubeletResult) []kubeletResult {
	if len(rs) < 2 {
		return rs
	}
	base := rs[0]
	for i := range rs[1:] {
		r := &rs[i+1]
		d := float64(r.Nodes - base.Nodes)
		if d <= 0 {
			continue
		}
		r.BaseNodes = base.Nodes
		slope := func(p, b *kubeletProcess) {
			p.MilliCPUPerNode = round((p.MilliCPU-b.MilliCPU)/d, 4)
			p.MiBPerNode = round((p.RSSMiB-b.RSSMiB)/d, 4)
		}
		slope(&r.Gantry, &base.Gantry)
		slope(&r.MetricsServer, &base.MetricsServer)
		r.RatioMilliCPUPerNode = ratio(r.Gantry.MilliCPUPerNode, r.MetricsServer.MilliCPUPerNode)
		r.RatioMiBPerNode = ratio(r.Gantry.MiBPerNode, r.MetricsServer.MiBPerNode)
	}
	return rs
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a/b, 2)
}

// kubeletAt runs the scenario at one node count on a stack of its own.
func kubeletAt(ctx context.Context, binDir, msBin, dir string, n, podsPerNode int, duration time.Duration,
	logf func(string, ...any)) (r kubeletResult, err error) {
	st, err := stack.Start(ctx, stack.Options{
		BinDir:         binDir,
		WorkDir:        dir,
		Logf:           logf,
		Rules:          kubeletRules,
		RelistInterval: time.Minute,
		Cluster: cluster.Options{
			KubeletMetrics: true,
			APIServerFlags: []string{"--max-requests-inflight=2000"},
		},
		// The kubelet flags of the kubelet e2e test, at the common resolution.
		GantryArgs: []string{
			"--resource-metrics=kubelet",
			"--kubelet-use-node-status-port",
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-scrape-interval=" + kubeletResolution.String(),
			"--v=1",
		},
	})
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, st.Stop()) }()
	c := st.Cluster

	ms, err := startMetricsServer(c, msBin, filepath.Join(dir, "metrics-server.log"))
	if err != nil {
		return r, err
	}
	defer func() { err = errors.Join(err, ms.stop()) }()

	begin := time.Now()
	fakeNodes, err := c.AddFakeNodes(ctx, n, "32", "256Gi")
	if err != nil {
		return r, err
	}
	names := make([]string, len(fakeNodes))
	for i, fn := range fakeNodes {
		names[i] = fn.Name
	}
	if err := c.AddFakePods(ctx, metav1.NamespaceDefault, names, podsPerNode, "100m", "50Mi"); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "bench: %d nodes and %d pods Ready in %s\n", n, n*podsPerNode, time.Since(begin).Round(time.Second))

	// Both answer as the cluster admin (client certificate), directly on
	// their ports.
	admin, err := adminCert(c)
	if err != nil {
		return r, err
	}
	gantryClient := st.GantryClient()
	gantryClient.Timeout = time.Minute
	gantryClient.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{admin}
	msCAs := x509.NewCertPool()
	msCAs.AppendCertsFromPEM(ms.caPEM)
	msClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: msCAs, ServerName: metricsServerName, Certificates: []tls.Certificate{admin},
	}}}
	scrapers := []*metricsAPI{
		{name: "gantry", pid: st.GantryPID(), hc: gantryClient, base: st.GantryURL + "/apis/metrics.k8s.io/v1beta1"},
		{name: "metrics-server", pid: ms.pid(), hc: msClient, base: ms.url + "/apis/metrics.k8s.io/v1beta1", exited: ms.exitErr},
	}
	wantPods := n * podsPerNode
	waitCtx, cancel := context.WithTimeout(ctx, 4*time.Minute+time.Duration(n)*100*time.Millisecond)
	defer cancel()
	for _, s := range scrapers {
		if err := s.waitComplete(waitCtx, wantPods, n); err != nil {
			return r, err
		}
		fmt.Fprintf(os.Stderr, "bench: %s serves all %d pods and %d nodes %s after their creation began\n",
			s.name, wantPods, n, time.Since(begin).Round(time.Second))
	}
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(kubeletWarmupRounds * kubeletResolution):
	}

	// The measurement.
	kwokPID := c.PIDs()[cluster.Kwok]
	r = kubeletResult{Scenario: "kubelet", Cores: runtime.NumCPU(), Nodes: n, PodsPerNode: podsPerNode, Resolution: kubeletResolution.String()}
	r.Started, r.LoadAvg = time.Now().UTC().Format(time.RFC3339), loadAvg()
	pids := []int{scrapers[0].pid, scrapers[1].pid, kwokPID, os.Getpid()}
	cpu0, err := cpus(pids)
	if err != nil {
		return r, err
	}
	busy0, total0 := machineCPU()
	requests0 := c.KubeletProxy().Requests()
	start := time.Now()
	rss := make([][]float64, 2)
	for {
		for i, s := range scrapers {
			v, err := procRSS(s.pid)
			if err != nil {
				return r, fmt.Errorf("%s: %w", s.name, err)
			}
			rss[i] = append(rss[i], v)
		}
		if time.Since(start)+kubeletRSSEvery/2 > duration {
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(min(kubeletRSSEvery, duration-time.Since(start))):
		}
	}
	cpu1, err := cpus(pids)
	if err != nil {
		return r, err
	}
	wall := time.Since(start).Seconds()
	busy1, total1 := machineCPU()
	r.KubeletRequests = c.KubeletProxy().Requests() - requests0
	r.LoadAvgEnd = loadAvg()
	r.Seconds = round(wall, 1)
	if total1 > total0 {
		r.MachineBusy = round((busy1-busy0)/(total1-total0), 2)
	}
	milli := func(i int) float64 { return round(1000*(cpu1[i]-cpu0[i])/wall, 2) }
	procs := []*kubeletProcess{&r.Gantry, &r.MetricsServer}
	for i, p := range procs {
		p.MilliCPU = milli(i)
		var sum float64
		for _, v := range rss[i] {
			sum += v
			p.PeakRSSMiB = max(p.PeakRSSMiB, round(v, 1))
		}
		p.RSSMiB = round(sum/float64(len(rss[i])), 1)
	}
	r.KwokMilliCPU, r.ProxyMilliCPU = milli(2), milli(3)
	r.RatioMilliCPU = ratio(r.Gantry.MilliCPU, r.MetricsServer.MilliCPU)
	r.RatioRSS = ratio(r.Gantry.RSSMiB, r.MetricsServer.RSSMiB)

	// Both must still serve every pod and node, from recent scrapes.
	var errs []error
	for i, s := range scrapers {
		pods, nodeCount, oldest, err := s.counts(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		procs[i].PodMetrics, procs[i].NodeMetrics, procs[i].OldestSeconds = pods, nodeCount, round(oldest.Seconds(), 1)
		if pods != wantPods || nodeCount != n {
			errs = append(errs, fmt.Errorf("%s served %d PodMetrics and %d NodeMetrics after the measurement, want %d and %d", s.name, pods, nodeCount, wantPods, n))
		}
		// metrics-server stamps a sample with the end of its window; two
		// rounds and a slow round's worth of slack.
		if limit := 3 * kubeletResolution; oldest > limit {
			errs = append(errs, fmt.Errorf("%s: oldest PodMetrics sample %s old after the measurement, want within %s: it stopped scraping", s.name, oldest.Round(time.Second), limit))
		}
	}
	// Each scraper asks every node once a round.
	if want := int64(2 * n * int(duration/kubeletResolution-1)); r.KubeletRequests < want {
		errs = append(errs, fmt.Errorf("the fake kubelets answered %d requests in %.0fs, want at least %d (2 scrapers × %d nodes every %s)", r.KubeletRequests, wall, want, n, kubeletResolution))
	}
	return r, errors.Join(errs...)
}

// metricsAPI is one metrics.k8s.io server being measured.
type metricsAPI struct {
	name   string
	pid    int
	hc     *http.Client
	base   string
	exited func() error // nil, or the process' exit if it has ended
}

// counts lists PodMetrics in the default namespace (where the pods are)
// and NodeMetrics; it returns how many pods have containers, how many
// nodes, and the age of the oldest PodMetrics timestamp.
func (s *metricsAPI) counts(ctx context.Context) (pods, nodes int, oldest time.Duration, err error) {
	var list struct {
		Items []struct {
			Timestamp  metav1.Time       `json:"timestamp"`
			Containers []json.RawMessage `json:"containers"`
		} `json:"items"`
	}
	if err := s.getJSON(ctx, "/namespaces/default/pods", &list); err != nil {
		return 0, 0, 0, err
	}
	now := time.Now()
	for _, it := range list.Items {
		if len(it.Containers) > 0 {
			pods++
		}
		oldest = max(oldest, now.Sub(it.Timestamp.Time))
	}
	var nl struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := s.getJSON(ctx, "/nodes", &nl); err != nil {
		return 0, 0, 0, err
	}
	return pods, len(nl.Items), oldest, nil
}

func (s *metricsAPI) getJSON(ctx context.Context, path string, v any) error {
	body, code, err := get(ctx, s.hc, s.base+path)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: GET %s: %d %s", s.name, path, code, firstLine(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: GET %s: %w", s.name, path, err)
	}
	return nil
}

// waitComplete polls until the server has metrics for every pod and node.
func (s *metricsAPI) waitComplete(ctx context.Context, pods, nodes int) error {
	last := ""
	for {
		if s.exited != nil {
			if err := s.exited(); err != nil {
				return fmt.Errorf("%s exited: %w", s.name, err)
			}
		}
		p, n, _, err := s.counts(ctx)
		if err == nil && p == pods && n == nodes {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d pods, %d nodes", p, n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not serving %d pods and %d nodes: %w (last: %s)", s.name, pods, nodes, ctx.Err(), last)
		case <-time.After(5 * time.Second):
		}
	}
}

// metricsServerName is the name on metrics-server's serving certificate.
const metricsServerName = "metrics-server.kube-system.svc"

// metricsServer is a running metrics-server process.
type metricsServer struct {
	url    string
	caPEM  []byte // signed its serving certificate
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // after exited is closed
}

// startMetricsServer runs metrics-server against the cluster's fake
// kubelets as TestKubeletMetrics does (node addresses and ports from the
// Nodes' status, their certificates checked with the cluster CA, the admin
// kubeconfig), at kubeletResolution.
func startMetricsServer(c *cluster.Cluster, bin, logPath string) (*metricsServer, error) {
	certFile, keyFile, caPEM, err := c.ServingCert(metricsServerName)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--secure-port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--tls-cert-file="+certFile,
		"--tls-private-key-file="+keyFile,
		"--kubeconfig="+c.KubeconfigPath(),
		"--authentication-kubeconfig="+c.KubeconfigPath(),
		"--authorization-kubeconfig="+c.KubeconfigPath(),
		"--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority="+c.CAFile(),
		"--metric-resolution="+kubeletResolution.String(),
		"--kubelet-request-timeout=10s",
		"--v=1",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed with this process: no metrics-server outlives the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting metrics-server: %w", err)
	}
	ms := &metricsServer{url: "https://127.0.0.1:" + strconv.Itoa(port), caPEM: caPEM, cmd: cmd, exited: make(chan struct{})}
	go func() {
		ms.err = cmd.Wait()
		logFile.Close()
		close(ms.exited)
	}()
	return ms, nil
}

func (ms *metricsServer) pid() int { return ms.cmd.Process.Pid }

// exitErr is nil while metrics-server runs, else why it ended.
func (ms *metricsServer) exitErr() error {
	select {
	case <-ms.exited:
		return fmt.Errorf("metrics-server exited: %v", ms.err)
	default:
		return nil
	}
}

// stop ends metrics-server: SIGTERM, then SIGKILL after 10s.
func (ms *metricsServer) stop() error {
	select {
	case <-ms.exited:
		return nil
	default:
	}
	_ = ms.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ms.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = ms.cmd.Process.Kill()
	select {
	case <-ms.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("metrics-server (pid %d) did not exit after SIGKILL", ms.pid())
	}
}

// adminCert is the cluster admin's client certificate from the cluster's
// REST config.
func adminCert(c *cluster.Cluster) (tls.Certificate, error) {
	cfg := c.RESTConfig()
	return tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
}

// loadAvg is the machine's 1, 5 and 15 minute load averages.
func loadAvg() string {
	var r result
	stamp(&r)
	return r.LoadAvg
}

// cpus reads the CPU seconds of each pid.
func cpus(pids []int) ([]float64, error) {
	out := make([]float64, len(pids))
	for i, pid := range pids {
		v, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// machineCPU is the machine's busy and total jiffies from /proc/stat's
// first line (idle and iowait count as not busy).
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		v, _ := strconv.ParseFloat(s, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}

// printKubeletTable prints one row per node count.
func printKubeletTable(out io.Writer, rs []kubeletResult) {
	if len(rs) == 0 {
		return
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "KUBELET\tNODES\tPODS\tGANTRY mCPU\tRSS MiB\tmCPU/NODE\tMiB/NODE\tMETRICS-SERVER mCPU\tRSS MiB\tmCPU/NODE\tMiB/NODE\tRATIO mCPU/NODE\tMiB/NODE\tSERVED G/MS\tCORES\tMACHINE BUSY\tLOADAVG\t")
	perNode := func(v float64, base int) string {
		if base == 0 {
			return "-"
		}
		return fmt.Sprintf("%.4f", v)
	}
	ratioS := func(v float64, base int) string {
		if base == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, r := range rs {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.1f\t%.1f\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%.0f%%\t%s\t\n",
			r.Resolution, r.Nodes, r.Nodes*r.PodsPerNode,
			r.Gantry.MilliCPU, r.Gantry.RSSMiB, perNode(r.Gantry.MilliCPUPerNode, r.BaseNodes), perNode(r.Gantry.MiBPerNode, r.BaseNodes),
			r.MetricsServer.MilliCPU, r.MetricsServer.RSSMiB, perNode(r.MetricsServer.MilliCPUPerNode, r.BaseNodes), perNode(r.MetricsServer.MiBPerNode, r.BaseNodes),
			ratioS(r.RatioMilliCPUPerNode, r.BaseNodes), ratioS(r.RatioMiBPerNode, r.BaseNodes),
			r.Gantry.PodMetrics, r.MetricsServer.PodMetrics, r.Cores, 100*r.MachineBusy, r.LoadAvg)
	}
	w.Flush()
}
