package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/test/stack"
)

// metricRulesFlags configure the metricrules scenario (issue 16): the same
// HPA-like fleet on N rules, once as rules of the cluster config and once
// as N MetricRules (one rule each) spread over namespaces, each setup on a
// freshly started Gantry of the same stack.
type metricRulesFlags struct {
	rules      int
	namespaces int
	pods       int
	sample     int
	idle       time.Duration
}

func (f *metricRulesFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.rules, "metricrules", 0, "metricrules scenario: rules (e.g. 1000), each served once from the cluster config and once from a MetricRule of its own, with one HPA-like poller per rule (-hpa-poll, -hpa-duration); 0 skips it")
	fs.IntVar(&f.namespaces, "metricrules-namespaces", 200, "metricrules scenario: namespaces the rules are spread over")
	fs.IntVar(&f.pods, "metricrules-pods", 1, "metricrules scenario: pods per rule (each with the rule's own series)")
	fs.IntVar(&f.sample, "metricrules-sample", 50, "metricrules scenario: of the rules, how many are applied last, one at a time, each measured from its create call to its metric served (the others are created 8 at a time beforehand)")
	fs.DurationVar(&f.idle, "metricrules-idle", time.Minute, "metricrules scenario: window without requests over which relist cost (series calls, CPU) is read, per setup")
}

// The two setups of the scenario.
const (
	setupCluster     = "cluster-rules"
	setupMetricRules = "metricrules"
)

// metricRulesResult is what one setup of the metricrules scenario measures
// beside result's fleet figures.
type metricRulesResult struct {
	Setup      string `json:"setup"`
	Rules      int    `json:"rules"`
	Namespaces int    `json:"namespaces"`
	// ServedSeconds is from Gantry's start (cluster rules), or from the
	// first MetricRule's creation (all but -metricrules-sample of them,
	// created 8 at a time), to every one of those rules' metric served.
	ServedSeconds float64 `json:"all_served_seconds"`
	// ApplyToServed is, for each of the last -metricrules-sample
	// MetricRules, created one at a time, from the create call to the
	// first complete answer for its metric through the aggregator;
	// GantryApplyToServedMeanMs is Gantry's own mean over every
	// MetricRule (gantry_metricrule_apply_to_served_seconds).
	ApplyToServed             *latencies `json:"apply_to_served_ms,omitempty"`
	ApplyErrors               int        `json:"apply_errors,omitempty"`
	GantryApplyToServedMeanMs float64    `json:"gantry_apply_to_served_mean_ms,omitempty"`
	// Relist cost over the idle window: Gantry's CPU without requests,
	// its series calls per relist interval, and, for the cluster config's
	// registry, the mean relist duration.
	IdleWindowSeconds    float64 `json:"idle_window_seconds"`
	IdleCores            float64 `json:"idle_cores"`
	SeriesCallsPerRelist float64 `json:"series_calls_per_relist"`
	SeriesCallMeanMs     float64 `json:"series_call_mean_ms,omitempty"`
	ClusterRelistMeanMs  float64 `json:"cluster_relist_mean_ms,omitempty"`
	StatusWrites         float64 `json:"status_writes,omitempty"`
	// StatusSettledSeconds is how long after every metric was served the
	// MetricRules' status writes went on (a first write per resource and
	// one when its metrics are served): the idle window starts after.
	StatusSettledSeconds float64 `json:"status_settled_seconds,omitempty"`
	RSSBeforeFleetMiB    float64 `json:"rss_before_fleet_mib"`
}

// mrTarget is one rule of the scenario and the HPA that uses it: pods
// app=<app> in ns, each with the series <series>.
type mrTarget struct {
	ns, app, name, series, metric string
}

func (t mrTarget) url(base string) string {
	return base + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + t.ns + "/pods/*/" + t.metric +
		"?labelSelector=" + url.QueryEscape("app="+t.app)
}

// rule is the target's rule, in the config file's format at the given
// indentation: the same text in the cluster config and in a MetricRule.
func (t mrTarget) rule() map[string]any {
	return map[string]any{
		"seriesQuery": fmt.Sprintf(`%s{namespace=%q,pod!=""}`, t.series, t.ns),
		"resources": map[string]any{"overrides": map[string]any{
			"namespace": map[string]any{"resource": "namespace"},
			"pod":       map[string]any{"resource": "pod"},
		}},
		"name":         map[string]any{"matches": "^(.*)_total$", "as": "${1}_per_second"},
		"metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
	}
}

func mrTargets(f metricRulesFlags) []mrTarget {
	ts := make([]mrTarget, f.rules)
	for i := range ts {
		nsIdx, k := i%f.namespaces, i/f.namespaces
		series := fmt.Sprintf("mr_%03d_%d_requests_total", nsIdx, k)
		ts[i] = mrTarget{
			ns:     fmt.Sprintf("mr-%03d", nsIdx),
			app:    fmt.Sprintf("mr-%d", k),
			name:   fmt.Sprintf("rule-%d", k),
			series: series,
			metric: strings.TrimSuffix(series, "_total") + "_per_second",
		}
	}
	return ts
}

// clusterRulesConfig is the bench's config with every target's rule
// appended to its rules.
func clusterRulesConfig(ts []mrTarget) (string, error) {
	var b strings.Builder
	b.WriteString("\nrules:\n# The metricrules scenario's rules, as cluster rules.\n")
	for _, t := range ts {
		data, err := json.Marshal([]any{t.rule()}) // JSON is YAML
		if err != nil {
			return "", err
		}
		b.WriteString("- ")
		b.Write(data[1 : len(data)-1])
		b.WriteString("\n")
	}
	if strings.Count(benchRules, "\nrules:\n") != 1 {
		return "", errors.New("benchRules has no single rules: section")
	}
	return strings.Replace(benchRules, "\nrules:\n", b.String(), 1), nil
}

// metricRulesScenario runs the fleet on the cluster-rules setup, then on
// the MetricRules setup, each on a Gantry restarted for it, and leaves
// the stack with the bench's config and no MetricRule.
func (b *bench) metricRulesScenario(ctx context.Context) (rs []result, err error) {
	f := b.f.metricRules
	ts := mrTargets(f)
	begin := time.Now()
	for _, t := range ts {
		names, err := b.ensurePods(ctx, t.ns, t.app, f.pods)
		if err != nil {
			return nil, err
		}
		for i, p := range names {
			b.feed.SetRate(map[string]string{"__name__": t.series, "namespace": t.ns, "pod": p}, float64(1+i%10))
		}
	}
	fmt.Fprintf(os.Stderr, "bench: metricrules: %d rules, %d pods each, over %d namespaces ready in %s\n", len(ts), f.pods, f.namespaces, time.Since(begin).Round(time.Millisecond))
	dyn, err := dynamic.NewForConfig(b.st.Cluster.RESTConfig())
	if err != nil {
		return nil, err
	}
	defer func() {
		// Leave the stack as the other scenarios expect it.
		err = errors.Join(err, b.deleteMetricRules(ctx, dyn, ts), b.restartWith(ctx, benchRules))
	}()

	// Cluster rules.
	cfg, err := clusterRulesConfig(ts)
	if err != nil {
		return nil, err
	}
	if err := b.restartWith(ctx, cfg); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := b.waitAllServed(ctx, ts); err != nil {
		return nil, fmt.Errorf("cluster rules: %w", err)
	}
	mr := &metricRulesResult{Setup: setupCluster, ServedSeconds: round(time.Since(start).Seconds(), 2)}
	r, err := b.metricRulesFleet(ctx, ts, mr)
	rs = append(rs, r)
	if err != nil {
		return rs, err
	}

	// MetricRules, on a Gantry without those rules.
	if err := b.restartWith(ctx, benchRules); err != nil {
		return rs, err
	}
	before, err := b.mrSnapshot(ctx)
	if err != nil {
		return rs, err
	}
	mr = &metricRulesResult{Setup: setupMetricRules}
	sample := min(f.sample, len(ts))
	bulk, seq := ts[:len(ts)-sample], ts[len(ts)-sample:]
	start = time.Now()
	if err := b.createMetricRules(ctx, dyn, bulk); err != nil {
		return rs, err
	}
	if err := b.waitAllServed(ctx, bulk); err != nil {
		return rs, fmt.Errorf("metricrules: %w", err)
	}
	mr.ServedSeconds = round(time.Since(start).Seconds(), 2)
	lat, errs, err := b.applyToServed(ctx, dyn, seq)
	if err != nil {
		return rs, err
	}
	after, err := b.mrSnapshot(ctx)
	if err != nil {
		return rs, err
	}
	p := percentiles(lat)
	mr.ApplyToServed, mr.ApplyErrors = &p, errs
	if n := after.metrics["apply_count"] - before.metrics["apply_count"]; n > 0 {
		mr.GantryApplyToServedMeanMs = round(1000*(after.metrics["apply_sum"]-before.metrics["apply_sum"])/n, 1)
	}
	r, err = b.metricRulesFleet(ctx, ts, mr)
	rs = append(rs, r)
	return rs, err
}

// restartWith restarts Gantry on config: a fresh process per setup, so
// that RSS and CPU are the setup's own.
func (b *bench) restartWith(ctx context.Context, config string) error {
	if err := b.st.StopGantry(); err != nil {
		return err
	}
	if err := b.st.WriteConfig(config); err != nil {
		return err
	}
	if err := b.st.RestartGantry(ctx); err != nil {
		return err
	}
	// The APIServices may still read Available from before the stop:
	// wait for the new process itself.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		_, code, err := get(ctx, b.gantry, b.st.GantryURL+"/metrics")
		if err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gantry not ready after its restart: %d %v", code, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitAllServed waits until every target's metric answers with its pods.
func (b *bench) waitAllServed(ctx context.Context, ts []mrTarget) error {
	work := make(chan mrTarget)
	errc := make(chan error, len(ts))
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				errc <- b.waitItems(ctx, t.url(b.st.Cluster.URL()), b.f.metricRules.pods)
			}
		}()
	}
	for _, t := range ts {
		work <- t
	}
	close(work)
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d metrics not served, first: %w", len(errs), len(ts), errs[0])
	}
	return nil
}

// newMetricRule is the target's MetricRule, holding its one rule.
func newMetricRule(t mrTarget) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": stack.MetricRuleGVR.GroupVersion().String(),
		"kind":       "MetricRule",
		"metadata":   map[string]any{"name": t.name, "namespace": t.ns},
		"spec":       map[string]any{"rules": []any{t.rule()}},
	}}
}

// createMetricRules creates the targets' MetricRules, a few at once, as a
// kubectl apply of many files would.
func (b *bench) createMetricRules(ctx context.Context, dyn dynamic.Interface, ts []mrTarget) error {
	work := make(chan mrTarget)
	errc := make(chan error, len(ts))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				if _, err := dyn.Resource(stack.MetricRuleGVR).Namespace(t.ns).Create(ctx, newMetricRule(t), metav1.CreateOptions{}); err != nil {
					errc <- fmt.Errorf("creating MetricRule %s/%s: %w", t.ns, t.name, err)
				}
			}
		}()
	}
	for _, t := range ts {
		work <- t
	}
	close(work)
	wg.Wait()
	close(errc)
	return <-errc // the first, if any
}

// applyToServed creates the targets' MetricRules one after the other, each
// once the previous one is served, and measures from the create call to
// the first complete answer for its metric through the aggregator, polled
// every 20 ms: what a team sees after kubectl apply, on a Gantry already
// serving the other rules.
func (b *bench) applyToServed(ctx context.Context, dyn dynamic.Interface, ts []mrTarget) ([]time.Duration, int, error) {
	var lat []time.Duration
	errs := 0
	deadline := 3*b.f.relist + time.Minute
	for _, t := range ts {
		u := t.url(b.st.Cluster.URL())
		t0 := time.Now()
		if _, err := dyn.Resource(stack.MetricRuleGVR).Namespace(t.ns).Create(ctx, newMetricRule(t), metav1.CreateOptions{}); err != nil {
			return lat, errs, fmt.Errorf("creating MetricRule %s/%s: %w", t.ns, t.name, err)
		}
		served := false
		last := ""
		for !served && time.Since(t0) < deadline {
			body, code, err := get(ctx, b.hc, u)
			switch {
			case err != nil:
				last = err.Error()
			case code != http.StatusOK:
				last = fmt.Sprintf("%d %s", code, firstLine(string(body)))
			default:
				var list struct {
					Items []json.RawMessage `json:"items"`
				}
				if err := json.Unmarshal(body, &list); err == nil && len(list.Items) == b.f.metricRules.pods {
					d := time.Since(t0)
					lat = append(lat, d)
					served = true
					if d > 5*time.Second { // the goal: say which, and what it answered before
						fmt.Fprintf(os.Stderr, "bench: metricrules: MetricRule %s/%s served %s after its create call (answer before: %s)\n", t.ns, t.name, d.Round(time.Millisecond), last)
					}
					continue
				}
				last = "items missing"
			}
			select {
			case <-ctx.Done():
				return lat, errs, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if !served {
			errs++
			fmt.Fprintf(os.Stderr, "bench: metricrules: MetricRule %s/%s not served within %s (last: %s)\n", t.ns, t.name, deadline, last)
		}
	}
	return lat, errs, nil
}

func (b *bench) deleteMetricRules(ctx context.Context, dyn dynamic.Interface, ts []mrTarget) error {
	seen := map[string]bool{}
	var errs []error
	for _, t := range ts {
		if seen[t.ns] {
			continue
		}
		seen[t.ns] = true
		if err := dyn.Resource(stack.MetricRuleGVR).Namespace(t.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("deleting the MetricRules of %s: %w", t.ns, err))
		}
	}
	return errors.Join(errs...)
}

// metricRulesFleet reads the relist cost over the idle window, then runs
// one HPA-like poller per target for -hpa-duration.
func (b *bench) metricRulesFleet(ctx context.Context, ts []mrTarget, mr *metricRulesResult) (result, error) {
	mr.Rules, mr.Namespaces = len(ts), b.f.metricRules.namespaces
	r := result{Scenario: "metricrules", Client: mr.Setup, Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl, Pods: len(ts) * b.f.metricRules.pods, HPAs: len(ts), MetricRules: mr}
	// Idle: relists only, once the status writes of the resources just
	// created are done (they are not a relist's cost).
	settled, err := b.statusWritesSettled(ctx)
	if err != nil {
		return r, err
	}
	mr.StatusSettledSeconds = round(settled.Seconds(), 1)
	i0, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	stopIdle := b.profileFor(ctx, "gantry-metricrules-"+mr.Setup+"-idle.pprof", b.f.metricRules.idle-time.Second)
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(b.f.metricRules.idle):
	}
	stopIdle()
	i1, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	idle := i1.at.Sub(i0.at).Seconds()
	mr.IdleWindowSeconds = round(idle, 1)
	mr.IdleCores = round((i1.gantryCPU-i0.gantryCPU)/idle, 4)
	d := func(k string) float64 { return i1.metrics[k] - i0.metrics[k] }
	mr.SeriesCallsPerRelist = round(d("series_calls")*b.f.relist.Seconds()/idle, 1)
	if n := d("series_calls"); n > 0 {
		mr.SeriesCallMeanMs = round(1000*d("series_seconds")/n, 2)
	}
	if n := d("relist_count"); n > 0 {
		mr.ClusterRelistMeanMs = round(1000*d("relist_sum")/n, 1)
	}
	mr.StatusWrites = d("status_writes")
	mr.RSSBeforeFleetMiB = round(i1.rssMiB, 1)

	client, err := b.metricsClient(0, nil)
	if err != nil {
		return r, err
	}
	stamp(&r)
	before, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	targets := make([]fleetTarget, len(ts))
	for i, t := range ts {
		targets[i] = fleetTarget{ns: t.ns, app: t.app, metric: t.metric}
	}
	stopProfile := b.profileFor(ctx, "gantry-metricrules-"+mr.Setup+"-requests.pprof", b.f.fleetDur-time.Second)
	lat, errs, lastErr, wall := b.poll(ctx, client, targets, b.f.metricRules.pods)
	stopProfile()
	after, err := b.mrSnapshot(ctx)
	if err != nil {
		return r, err
	}
	if lastErr != nil {
		fmt.Fprintf(os.Stderr, "bench: metricrules %s fleet: %d errors, last: %v\n", mr.Setup, errs, lastErr)
	}
	r.Requests, r.Errors = len(lat), errs
	r.RequestsPerS = round(float64(len(lat))/wall.Seconds(), 1)
	r.Gantry = percentiles(lat)
	after.fill(&r, before, len(lat))
	r.GantryCores = round((after.gantryCPU-before.gantryCPU)/after.at.Sub(before.at).Seconds(), 3)
	return r, nil
}

// printMetricRulesTable prints the two setups side by side, then the
// MetricRules setup against the cluster rules'.
func printMetricRulesTable(out io.Writer, all []result) {
	var rs []result
	for _, r := range all {
		if r.MetricRules != nil {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "METRICRULES\tTTL\tRULES\tNS\tREQ\tERR\tp50/p99 ms\tCORES\tCPU s/1000 req\tRSS MiB\tIDLE CORES\tSERIES CALLS/RELIST\tALL SERVED s\tSTATUS SETTLED s\tAPPLY→SERVED p50/p99 ms\t")
	for _, r := range rs {
		m := r.MetricRules
		apply := "-"
		if m.ApplyToServed != nil {
			apply = fmt.Sprintf("%.0f/%.0f", m.ApplyToServed.P50, m.ApplyToServed.P99)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%.1f/%.1f\t%.3f\t%.3f\t%.1f\t%.4f\t%.1f\t%.1f\t%.1f\t%s\t\n",
			m.Setup, r.ValueCacheTTL, m.Rules, m.Namespaces, r.Requests, r.Errors, r.Gantry.P50, r.Gantry.P99, r.GantryCores, r.GantryCPUPer1000, r.GantryRSSMiB, m.IdleCores, m.SeriesCallsPerRelist, m.ServedSeconds, m.StatusSettledSeconds, apply)
	}
	w.Flush()
	for i := 0; i+1 < len(rs); i++ {
		c, m := rs[i], rs[i+1]
		if c.MetricRules.Setup != setupCluster || m.MetricRules.Setup != setupMetricRules || c.ValueCacheTTL != m.ValueCacheTTL {
			continue
		}
		fmt.Fprintf(out, "metricrules against cluster rules (ttl %s): p99 %+.0f%%, CPU per request %+.0f%%, RSS %+.1f MiB\n",
			c.ValueCacheTTL, 100*(m.Gantry.P99/c.Gantry.P99-1), 100*(m.GantryCPUPer1000/c.GantryCPUPer1000-1), m.GantryRSSMiB-c.GantryRSSMiB)
	}
}

// mrSnapshot is snapshot with the scenario's own metrics of Gantry added:
// series calls, the cluster registry's relists, MetricRules' apply →
// served and status writes.
// statusWritesSettled waits until Gantry wrote no MetricRule status for
// 5 s (at most 5 minutes), and returns how long that took.
func (b *bench) statusWritesSettled(ctx context.Context) (time.Duration, error) {
	const quiet, most = 5 * time.Second, 5 * time.Minute
	start := time.Now()
	last, err := b.mrSnapshot(ctx)
	if err != nil {
		return 0, err
	}
	for time.Since(start) < most {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(quiet):
		}
		now, err := b.mrSnapshot(ctx)
		if err != nil {
			return 0, err
		}
		if now.metrics["status_writes"] == last.metrics["status_writes"] {
			return time.Since(start) - quiet, nil
		}
		last = now
	}
	return 0, fmt.Errorf("MetricRule status writes still going on %s after every metric was served", most)
}

func (b *bench) mrSnapshot(ctx context.Context) (snapshot, error) {
	s, err := b.snapshot(ctx)
	if err != nil {
		return s, err
	}
	body, code, err := get(ctx, b.gantry, b.st.GantryURL+"/metrics")
	if err != nil || code != http.StatusOK {
		return s, fmt.Errorf("gantry /metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, key := line[:i], ""
		switch {
		case strings.HasPrefix(name, "gantry_backend_request_duration_seconds_count{") && strings.Contains(name, `call="series"`):
			key = "series_calls"
		case strings.HasPrefix(name, "gantry_backend_request_duration_seconds_sum{") && strings.Contains(name, `call="series"`):
			key = "series_seconds"
		case strings.HasPrefix(name, "gantry_discovery_relist_duration_seconds_count"):
			key = "relist_count"
		case strings.HasPrefix(name, "gantry_discovery_relist_duration_seconds_sum"):
			key = "relist_sum"
		case strings.HasPrefix(name, "gantry_metricrule_apply_to_served_seconds_count"):
			key = "apply_count"
		case strings.HasPrefix(name, "gantry_metricrule_apply_to_served_seconds_sum"):
			key = "apply_sum"
		case strings.HasPrefix(name, "gantry_metricrule_status_writes_total"):
			key = "status_writes"
		}
		if key != "" {
			s.metrics[key] += v
		}
	}
	return s, nil
}
