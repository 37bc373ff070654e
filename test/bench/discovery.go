package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/stack"
)

// The discovery scenario's series: discoveryNames metric names, each on
// every pod of discoveryNamespaces namespaces, with the labels an
// application exporter scraped by the Prometheus Operator carries. A third
// of the names also carry method and code, as request counters do.
const (
	discoveryNames      = 200
	discoveryNamespaces = 20
	discoveryPrefix     = "bench_app_"
	discoverySelector   = `{__name__=~"bench_app_.*",namespace!="",pod!=""}`
)

// benchRules is the stack's config plus a rule that discovers the
// discovery scenario's series as Pods (and Namespace) metrics.
var benchRules = strings.Replace(stack.DefaultRules, "\nrules:\n", `
rules:
# Discovery at scale (test/bench -discovery).
- seriesQuery: '`+discoverySelector+`'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^bench_app_(.*)$"
    as: "app_${1}"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`, 1)

// discoveryResult is what the discovery scenario measures.
type discoveryResult struct {
	Series int    `json:"series"`
	Load   string `json:"load"` // backfill or remote-write
	// LoadSeconds is how long getting the new series into Prometheus took
	// (generating them, promtool or remote write, restarting Prometheus).
	LoadSeconds float64 `json:"load_seconds"`
	// PromSeries* is the series call Gantry makes, sent straight to
	// Prometheus with Gantry stopped and its body read and discarded: the
	// floor of a relist.
	PromSeriesSeconds float64 `json:"prometheus_series_seconds"`
	PromSeriesMiB     float64 `json:"prometheus_series_response_mib"`
	// FirstListSeconds is from Gantry's start (the process started) to the
	// first complete metric list: a successful relist with every metric of
	// the scenario in it (/metrics), confirmed in the API's discovery list.
	FirstListSeconds float64 `json:"first_list_seconds"`
	// FirstRelistSeconds is that relist's own duration, from Gantry's
	// gantry_discovery_relist_duration_seconds.
	FirstRelistSeconds float64 `json:"first_relist_seconds"`
	Metrics            int     `json:"custom_metrics_listed"`
	RSSMiB             float64 `json:"rss_after_first_list_mib"`
	PeakRSSMiB         float64 `json:"peak_rss_mib"` // VmHWM after the second relist
	HeapInuseMiB       float64 `json:"go_heap_inuse_mib"`
	// Relist* is a later relist with Gantry otherwise idle: its duration
	// and its CPU (the CPU over one relist interval less the idle CPU
	// measured in the same interval).
	RelistSeconds    float64 `json:"relist_seconds"`
	RelistCPUSeconds float64 `json:"relist_cpu_seconds"`
	IdleCores        float64 `json:"idle_cores"`
}

// seriesLabels is the label set of series i, __name__ first.
func seriesLabels(i int) (name string, labels [][2]string) {
	m := i % discoveryNames
	pod := i / discoveryNames
	ns := pod % discoveryNamespaces
	name = fmt.Sprintf("%smetric_%03d_total", discoveryPrefix, m)
	labels = [][2]string{
		{"namespace", fmt.Sprintf("team-%02d", ns)},
		{"pod", fmt.Sprintf("app-%02d-%07d", ns, pod)},
		{"container", "app"},
		{"endpoint", "http-metrics"},
		{"instance", fmt.Sprintf("10.%d.%d.%d:8080", pod>>16&255, pod>>8&255, pod&255)},
		{"job", fmt.Sprintf("team-%02d/app", ns)},
		{"service", "app"},
	}
	if m%3 == 0 {
		labels = append(labels, [2]string{"method", "GET"}, [2]string{"code", "200"})
	}
	return name, labels
}

// discoveryScenario loads series [loaded, s) with Gantry stopped, then
// starts it and measures. Series loaded by an earlier, smaller count stay.
func (b *bench) discoveryScenario(ctx context.Context, s int) (result, error) {
	r := result{Scenario: "discovery", Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl}
	stamp(&r)
	d := &discoveryResult{Series: s, Load: b.f.load}
	r.Discovery = d
	if s%discoveryNames != 0 {
		return r, fmt.Errorf("%d series: must be a multiple of %d (metric names)", s, discoveryNames)
	}
	if err := b.st.StopGantry(); err != nil {
		return r, fmt.Errorf("stopping gantry: %w", err)
	}
	fmt.Fprintf(os.Stderr, "bench: discovery: loading series %d..%d by %s\n", b.discLoaded, s, b.f.load)
	// The samples are inside Gantry's --metrics-max-age (30m in the stack)
	// for the whole scenario.
	at := time.Now().Add(-2 * time.Minute)
	begin := time.Now()
	var err error
	if b.f.load == "backfill" {
		err = b.backfill(ctx, b.discLoaded, s, at)
	} else {
		err = b.remoteWrite(ctx, b.discLoaded, s, at)
	}
	if err != nil {
		return r, err
	}
	b.discLoaded = s
	d.LoadSeconds = round(time.Since(begin).Seconds(), 2)
	fmt.Fprintf(os.Stderr, "bench: discovery: %d series loaded in %.1fs\n", s, d.LoadSeconds)

	// The floor: the same call straight to Prometheus.
	t0 := time.Now()
	n, err := b.promSeries(ctx, time.Now().Add(-30*time.Minute), time.Now())
	if err != nil {
		return r, err
	}
	d.PromSeriesSeconds = round(time.Since(t0).Seconds(), 2)
	d.PromSeriesMiB = round(float64(n)/(1<<20), 1)

	// Start Gantry and watch its /metrics until the list is complete.
	want := 2 * discoveryNames // each name as a pods and a namespaces metric
	restarted := make(chan error, 1)
	t0 = time.Now()
	go func() { restarted <- b.st.RestartGantry(ctx) }()
	var first discoveryPoll
	restartDone := false
	for wait := restarted; ; {
		p, err := b.pollDiscovery(ctx)
		if err == nil && p.lastOK > 0 && p.count >= 1 && p.custom >= float64(want) {
			first = p
			break
		}
		select {
		case err := <-wait:
			if err != nil {
				return r, err
			}
			restartDone, wait = true, nil
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if err == nil && p.failures > 0 && p.count >= 2 {
			return r, fmt.Errorf("relists fail (%.0f failed series queries in %.0f relists); see Gantry's log %s", p.failures, p.count, b.st.GantryLog)
		}
		if time.Since(t0) > 2*b.f.relist+2*time.Minute {
			return r, fmt.Errorf("no complete metric list %s after Gantry's start; last poll %+v, err %v", time.Since(t0).Round(time.Second), p, err)
		}
	}
	d.FirstListSeconds = round(first.at.Sub(t0).Seconds(), 2)
	d.FirstRelistSeconds = round(first.sum/first.count, 2)
	if d.RSSMiB, err = procRSS(b.st.GantryPID()); err != nil {
		return r, err
	}
	d.RSSMiB = round(d.RSSMiB, 1)
	if !restartDone {
		if err := <-restarted; err != nil { // APIServices Available again
			return r, err
		}
	}
	if d.Metrics, err = b.listedMetrics(ctx); err != nil {
		return r, err
	}
	if d.Metrics < want {
		return r, fmt.Errorf("the API lists %d %s metrics, want %d", d.Metrics, discoveryPrefix, want)
	}
	fmt.Fprintf(os.Stderr, "bench: discovery: %d series: first complete list %.1fs after start (relist %.1fs), RSS %.0f MiB\n",
		s, d.FirstListSeconds, d.FirstRelistSeconds, d.RSSMiB)

	// A later relist, with Gantry otherwise idle: wait for the next one to
	// end, measure idle CPU for a while, then the interval up to the end of
	// the one after.
	// The idle figure includes the polling, at the same pace.
	const pace = 250 * time.Millisecond
	p1, err := b.waitRelist(ctx, first.count, pace)
	if err != nil {
		return r, err
	}
	idleFor := min(5*time.Second, b.f.relist/4)
	var pIdle discoveryPoll
	for time.Since(p1.at) < idleFor {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(pace):
		}
		if pIdle, err = b.pollDiscovery(ctx); err != nil {
			return r, err
		}
	}
	stopProfile := b.profileFor(ctx, fmt.Sprintf("gantry-discovery-%d.pprof", s), b.f.relist)
	p2, err := b.waitRelist(ctx, p1.count, pace)
	stopProfile()
	if err != nil {
		return r, err
	}
	if pIdle.count != p1.count {
		fmt.Fprintf(os.Stderr, "bench: discovery: a relist started within %s of the last; idle CPU includes it\n", idleFor)
	}
	idle := (pIdle.cpu - p1.cpu) / pIdle.at.Sub(p1.at).Seconds()
	d.IdleCores = round(idle, 4)
	d.RelistSeconds = round((p2.sum-p1.sum)/(p2.count-p1.count), 2)
	// Under 0 only by the noise of a tiny relist.
	d.RelistCPUSeconds = max(0, round((p2.cpu-p1.cpu)-idle*(p2.at.Sub(p1.at).Seconds()-d.RelistSeconds), 2))
	d.PeakRSSMiB = round(p2.hwm, 1)
	d.HeapInuseMiB = round(p2.heap/(1<<20), 1)
	r.GantryRSSMiB = round(p2.rss, 1)
	b.heapProfile(ctx, fmt.Sprintf("gantry-discovery-%d.heap", s))
	return r, nil
}

// discoveryPoll is one reading of Gantry's discovery metrics and /proc.
type discoveryPoll struct {
	at                     time.Time
	count, sum             float64 // of the relist duration histogram
	lastOK, custom         float64
	cpu, rss, hwm, heap    float64
	goroutines, processRSS float64
	failures               float64
}

func (b *bench) pollDiscovery(ctx context.Context) (discoveryPoll, error) {
	p := discoveryPoll{at: time.Now()}
	pid := b.st.GantryPID()
	if b.plainGantry == nil {
		// Uncompressed: gzip would be most of what the polling costs Gantry.
		tr := b.gantry.Transport.(*http.Transport).Clone()
		tr.DisableCompression = true
		b.plainGantry = &http.Client{Transport: tr, Timeout: b.gantry.Timeout}
	}
	body, code, err := get(ctx, b.plainGantry, b.st.GantryURL+"/metrics")
	if err != nil {
		return p, err
	}
	if code != http.StatusOK {
		return p, fmt.Errorf("gantry /metrics: %d", code)
	}
	m := parseMetrics(body, map[string]bool{
		"gantry_discovery_relist_duration_seconds_count":  true,
		"gantry_discovery_relist_duration_seconds_sum":    true,
		"gantry_discovery_last_success_timestamp_seconds": true,
		`gantry_discovery_metrics{api="custom"}`:          true,
		"go_memstats_heap_inuse_bytes":                    true,
		"go_goroutines":                                   true,
		"process_resident_memory_bytes":                   true,
	}, "\x00")
	p.count = m["gantry_discovery_relist_duration_seconds_count"]
	p.sum = m["gantry_discovery_relist_duration_seconds_sum"]
	p.lastOK = m["gantry_discovery_last_success_timestamp_seconds"]
	p.custom = m[`gantry_discovery_metrics{api="custom"}`]
	p.heap = m["go_memstats_heap_inuse_bytes"]
	p.goroutines = m["go_goroutines"]
	p.processRSS = m["process_resident_memory_bytes"]
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "gantry_discovery_relist_failures_total{") {
			if i := strings.LastIndexByte(line, ' '); i > 0 {
				v, _ := strconv.ParseFloat(line[i+1:], 64)
				p.failures += v
			}
		}
	}
	if p.cpu, err = procCPU(pid); err != nil {
		return p, err
	}
	if p.rss, err = procRSS(pid); err != nil {
		return p, err
	}
	p.hwm, err = procStatusMiB(pid, "VmHWM:")
	return p, err
}

// waitRelist polls every pace until a relist after the count-th has ended.
func (b *bench) waitRelist(ctx context.Context, count float64, pace time.Duration) (discoveryPoll, error) {
	deadline := time.Now().Add(2*b.f.relist + 2*time.Minute)
	for {
		p, err := b.pollDiscovery(ctx)
		if err == nil && p.count > count {
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("no relist after the %.0fth: %v", count, err)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(pace):
		}
	}
}

// listedMetrics counts the scenario's metrics in the API's discovery list,
// through the aggregator.
func (b *bench) listedMetrics(ctx context.Context) (int, error) {
	body, err := b.okGet(ctx, b.st.Cluster.URL()+"/apis/custom.metrics.k8s.io/v1beta2")
	if err != nil {
		return 0, err
	}
	var list struct {
		Resources []struct {
			Name string `json:"name"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return 0, err
	}
	n := 0
	for _, r := range list.Resources {
		if strings.Contains(r.Name, "/app_metric_") {
			n++
		}
	}
	return n, nil
}

// promSeries sends discovery's series call straight to Prometheus and
// returns the size of the answer.
func (b *bench) promSeries(ctx context.Context, start, end time.Time) (int64, error) {
	form := url.Values{"match[]": {discoverySelector},
		"start": {strconv.FormatInt(start.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.st.Prom.URL()+"/api/v1/series", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hc := &http.Client{Timeout: 5 * time.Minute}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("prometheus series: %d", resp.StatusCode)
	}
	return n, err
}

// backfill writes series [from, to) as OpenMetrics, turns them into blocks
// with promtool in Prometheus' data dir while it is halted, and restarts
// it.
func (b *bench) backfill(ctx context.Context, from, to int, at time.Time) error {
	dir := filepath.Join(b.f.workDir, "ttl-"+b.ttl, "prometheus")
	input := filepath.Join(b.f.workDir, fmt.Sprintf("series-%d-%d.om", from, to))
	defer os.Remove(input)
	if err := writeOpenMetrics(input, from, to, at); err != nil {
		return err
	}
	if err := b.st.Prom.Halt(); err != nil {
		return fmt.Errorf("halting prometheus: %w", err)
	}
	promtool := filepath.Join(b.binDir(), "promtool")
	cmd := exec.CommandContext(ctx, promtool, "tsdb", "create-blocks-from", "openmetrics", input, filepath.Join(dir, "data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return errors.Join(fmt.Errorf("promtool create-blocks-from openmetrics: %w\n%s", err, firstLine(string(out))), b.st.Prom.Restart(ctx))
	}
	return b.st.Prom.Restart(ctx)
}

func (b *bench) binDir() string {
	if b.f.binDir != "" {
		return b.f.binDir
	}
	dir, err := prom.BinDir()
	if err != nil {
		return "bin"
	}
	return dir
}

func writeOpenMetrics(path string, from, to int, at time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	ts := strconv.FormatInt(at.Unix(), 10)
	// OpenMetrics wants the samples of one metric family together.
	for m := range discoveryNames {
		fmt.Fprintf(w, "# TYPE %smetric_%03d counter\n", discoveryPrefix, m)
		for i := from + (m-from%discoveryNames+discoveryNames)%discoveryNames; i < to; i += discoveryNames {
			name, labels := seriesLabels(i)
			w.WriteString(name)
			for j, l := range labels {
				if j == 0 {
					w.WriteByte('{')
				} else {
					w.WriteByte(',')
				}
				w.WriteString(l[0])
				w.WriteString(`="`)
				w.WriteString(l[1])
				w.WriteByte('"')
			}
			w.WriteString("} 1 ")
			w.WriteString(ts)
			w.WriteByte('\n')
		}
	}
	w.WriteString("# EOF\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// remoteWrite sends series [from, to) to the running Prometheus.
func (b *bench) remoteWrite(ctx context.Context, from, to int, at time.Time) error {
	const batch = 10000
	samples := make([]prom.Sample, 0, batch)
	for i := from; i < to; i++ {
		name, labels := seriesLabels(i)
		ls := make(map[string]string, len(labels)+1)
		ls["__name__"] = name
		for _, l := range labels {
			ls[l[0]] = l[1]
		}
		samples = append(samples, prom.Sample{Labels: ls, Value: 1, Time: at})
		if len(samples) == batch || i == to-1 {
			if err := b.st.Prom.Write(ctx, samples); err != nil {
				return err
			}
			samples = samples[:0]
		}
	}
	return nil
}

// profileFor records a CPU profile of Gantry for d into -pprof-dir; stop
// waits for it.
func (b *bench) profileFor(ctx context.Context, name string, d time.Duration) (stop func()) {
	if b.f.pprofDir == "" {
		return func() {}
	}
	// At least a second: seconds=0 would ask pprof for its default 30 s.
	d = max(d, time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		hc := &http.Client{Transport: b.gantry.Transport, Timeout: d + 30*time.Second}
		body, code, err := get(ctx, hc, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", b.st.GantryURL, int(d.Seconds())+1))
		if err != nil || code != http.StatusOK {
			fmt.Fprintf(os.Stderr, "bench: profile %s: %d %v\n", name, code, err)
			return
		}
		b.writeProfile(name, body)
	}()
	return func() { <-done }
}

// heapProfile saves Gantry's heap profile (in use and allocated since the
// start) into -pprof-dir.
func (b *bench) heapProfile(ctx context.Context, name string) {
	if b.f.pprofDir == "" {
		return
	}
	hc := &http.Client{Transport: b.gantry.Transport, Timeout: 30 * time.Second}
	body, code, err := get(ctx, hc, b.st.GantryURL+"/debug/pprof/heap")
	if err != nil || code != http.StatusOK {
		fmt.Fprintf(os.Stderr, "bench: heap profile %s: %d %v\n", name, code, err)
		return
	}
	b.writeProfile(name, body)
}

func (b *bench) writeProfile(name string, body []byte) {
	err := os.MkdirAll(b.f.pprofDir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(b.f.pprofDir, name), body, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: profile %s: %v\n", name, err)
	}
}

func procStatusMiB(pid int, field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

func printDiscoveryTable(out io.Writer, rs []result) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := false
	for _, r := range rs {
		d := r.Discovery
		if d == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w, "DISCOVERY\tSERIES\tLOAD s\tPROM SERIES s\tMiB\tFIRST LIST s\tFIRST RELIST s\tMETRICS\tRSS MiB\tPEAK RSS MiB\tRELIST s\tRELIST CPU s\t")
			header = true
		}
		fmt.Fprintf(w, "%s\t%d\t%.1f\t%.2f\t%.0f\t%.2f\t%.2f\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t\n", d.Load, d.Series, d.LoadSeconds,
			d.PromSeriesSeconds, d.PromSeriesMiB, d.FirstListSeconds, d.FirstRelistSeconds, d.Metrics, d.RSSMiB, d.PeakRSSMiB, d.RelistSeconds, d.RelistCPUSeconds)
	}
	w.Flush()
}
