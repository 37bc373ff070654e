package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// floodFlags configure the flood scenario (issue 13): one namespace of many
// pods, requests with ever new label selectors and then ever new metric
// selectors, while a few HPA-like pollers keep asking their usual question.
// It shows whether Gantry's memory stays bounded (--selector-cache-max-bytes,
// --value-cache-max-bytes) and whether legitimate clients keep their answers.
type floodFlags struct {
	pods            int
	requests        int
	metricSelectors int
	concurrency     int
	pollers         int
	poll            time.Duration
	settle          time.Duration
	rssGrowthMiB    float64
}

func (f *floodFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.pods, "flood-pods", 0, "flood scenario: pods in the flooded namespace; 0 skips it")
	fs.IntVar(&f.requests, "flood-requests", 6000, "flood scenario: requests with distinct label selectors (!rtk<i>, matching every pod)")
	fs.IntVar(&f.metricSelectors, "flood-metric-selectors", 600, "flood scenario: requests with distinct metric selectors (!mtk<i>), after the label selectors")
	fs.IntVar(&f.concurrency, "flood-concurrency", 8, "flood scenario: flood requests in flight at once")
	fs.IntVar(&f.pollers, "flood-pollers", 4, "flood scenario: HPA-like pollers, each polling its own 3 pods in the same namespace")
	fs.DurationVar(&f.poll, "flood-poll", time.Second, "flood scenario: poll interval of each poller")
	fs.DurationVar(&f.settle, "flood-settle", 15*time.Second, "flood scenario: how long the pollers go on after the flood before RSS is read again")
	fs.Float64Var(&f.rssGrowthMiB, "flood-rss-growth", 256, "flood scenario: it fails when Gantry's RSS exceeds its RSS before the flood by this many MiB")
}

func (f *floodFlags) validate() error {
	switch {
	case f.pods < 0, f.requests < 0, f.metricSelectors < 0:
		return fmt.Errorf("-flood-pods, -flood-requests and -flood-metric-selectors must not be negative")
	case f.pods > 0 && (f.concurrency <= 0 || f.pollers < 0 || f.poll <= 0 || f.rssGrowthMiB <= 0):
		return fmt.Errorf("-flood-concurrency, -flood-poll and -flood-rss-growth must be positive, -flood-pollers not negative")
	}
	return nil
}

// floodPhase is one part of the flood: what the flood requests and the
// pollers saw in it, and Gantry's RSS.
type floodPhase struct {
	Phase        string    `json:"phase"`
	Seconds      float64   `json:"seconds"`
	Requests     int       `json:"requests"`
	Errors       int       `json:"errors"`
	RequestsPerS float64   `json:"requests_per_second"`
	Latency      latencies `json:"latency_ms"`
	LastError    string    `json:"last_error,omitempty"`
	RSSMaxMiB    float64   `json:"gantry_rss_max_mib"`
	RSSEndMiB    float64   `json:"gantry_rss_end_mib"`

	PollerRequests  int       `json:"poller_requests"`
	PollerErrors    int       `json:"poller_errors"`
	PollerLatency   latencies `json:"poller_latency_ms"`
	PollerLastError string    `json:"poller_last_error,omitempty"`
}

type rssSample struct {
	T      float64 `json:"t_s"` // since the flood began
	Phase  string  `json:"phase"`
	RSSMiB float64 `json:"rss_mib"`
}

type floodResult struct {
	Namespace    string       `json:"namespace"`
	Pods         int          `json:"pods"` // in the namespace, the pollers' included
	Concurrency  int          `json:"concurrency"`
	Pollers      int          `json:"pollers"`
	PollInterval string       `json:"poll_interval"`
	Phases       []floodPhase `json:"phases"`
	RSSBeforeMiB float64      `json:"gantry_rss_before_mib"`
	RSSMaxMiB    float64      `json:"gantry_rss_max_mib"`
	// RSSPeakMiB is the kernel's high-water mark (VmHWM) at the end of
	// the flood: the peak between the samples too. It counts in the bound
	// only when it rose during the flood.
	RSSPeakMiB  float64 `json:"gantry_rss_peak_mib"`
	RSSAfterMiB float64 `json:"gantry_rss_after_mib"` // at the end of the settle period
	RSSBoundMiB float64 `json:"gantry_rss_bound_mib"`
	// LiveHeapAfterMiB is Gantry's heap in use after a forced collection
	// (/debug/pprof/heap?gc=1, then go_memstats_heap_inuse_bytes), read
	// after RSSAfterMiB: what the caches still hold.
	LiveHeapAfterMiB float64 `json:"gantry_live_heap_after_mib,omitempty"`
	// RSS is a thinned series of the per-second samples: every few
	// seconds, each phase's end and the maximum.
	RSS  []rssSample `json:"rss"`
	Pass bool        `json:"pass"`
}

// sentRequest is one request of the flood or of a poller.
type sentRequest struct {
	at  time.Time
	d   time.Duration
	err error
}

// floodScenario creates the namespace, starts the pollers, then floods
// Gantry through the aggregator in two phases while sampling its RSS every
// second. The result is returned with an error too when the scenario
// fails: RSS above the bound, a poller error, or most flood requests
// failing (then the flood did not test Gantry's memory).
func (b *bench) floodScenario(ctx context.Context) (result, error) {
	f := b.f.flood
	const ns = "flood"
	if _, err := b.ensurePods(ctx, ns, "flood", f.pods); err != nil {
		return result{}, err
	}
	apps := make([]string, f.pollers)
	for i := range apps {
		apps[i] = fmt.Sprintf("flood-hpa-%d", i)
		if _, err := b.ensurePods(ctx, ns, apps[i], 3); err != nil {
			return result{}, err
		}
	}
	total := f.pods + 3*f.pollers
	if err := b.waitItems(ctx, b.customURL(ns, "flood"), f.pods); err != nil {
		return result{}, err
	}
	for _, app := range apps {
		if err := b.waitItems(ctx, b.customURL(ns, app), 3); err != nil {
			return result{}, err
		}
	}

	r := result{Scenario: "flood", Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl, Pods: total}
	stamp(&r)
	fr := &floodResult{Namespace: ns, Pods: total, Concurrency: f.concurrency, Pollers: f.pollers, PollInterval: f.poll.String()}
	r.Flood = fr
	pid := b.st.GantryPID()

	// The pollers run from here to the end of the settle period; what
	// they see before the flood begins is a warm-up, not counted.
	client, err := b.metricsClient(30*time.Second, nil)
	if err != nil {
		return r, err
	}
	var (
		pmu     sync.Mutex
		polls   []sentRequest
		pwg     sync.WaitGroup
		stopped atomic.Bool
	)
	begin := time.Now()
	for _, app := range apps {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			sel := labels.SelectorFromSet(labels.Set{"app": app})
			next := begin.Add(time.Duration(rand.Int64N(int64(f.poll))))
			for !stopped.Load() && ctx.Err() == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				t0 := time.Now()
				// The client takes no context; its rest.Config has a timeout.
				list, err := client.NamespacedMetrics(ns).GetForObjects(schema.GroupKind{Kind: "Pod"}, sel, metric, labels.Everything())
				d := time.Since(t0)
				if err == nil && len(list.Items) != 3 {
					err = fmt.Errorf("%s/%s: %d items, want 3", ns, app, len(list.Items))
				}
				pmu.Lock()
				polls = append(polls, sentRequest{at: t0, d: d, err: err})
				pmu.Unlock()
				next = next.Add(f.poll)
			}
		}()
	}
	stopPollers := func() { stopped.Store(true); pwg.Wait() }
	defer stopPollers()
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(f.poll + time.Second):
	}

	fr.RSSBeforeMiB, err = procRSS(pid)
	if err != nil {
		return r, err
	}
	fr.RSSBeforeMiB = round(fr.RSSBeforeMiB, 1)
	hwmBefore, err := procStatusMiB(pid, "VmHWM:")
	if err != nil {
		return r, err
	}
	fr.RSSBoundMiB = round(fr.RSSBeforeMiB+f.rssGrowthMiB, 1)
	fmt.Fprintf(os.Stderr, "bench: flood: %d pods in %s, RSS %.0f MiB; %d label selectors, %d metric selectors at concurrency %d, %d pollers (load %s)\n",
		total, ns, fr.RSSBeforeMiB, f.requests, f.metricSelectors, f.concurrency, f.pollers, r.LoadAvg)

	// CPU, backend queries and cache hits over the flood's phases.
	snapBefore, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}

	// The RSS sampler: every second, and at each phase's end.
	floodStart := time.Now()
	var (
		smu     sync.Mutex
		samples []rssSample
		phase   = "before"
	)
	sample := func() float64 {
		rss, err := procRSS(pid)
		if err != nil {
			return 0
		}
		smu.Lock()
		defer smu.Unlock()
		samples = append(samples, rssSample{T: round(time.Since(floodStart).Seconds(), 1), Phase: phase, RSSMiB: round(rss, 1)})
		return round(rss, 1)
	}
	setPhase := func(p string) { smu.Lock(); phase = p; smu.Unlock() }
	sample()
	samplerCtx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-samplerCtx.Done():
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	defer func() { stopSampler(); <-samplerDone }()

	base := b.st.Cluster.URL() + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/" + metric
	type span struct {
		name       string
		start, end time.Time
		floods     []sentRequest
	}
	var spans []span
	run := func(name string, n int, u func(i int) string, want int) {
		setPhase(name)
		s := span{name: name, start: time.Now()}
		s.floods = b.flood(ctx, n, f.concurrency, u, want)
		s.end = time.Now()
		sample()
		spans = append(spans, s)
		b.heapProfile(ctx, "gantry-flood-"+name+".heap")
	}
	if f.requests > 0 {
		run("label-selectors", f.requests, func(i int) string {
			return base + "?labelSelector=" + url.QueryEscape(fmt.Sprintf("!rtk%d", i))
		}, total)
	}
	if f.metricSelectors > 0 {
		run("metric-selectors", f.metricSelectors, func(i int) string {
			return base + "?labelSelector=" + url.QueryEscape("app=flood") + "&metricLabelSelector=" + url.QueryEscape(fmt.Sprintf("!mtk%d", i))
		}, f.pods)
	}
	snapAfter, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}
	hwm, err := procStatusMiB(pid, "VmHWM:")
	if err != nil {
		return r, err
	}
	fr.RSSPeakMiB = round(hwm, 1)
	setPhase("settle")
	settle := span{name: "settle", start: time.Now()}
	select {
	case <-ctx.Done():
	case <-time.After(f.settle):
	}
	settle.end = time.Now()
	fr.RSSAfterMiB = sample()
	spans = append(spans, settle)
	stopSampler()
	<-samplerDone
	stopPollers()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	fr.LiveHeapAfterMiB = b.liveHeapMiB(ctx)

	// Each phase's figures: its flood requests, the polls sent in it, and
	// the RSS samples taken in it.
	var floodErrs, floodReqs int
	var floodLat []time.Duration
	for _, s := range spans {
		p := floodPhase{Phase: s.name, Seconds: round(s.end.Sub(s.start).Seconds(), 1), Requests: len(s.floods)}
		var lat, plat []time.Duration
		for _, x := range s.floods {
			if x.err != nil {
				p.Errors++
				p.LastError = firstLine(x.err.Error())
			} else {
				lat = append(lat, x.d)
			}
		}
		floodLat = append(floodLat, lat...)
		p.Latency = percentiles(lat)
		if p.Seconds > 0 {
			p.RequestsPerS = round(float64(p.Requests)/p.Seconds, 1)
		}
		for _, x := range polls {
			if x.at.Before(s.start) || !x.at.Before(s.end) {
				continue
			}
			p.PollerRequests++
			if x.err != nil {
				p.PollerErrors++
				p.PollerLastError = firstLine(x.err.Error())
			} else {
				plat = append(plat, x.d)
			}
		}
		p.PollerLatency = percentiles(plat)
		for _, x := range samples {
			if x.Phase == s.name {
				p.RSSMaxMiB = max(p.RSSMaxMiB, x.RSSMiB)
				p.RSSEndMiB = x.RSSMiB
			}
		}
		fr.Phases = append(fr.Phases, p)
		floodReqs += p.Requests
		floodErrs += p.Errors
	}
	for _, x := range samples {
		fr.RSSMaxMiB = max(fr.RSSMaxMiB, x.RSSMiB)
	}
	if hwm > hwmBefore {
		fr.RSSMaxMiB = max(fr.RSSMaxMiB, fr.RSSPeakMiB)
	}
	fr.RSS = thin(samples, 20)
	// The top-level figures are the flood requests'; RSS is after the
	// settle period.
	r.Requests, r.Errors, r.Gantry = floodReqs, floodErrs, percentiles(floodLat)
	r.RequestsPerS = round(float64(floodReqs)/snapAfter.at.Sub(snapBefore.at).Seconds(), 1)
	snapAfter.fill(&r, snapBefore, floodReqs)
	r.GantryCores = round((snapAfter.gantryCPU-snapBefore.gantryCPU)/snapAfter.at.Sub(snapBefore.at).Seconds(), 3)
	r.GantryRSSMiB = fr.RSSAfterMiB

	pollErrs := 0
	for _, p := range fr.Phases {
		pollErrs += p.PollerErrors
	}
	var problems []string
	if fr.RSSMaxMiB > fr.RSSBoundMiB {
		problems = append(problems, fmt.Sprintf("Gantry's RSS reached %.0f MiB, over the bound of %.0f MiB (%.0f before + %.0f)", fr.RSSMaxMiB, fr.RSSBoundMiB, fr.RSSBeforeMiB, f.rssGrowthMiB))
	}
	if pollErrs > 0 {
		problems = append(problems, fmt.Sprintf("the pollers had %d errors", pollErrs))
	}
	// A flood that Gantry mostly refused proves nothing about its memory.
	if floodErrs*2 > floodReqs {
		problems = append(problems, fmt.Sprintf("%d of %d flood requests failed: the flood did not reach Gantry", floodErrs, floodReqs))
	}
	fr.Pass = len(problems) == 0
	if !fr.Pass {
		return r, fmt.Errorf("flood: %s", strings.Join(problems, "; "))
	}
	return r, nil
}

// flood sends n requests, u(0)..u(n-1), through the aggregator from
// concurrency goroutines; an answer is correct with want items.
func (b *bench) flood(ctx context.Context, n, concurrency int, u func(i int) string, want int) []sentRequest {
	out := make([]sentRequest, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	item := []byte(`"describedObject"`)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, time.Minute)
				t0 := time.Now()
				body, code, err := get(rctx, b.hc, u(i))
				cancel()
				d := time.Since(t0)
				switch {
				case err != nil:
				case code != http.StatusOK:
					err = fmt.Errorf("%d %s", code, firstLine(string(body)))
				default:
					if got := bytes.Count(body, item); got != want {
						err = fmt.Errorf("%d items, want %d", got, want)
					}
				}
				out[i] = sentRequest{at: t0, d: d, err: err}
			}
		}()
	}
	wg.Wait()
	return out[:min(int(next.Load()), n)]
}

// liveHeapMiB forces a collection in Gantry (the heap profile's gc=1) and
// returns its heap in use then; 0 when either fails.
func (b *bench) liveHeapMiB(ctx context.Context) float64 {
	hc := &http.Client{Transport: b.gantry.Transport, Timeout: 30 * time.Second}
	if _, code, err := get(ctx, hc, b.st.GantryURL+"/debug/pprof/heap?gc=1"); err != nil || code != http.StatusOK {
		fmt.Fprintf(os.Stderr, "bench: flood: forcing a collection: %d %v\n", code, err)
		return 0
	}
	body, code, err := get(ctx, b.gantry, b.st.GantryURL+"/metrics")
	if err != nil || code != http.StatusOK {
		return 0
	}
	m := parseMetrics(body, map[string]bool{"go_memstats_heap_inuse_bytes": true}, "\x00")
	return round(m["go_memstats_heap_inuse_bytes"]/(1<<20), 1)
}

// thin keeps about n of the samples, evenly spaced, plus the last of each
// phase and the largest.
func thin(s []rssSample, n int) []rssSample {
	if len(s) <= n {
		return s
	}
	keep := make([]bool, len(s))
	step := (len(s) + n - 1) / n
	top := 0
	for i := range s {
		if i%step == 0 || i == len(s)-1 || s[i+1].Phase != s[i].Phase {
			keep[i] = true
		}
		if s[i].RSSMiB > s[top].RSSMiB {
			top = i
		}
	}
	keep[top] = true
	var out []rssSample
	for i, k := range keep {
		if k {
			out = append(out, s[i])
		}
	}
	return out
}

func printFloodTable(out io.Writer, rs []result) {
	for _, r := range rs {
		fr := r.Flood
		if fr == nil {
			continue
		}
		fmt.Fprintf(out, "\nflood: %d pods in %q, concurrency %d, %d pollers every %s, --value-cache-ttl=%s (started %s, load %s)\n",
			fr.Pods, fr.Namespace, fr.Concurrency, fr.Pollers, fr.PollInterval, r.ValueCacheTTL, r.Started, r.LoadAvg)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "PHASE\tSECONDS\tREQ\tERR\tREQ/S\tp50/p99 ms\tRSS max/end MiB\tPOLLS\tPOLL ERR\tPOLL p50/p99 ms\t")
		for _, p := range fr.Phases {
			fmt.Fprintf(w, "%s\t%.1f\t%d\t%d\t%.1f\t%.1f/%.1f\t%.0f/%.0f\t%d\t%d\t%.1f/%.1f\t\n", p.Phase, p.Seconds, p.Requests, p.Errors, p.RequestsPerS,
				p.Latency.P50, p.Latency.P99, p.RSSMaxMiB, p.RSSEndMiB, p.PollerRequests, p.PollerErrors, p.PollerLatency.P50, p.PollerLatency.P99)
		}
		w.Flush()
		var series []string
		for _, s := range fr.RSS {
			series = append(series, fmt.Sprintf("%.0fs %.0f", s.T, s.RSSMiB))
		}
		verdict := "OK"
		if !fr.Pass {
			verdict = "FAIL"
		}
		hit := "-"
		if t := r.CacheHits + r.CacheMisses; t > 0 {
			hit = fmt.Sprintf("%.0f%%", 100*r.CacheHits/t)
		}
		fmt.Fprintf(out, "flood requests: Gantry %.2f cores, %.3f CPU-s per 1,000, %.0f backend queries, value cache hit rate %s\n",
			r.GantryCores, r.GantryCPUPer1000, r.BackendQueries, hit)
		fmt.Fprintf(out, "RSS MiB before %.0f, max %.0f (high-water mark %.0f; bound %.0f), after %.0f; live heap after %.0f MiB: %s\nRSS over time (MiB): %s\n",
			fr.RSSBeforeMiB, fr.RSSMaxMiB, fr.RSSPeakMiB, fr.RSSBoundMiB, fr.RSSAfterMiB, fr.LiveHeapAfterMiB, verdict, strings.Join(series, ", "))
	}
}
