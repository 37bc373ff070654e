package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/thanos"
)

// thanosFlags configure the thanos scenario (issue 15): Gantry in front of
// Thanos Query over an HA pair of Prometheus replicas, against the same
// query sent straight to Thanos Query, and the cost of losing the
// preferred querier of an HA set.
type thanosFlags struct {
	pods   []int
	window time.Duration
}

func (f *thanosFlags) register(fs *flag.FlagSet) {
	fs.Func("thanos-pods", "thanos scenario: comma-separated pod counts (ascending), e.g. 1000: the pods scenario with its rule routed to Thanos Query over two Prometheus replicas, "+
		"then the failover at the last count; on a stack of its own, per -value-cache-ttl; empty skips it", func(v string) error {
		n, err := ints(v)
		f.pods = n
		return err
	})
	fs.DurationVar(&f.window, "thanos-window", 30*time.Second, "thanos scenario: how long requests go on before the preferred querier is killed, and after")
}

// The thanos scenario's backends: thanosBackend is Thanos Query (the
// pair's querier, q1), thanosHABackend an HA set of q1 and a second querier
// over the same sidecars (q2), in that order.
const (
	thanosBackend   = "thanos"
	thanosHABackend = "thanos-ha"
)

// thanosRules is the bench's config with a backends section naming both
// backends, and the Pods rule of the pods scenario routed to backend. The
// section must stay as it is for a reload (Gantry builds backends at
// start); the rule may move.
func thanosRules(q1, q2, backend string) (string, error) {
	const podsRule = "- seriesQuery: 'http_requests_total{namespace!=\"\",pod!=\"\"}'\n"
	if strings.Count(benchRules, podsRule) != 1 {
		return "", errors.New("the Pods rule of http_requests_total is not in benchRules once")
	}
	backends := fmt.Sprintf(`backends:
- name: %s
  type: prometheus
  url: %s
- name: %s
  type: prometheus
  urls: [%s, %s]
`, thanosBackend, q1, thanosHABackend, q1, q2)
	return backends + strings.Replace(benchRules, podsRule, podsRule+"  backend: "+backend+"\n", 1), nil
}

// failoverResult is what the failover part of the thanos scenario
// measures: the same client's sequential requests over a window before the
// preferred member of the HA set is killed and a window after.
type failoverResult struct {
	Backend string `json:"backend"`
	// Members are the HA set's members in the order Gantry tries them,
	// as name=URL; the first is killed.
	Members []string `json:"members"`
	// HaltMs is how long the kill took (SIGTERM until the process had
	// exited); the after window starts when it is sent.
	HaltMs  float64        `json:"halt_ms"`
	WindowS float64        `json:"window_seconds"`
	Before  failoverWindow `json:"before"`
	After   failoverWindow `json:"after"`
	// RawSurvivor is the exact PromQL query sent straight to the
	// surviving querier after the windows.
	RawSurvivor latencies `json:"raw_query_survivor_ms"`
	// ShareMs is the first attempt's share of the deadline (Gantry's
	// --backend-timeout over the members), GoalP99Ms that plus
	// RawSurvivor's p99: the bound of the after window's p99.
	ShareMs   float64            `json:"timeout_share_ms"`
	GoalP99Ms float64            `json:"goal_p99_ms"`
	GoalMet   bool               `json:"goal_met"`
	UpAtEnd   map[string]float64 `json:"member_up_at_end"`
}

// failoverWindow is one window's requests and Gantry's per-member metrics
// over it (deltas of gantry_backend_member_* of the HA backend).
type failoverWindow struct {
	Requests   int       `json:"requests"`
	Errors     int       `json:"errors"`
	FirstError string    `json:"first_error,omitempty"`
	Latency    latencies `json:"latency_ms"`
	// MemberRequests counts Gantry's requests to each member, by
	// outcome ("q1 success"), MemberFailures its failures by reason
	// ("q1 unreachable"); Retries are requests sent on to another member.
	MemberRequests map[string]float64 `json:"member_requests"`
	MemberFailures map[string]float64 `json:"member_failures"`
	Retries        float64            `json:"retries"`
}

// runThanos runs the thanos scenario on a stack of its own: an HA pair
// behind Thanos Query (q1) and a second querier (q2), the stack's Pods rule
// routed to q1 for the pods blocks, then to the HA set [q1, q2] for the
// failover.
func runThanos(ctx context.Context, f flags, ttl string, out io.Writer) (results []result, err error) {
	logf := func(string, ...any) {}
	if f.verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	dir := filepath.Join(f.workDir, "thanos-ttl-"+ttl)
	if f.pprofDir != "" {
		f.pprofDir = filepath.Join(f.pprofDir, "thanos") // beside the pods scenario's, same names
	}
	fmt.Fprintf(os.Stderr, "bench: starting Thanos Query over two Prometheus replicas, a second querier and a stack with --value-cache-ttl=%s\n", ttl)
	pair, err := thanos.StartPair(ctx, thanos.PairOptions{BinDir: f.binDir, WorkDir: dir, Logf: logf})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, pair.Stop()) }()
	q2, err := thanos.StartQuery(ctx, thanos.QueryConfig{
		Endpoints:     []string{pair.Replicas[0].Sidecar.GRPCAddr(), pair.Replicas[1].Sidecar.GRPCAddr()},
		ReplicaLabels: []string{thanos.ReplicaLabel},
	}, thanos.Options{BinDir: f.binDir, WorkDir: filepath.Join(dir, "query-2"), Logf: logf})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, q2.Stop()) }()
	q1 := pair.Query
	cfg, err := thanosRules(q1.URL(), q2.URL(), thanosBackend)
	if err != nil {
		return nil, err
	}
	st, err := stack.Start(ctx, stack.Options{
		BinDir:         f.binDir,
		WorkDir:        filepath.Join(dir, "stack"),
		Logf:           logf,
		RelistInterval: f.relist,
		Rules:          cfg,
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
	// The pods' series go to both replicas, as a pair scraping the same
	// targets holds them; the stack's own Prometheus gets none.
	b.feed = stack.NewFeederTo(pair.Write, 5*time.Second)
	feedCtx, stopFeed := context.WithCancel(ctx)
	var feedWG sync.WaitGroup
	feedWG.Go(func() {
		b.feed.Run(feedCtx, func(err error) { fmt.Fprintln(os.Stderr, "bench: feeder (thanos pair):", err) })
	})
	defer func() { stopFeed(); feedWG.Wait() }()

	b.rawURL = q1.URL()
	for _, n := range f.thanos.pods {
		rs, err := b.podsScenario(ctx, n)
		for _, r := range rs {
			r.Scenario = "thanos-pods"
			b.emit(r)
			results = append(results, r)
		}
		if err != nil {
			return results, fmt.Errorf("thanos scenario, %d pods, ttl %s: %w", n, ttl, err)
		}
	}
	n := f.thanos.pods[len(f.thanos.pods)-1]
	r, err := b.thanosFailover(ctx, n, q1, q2)
	if r.Failover != nil {
		b.emit(r)
		results = append(results, r)
	}
	if err != nil {
		return results, fmt.Errorf("thanos failover, %d pods, ttl %s: %w", n, ttl, err)
	}
	return results, nil
}

// thanosFailover moves the Pods rule to the HA set [q1, q2] (a config
// reload), sends the first -pods-clients client's requests back to back for
// the window, kills q1 and goes on for the window.
func (b *bench) thanosFailover(ctx context.Context, n int, q1, q2 *thanos.Server) (result, error) {
	const ns, app = "bench", "web"
	names := map[string]string{q1.URL(): "q1", q2.URL(): "q2"}
	cfg, err := thanosRules(q1.URL(), q2.URL(), thanosHABackend)
	if err != nil {
		return result{}, err
	}
	q, err := b.rule.NamespaceQuery(series, rules.Pods, ns, labels.Everything())
	if err != nil {
		return result{}, err
	}
	m0, err := b.memberMetrics(ctx, names)
	if err != nil {
		return result{}, err
	}
	if err := b.st.WriteConfig(cfg); err != nil {
		return result{}, err
	}
	if err := b.waitReload(ctx, m0.reloads); err != nil {
		return result{}, err
	}
	if err := b.waitItems(ctx, b.customURL(ns, app), n); err != nil {
		return result{}, err
	}
	c, err := b.podsClient(b.f.clients[0], ns, app)
	if err != nil {
		return result{}, err
	}
	get := func() error {
		items, err := c.list(ctx)
		if err == nil && items != n {
			err = fmt.Errorf("%d items, want %d", items, n)
		}
		return err
	}
	for range 10 {
		if err := get(); err != nil {
			return result{}, err
		}
	}
	// The requests must be the HA set's: q1 answered since the reload.
	if m, err := b.memberMetrics(ctx, names); err != nil {
		return result{}, err
	} else if m.requests["q1 success"] <= m0.requests["q1 success"] {
		return result{}, fmt.Errorf("backend %s's member q1 answered no query since the rule was routed to it (Gantry log %s)", thanosHABackend, b.st.GantryLog)
	}

	r := result{Scenario: "thanos-failover", Client: c.name, Cores: runtime.NumCPU(), ValueCacheTTL: b.ttl, Pods: n, Query: q.Text, QueryBytes: len(q.Text)}
	stamp(&r)
	fo := &failoverResult{Backend: thanosHABackend, Members: []string{"q1=" + q1.URL(), "q2=" + q2.URL()}, WindowS: b.f.thanos.window.Seconds()}
	r.Failover = fo
	before, err := b.memberMetrics(ctx, names)
	if err != nil {
		return r, err
	}
	snap0, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}
	var (
		mu      sync.Mutex
		samples []timedRequest
		wg      sync.WaitGroup
	)
	reqCtx, stopReqs := context.WithCancel(ctx)
	defer stopReqs()
	wg.Go(func() {
		for reqCtx.Err() == nil {
			t0 := time.Now()
			err := get()
			s := timedRequest{at: t0, d: time.Since(t0), err: err}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	})
	begin := time.Now()
	sleep(ctx, b.f.thanos.window)
	atKill, err := b.memberMetrics(ctx, names)
	if err != nil {
		stopReqs()
		wg.Wait()
		return r, err
	}
	killed := time.Now()
	haltErr := q1.Halt()
	fo.HaltMs = round(float64(time.Since(killed))/float64(time.Millisecond), 1)
	sleep(ctx, time.Until(killed.Add(b.f.thanos.window)))
	end := time.Now()
	stopReqs()
	wg.Wait()
	if haltErr != nil {
		return r, fmt.Errorf("killing q1: %w", haltErr)
	}
	after, err := b.memberMetrics(ctx, names)
	if err != nil {
		return r, err
	}
	snap1, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}
	fo.Before = windowOf(samples, begin, killed, atKill.minus(before))
	fo.After = windowOf(samples, killed, end, after.minus(atKill))
	fo.UpAtEnd = after.up

	b.rawURL = q2.URL()
	var rt []time.Duration
	for range b.f.requests {
		t0 := time.Now()
		if err := b.rawQuery(ctx, r.Query); err != nil {
			return r, err
		}
		rt = append(rt, time.Since(t0))
	}
	fo.RawSurvivor = percentiles(rt)
	fo.ShareMs = float64(backendTimeout(b.f.gantry)/time.Duration(len(fo.Members))) / float64(time.Millisecond)
	fo.GoalP99Ms = round(fo.ShareMs+fo.RawSurvivor.P99, 2)
	fo.GoalMet = fo.After.Requests > 0 && fo.After.Latency.P99 <= fo.GoalP99Ms

	r.Requests = fo.Before.Requests + fo.After.Requests
	r.Errors = fo.Before.Errors + fo.After.Errors
	r.Gantry = fo.After.Latency // the table's figure; both windows are in Failover
	snap1.fill(&r, snap0, r.Requests)
	return r, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// backendTimeout is Gantry's --backend-timeout: its default, or the last
// -gantry-flag that sets it.
func backendTimeout(gantryFlags []string) time.Duration {
	d := 10 * time.Second
	for _, f := range gantryFlags {
		if v, ok := strings.CutPrefix(strings.TrimLeft(f, "-"), "backend-timeout="); ok {
			if t, err := time.ParseDuration(v); err == nil {
				d = t
			}
		}
	}
	return d
}

// timedRequest is one request of the failover's client.
type timedRequest struct {
	at  time.Time
	d   time.Duration
	err error
}

// windowOf is the requests that started in [from, to) and the member
// metrics over that time.
func windowOf(rs []timedRequest, from, to time.Time, m memberMetrics) failoverWindow {
	w := failoverWindow{MemberRequests: m.requests, MemberFailures: m.failures, Retries: m.retries}
	var ds []time.Duration
	for _, r := range rs {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		w.Requests++
		ds = append(ds, r.d)
		if r.err != nil {
			w.Errors++
			if w.FirstError == "" {
				w.FirstError = firstLine(r.err.Error())
			}
		}
	}
	w.Latency = percentiles(ds)
	return w
}

// memberMetrics is what Gantry's /metrics says of the HA backend's members
// (named as in the scenario: q1, q2) and of config reloads.
type memberMetrics struct {
	up       map[string]float64 // member
	requests map[string]float64 // "member outcome"
	failures map[string]float64 // "member reason"
	retries  float64
	reloads  map[string]float64 // result
}

func (b *bench) memberMetrics(ctx context.Context, names map[string]string) (memberMetrics, error) {
	body, code, err := get(ctx, b.gantry, b.st.GantryURL+"/metrics")
	if err != nil || code != http.StatusOK {
		return memberMetrics{}, fmt.Errorf("gantry /metrics: %d %v", code, err)
	}
	return parseMemberMetrics(strings.NewReader(string(body)), thanosHABackend, names)
}

// parseMemberMetrics reads gantry_backend_member_* of backend, naming each
// member by names (its URL if not there), and gantry_config_reloads_total.
func parseMemberMetrics(r io.Reader, backend string, names map[string]string) (memberMetrics, error) {
	m := memberMetrics{up: map[string]float64{}, requests: map[string]float64{}, failures: map[string]float64{}, reloads: map[string]float64{}}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return m, fmt.Errorf("gantry /metrics: %w", err)
	}
	for name, fam := range families {
		for _, s := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if name == "gantry_config_reloads_total" {
				m.reloads[labels["result"]] = s.GetCounter().GetValue()
				continue
			}
			if labels["backend"] != backend {
				continue
			}
			member := labels["member"]
			if n, ok := names[member]; ok {
				member = n
			}
			switch name {
			case "gantry_backend_member_up":
				m.up[member] = s.GetGauge().GetValue()
			case "gantry_backend_member_request_duration_seconds":
				m.requests[member+" "+labels["outcome"]] = float64(s.GetHistogram().GetSampleCount())
			case "gantry_backend_member_failures_total":
				m.failures[member+" "+labels["reason"]] = s.GetCounter().GetValue()
			case "gantry_backend_member_retries_total":
				m.retries = s.GetCounter().GetValue()
			}
		}
	}
	return m, nil
}

// minus is the counters' increase since before (up and reloads are m's).
func (m memberMetrics) minus(before memberMetrics) memberMetrics {
	d := func(a, b map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range a {
			if v-b[k] != 0 {
				out[k] = v - b[k]
			}
		}
		return out
	}
	return memberMetrics{up: m.up, requests: d(m.requests, before.requests), failures: d(m.failures, before.failures),
		retries: m.retries - before.retries, reloads: m.reloads}
}

// waitReload waits until Gantry has applied a config change since it
// counted before (gantry_config_reloads_total), and fails if it rejected
// one.
func (b *bench) waitReload(ctx context.Context, before map[string]float64) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		m, err := b.memberMetrics(ctx, nil)
		if err == nil {
			if m.reloads["failure"] > before["failure"] {
				return fmt.Errorf("gantry rejected the config that routes the rule to %s; see %s", thanosHABackend, b.st.GantryLog)
			}
			if m.reloads["success"] > before["success"] {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gantry did not reload its config within a minute (last: %v); see %s", err, b.st.GantryLog)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printFailoverTable(out io.Writer, rs []result) {
	for _, r := range rs {
		fo := r.Failover
		if fo == nil {
			continue
		}
		fmt.Fprintf(out, "\nthanos failover: backend %s %v, %d pods, client %s, TTL %s; q1 killed (halt %.0f ms), %.0fs windows (started %s, load %s)\n",
			fo.Backend, fo.Members, r.Pods, r.Client, r.ValueCacheTTL, fo.HaltMs, fo.WindowS, r.Started, r.LoadAvg)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "WINDOW\tREQ\tERR\tp50 ms\tp95 ms\tp99 ms\tmax ms\tMEMBER REQUESTS\tMEMBER FAILURES\tRETRIES\t")
		for _, x := range []struct {
			name string
			w    failoverWindow
		}{{"before", fo.Before}, {"after", fo.After}} {
			fmt.Fprintf(w, "%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%.0f\t\n", x.name, x.w.Requests, x.w.Errors,
				x.w.Latency.P50, x.w.Latency.P95, x.w.Latency.P99, x.w.Latency.Max, counts(x.w.MemberRequests), counts(x.w.MemberFailures), x.w.Retries)
		}
		w.Flush()
		met := "met"
		if !fo.GoalMet {
			met = "NOT met"
		}
		fmt.Fprintf(out, "raw query to q2 p50/p99 %.1f/%.1f ms; goal: after p99 ≤ %.0f ms share + raw p99 = %.1f ms: %s; member_up at the end: %s\n",
			fo.RawSurvivor.P50, fo.RawSurvivor.P99, fo.ShareMs, fo.GoalP99Ms, met, counts(fo.UpAtEnd))
		if fo.After.FirstError != "" {
			fmt.Fprintf(out, "first error after the kill: %s\n", fo.After.FirstError)
		}
	}
}

// counts prints a map as "k=v, ..." sorted by key, "-" if empty.
func counts(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%g", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
