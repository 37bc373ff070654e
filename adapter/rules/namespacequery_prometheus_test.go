package rules

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"
)

// TestNamespaceQueryAgainstPrometheus is the differential test of the
// namespace query decision: every template of the corpus runs on a real
// Prometheus, as the query naming the requested objects (prometheus-adapter's
// form, the oracle) and as the rule's namespace query, for several sets of
// requested objects. Wherever Gantry chooses the namespace query, both must
// give every requested object the same series and values. Where the corpus
// says a template's answers differ, Gantry must not choose it, and the data
// must show the difference.
func TestNamespaceQueryAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs on a real Prometheus (bin/prometheus, built by `make tools`)")
	}
	corpus := loadCorpus(t)
	// limitk and friends are experimental in Prometheus; Gantry's parser
	// accepts them, so the server must too.
	srv := prom.Start(t, prom.WithFlags("--enable-feature=promql-experimental-functions"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	now := time.Now().Truncate(time.Minute)
	writeNamespaceQueryData(ctx, t, srv, now)
	client, err := promcollector.New(promcollector.Options{URL: srv.URL(), Timeout: 10 * time.Second}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	d := differential{ctx: ctx, client: client, at: now}

	wide := 0
	for _, e := range corpus {
		t.Run(e.Name, func(t *testing.T) {
			r := mustCompile(t, e.Rule, false)
			gr := schema.GroupResource{Resource: e.Resource}
			sel := mustSelector(t, e.Selector)
			_, qerr := r.NamespaceQuery(e.Series, gr, "shop", sel)
			if r.NamespaceQueryable() != e.Wide {
				t.Errorf("NamespaceQueryable() = %v, want %v (NamespaceQuery: %v)", r.NamespaceQueryable(), e.Wide, qerr)
			}
			if r.NamespaceQueryable() {
				wide++
			}
			res, err := d.compare(r, e.Series, gr, "shop", sel, requestedObjects[e.Resource])
			if err == nil {
				err = res.wideErr
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.NamespaceQueryable() {
				for _, diff := range res.diffs {
					t.Error(diff)
				}
			}
			switch {
			case e.Wide && res.answered == 0:
				t.Errorf("no requested object has a value: the entry checks nothing (namespace query: %s)", res.wideQuery)
			case e.Differs && len(res.diffs) == 0:
				t.Errorf("the namespace query gives every requested object its named-query value on this data; the entry is marked differs")
			}
		})
	}
	t.Logf("%d templates: %d answered by the namespace query, %d by the query naming the objects", len(corpus), wide, len(corpus)-wide)

	// Binary operations between per-object, mixed and constant sides under
	// every kind of vector matching, where most of the check's rules are:
	// each one the check accepts must agree with the named query. Queries
	// Prometheus refuses as named queries (many-to-many matches) are left
	// out; so is a namespace query that fails where the named ones succeed,
	// which the check does not promise against. In namespace "solo" one
	// pod has series and another only an info series, where a constant
	// side's objects outnumber the per-object side's.
	for _, ns := range []struct {
		name string
		pods [][]string
	}{
		{"shop", [][]string{{"web-1"}, {"web-2", "web-3"}, {"web-4", "web-9"}, {"web-5"}}},
		{"solo", [][]string{{"solo-1"}, {"solo-2"}, {"solo-1", "solo-2"}}},
	} {
		t.Run("generated in "+ns.name, func(t *testing.T) {
			templates := generatedTemplates(ns.name)
			checked, refused, failed, wideFailed := 0, 0, 0, 0
			for i, tmpl := range templates {
				rule := config.DiscoveryRule{SeriesQuery: "http_requests_total", Resources: config.ResourceMapping{Template: "<<.Resource>>"}, MetricsQuery: tmpl}
				r, err := Compile(fmt.Sprintf("generated[%d]", i), rule, false, testMapper())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := r.ObjectQuery("http_requests_total", Pods, ns.name, []string{"a"}, nil); err != nil {
					continue // does not parse, say group_left(pod) with on(pod)
				}
				if !r.NamespaceQueryable() {
					refused++
					continue
				}
				res, err := d.compare(r, "http_requests_total", Pods, ns.name, nil, ns.pods)
				switch {
				case err != nil:
					failed++
					continue
				case res.wideErr != nil:
					wideFailed++
					continue
				}
				checked++
				for _, diff := range res.diffs {
					t.Errorf("%s: %s", tmpl, diff)
				}
			}
			t.Logf("%d generated templates: %d answered by the namespace query and agree with the named one, %d refused; "+
				"of those accepted, %d fail in Prometheus as named queries, %d only as the namespace query; %d do not parse",
				len(templates), checked, refused, failed, wideFailed, len(templates)-checked-refused-failed-wideFailed)
			if checked < 50 {
				t.Errorf("only %d generated templates were compared", checked)
			}
		})
	}
}

// generatedTemplates pairs per-object, mixed and constant sides of a
// binary operation (constant ones read namespace ns) under every kind of
// vector matching.
func generatedTemplates(ns string) []string {
	perObject := `rate(<<.Series>>{<<.LabelMatchers>>}[2m])`
	constant := `rate(<<.Series>>{namespace="` + ns + `"}[2m])`
	sides := []string{
		perObject,
		`sum by (namespace, <<.GroupBy>>) (` + perObject + `)`,
		`sum by (namespace) (` + perObject + `)`,
		// Per-object too, with objects the rate lacks (web-5, solo-2).
		`kube_pod_info{<<.LabelMatchers>>}`,
		constant,
		`sum by (namespace, <<.GroupBy>>) (` + constant + `)`,
		`sum by (namespace) (` + constant + `)`,
		`kube_pod_info`,
	}
	plain := []string{"", "on(<<.GroupBy>>)", "on(namespace)", "on()", "ignoring(code)", "ignoring(<<.GroupBy>>)"}
	grouped := []string{
		// An empty list, or "group_left (b)" would read b as one.
		"on(namespace) group_left()", "on(namespace) group_right()", "on() group_left()", "on() group_right()",
		"ignoring(<<.GroupBy>>) group_left()", "ignoring(code) group_left()", "ignoring(code) group_right(node)",
		"on(namespace) group_left(<<.GroupBy>>)",
	}
	var out []string
	for _, a := range sides {
		for _, b := range sides {
			for _, m := range plain {
				for _, op := range []string{"/", "and", "or", "unless"} {
					out = append(out, fmt.Sprintf("(%s) %s %s (%s)", a, op, m, b))
				}
			}
			for _, m := range grouped {
				out = append(out, fmt.Sprintf("(%s) - %s (%s)", a, m, b))
			}
		}
	}
	return out
}

// requestedObjects are the sets of objects asked for: one, some, all of
// the namespace's, objects without series (web-9), alone and with another,
// and one with an info series only (web-5).
var requestedObjects = map[string][][]string{
	"pods":     {{"web-1"}, {"web-2", "web-3"}, {"web-1", "web-2", "web-3", "web-4"}, {"web-4", "web-9"}, {"web-9"}, {"web-5"}},
	"services": {{"web"}, {"api", "admin"}, {"web", "api", "admin"}},
}

// differential runs the two forms of a rule's query on Prometheus.
type differential struct {
	ctx    context.Context
	client *promcollector.Client
	at     time.Time
}

type comparison struct {
	wideQuery string
	// answered counts requested objects the named query has a value for.
	answered int
	// diffs describe each requested object whose series differ.
	diffs []string
	// wideErr is the namespace query's error, when Prometheus refused it
	// but ran every named query.
	wideErr error
}

// compare runs the namespace query of rule r in namespace, and the
// query naming the objects for each set of requested objects, and compares
// each requested object's series. The namespace query is built as
// NamespaceQuery builds it, also for rules NamespaceQuery refuses, to show
// why. An error is a named query Prometheus refused.
func (d differential) compare(r *Rule, series string, gr schema.GroupResource, namespace string, sel k8slabels.Selector, requests [][]string) (comparison, error) {
	wq, err := r.objectQuery(series, gr, namespace, func(l model.LabelName) Matcher {
		return Matcher{Label: l, Type: labels.MatchNotEqual, Values: []string{""}}
	}, sel, nil)
	if err != nil {
		return comparison{}, err
	}
	if r.NamespaceQueryable() {
		q, err := r.NamespaceQuery(series, gr, namespace, sel)
		if err != nil {
			return comparison{}, err
		}
		if q.Text != wq.Text {
			return comparison{}, fmt.Errorf("NamespaceQuery:\n got %s\nwant %s", q.Text, wq.Text)
		}
	}
	res := comparison{wideQuery: wq.Text}
	wideVec, err := d.client.Query(d.ctx, wq.Text, d.at)
	if err != nil {
		res.wideErr = fmt.Errorf("namespace query %s: %w", wq.Text, err)
	}
	for _, names := range requests {
		nq, err := r.ObjectQuery(series, gr, namespace, names, sel)
		if err != nil {
			return res, err
		}
		namedVec, err := d.client.Query(d.ctx, nq.Text, d.at)
		if err != nil {
			return res, fmt.Errorf("named query %s: %w", nq.Text, err)
		}
		if res.wideErr != nil {
			continue
		}
		got, want := seriesOf(wideVec, wq.ResourceLabel), seriesOf(namedVec, nq.ResourceLabel)
		for _, n := range names {
			if len(want[n]) > 0 {
				res.answered++
			}
			if !sameSeries(got[n], want[n]) {
				res.diffs = append(res.diffs, fmt.Sprintf("objects %v: %s %q:\nnamespace query %s\n  gives %v\nnamed query %s\n  gives %v",
					names, gr.Resource, n, wq.Text, got[n], nq.Text, want[n]))
			}
		}
	}
	return res, nil
}

// sample is one element of a query answer, as compared.
type sample struct {
	labels string
	value  float64
}

func (s sample) String() string { return fmt.Sprintf("%s => %g", s.labels, s.value) }

// seriesOf groups an answer's elements by the resource label, each group
// sorted by labels.
func seriesOf(vec model.Vector, label model.LabelName) map[string][]sample {
	out := map[string][]sample{}
	for _, s := range vec {
		n := string(s.Metric[label])
		out[n] = append(out[n], sample{labels: s.Metric.String(), value: float64(s.Value)})
	}
	for _, ss := range out {
		slices.SortFunc(ss, func(a, b sample) int { return strings.Compare(a.labels, b.labels) })
	}
	return out
}

// sameSeries compares two answers for one object: the same series, and
// values equal up to the rounding of a sum taken in another order.
func sameSeries(a, b []sample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].labels != b[i].labels {
			return false
		}
		if d := math.Abs(a[i].value - b[i].value); d > 1e-9*max(math.Abs(a[i].value), math.Abs(b[i].value), 1) {
			return false
		}
	}
	return true
}

// writeNamespaceQueryData loads the series the corpus file describes: pods
// web-1..web-4 and services web, api, admin in namespace "shop" with
// distinct rates, and a pod web-1 in "other", whose series the namespace
// matcher must keep out; and namespace "solo" for the generated templates. Samples run from 15 minutes before now to now,
// every 15s, so the corpus' ranges (up to 5m, and a 5m subquery of 1m
// rates) are full at now.
func writeNamespaceQueryData(ctx context.Context, t *testing.T, srv *prom.Server, now time.Time) {
	t.Helper()
	start, step := now.Add(-15*time.Minute), 15*time.Second
	set := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	counters := []struct {
		labels    map[string]string
		perSecond float64
	}{
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1", "code", "200"), 1},
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1", "code", "500"), 0.5},
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-2", "code", "200"), 2},
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-2", "code", "500"), 0.1},
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-3", "code", "200"), 4},
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-4", "code", "200"), 3.5},
		{set("__name__", "http_requests_total", "namespace", "shop", "pod", "web-4", "code", "500"), 1},
		{set("__name__", "http_requests_total", "namespace", "other", "pod", "web-1", "code", "200"), 50},

		{set("__name__", "frontend_http_requests_total", "kubernetes_namespace", "shop", "kubernetes_pod_name", "web-1"), 1},
		{set("__name__", "frontend_http_requests_total", "kubernetes_namespace", "shop", "kubernetes_pod_name", "web-2"), 3},
		{set("__name__", "frontend_http_requests_total", "kubernetes_namespace", "shop", "kubernetes_pod_name", "web-3"), 5},
		{set("__name__", "frontend_http_requests_total", "kubernetes_namespace", "other", "kubernetes_pod_name", "web-1"), 7},

		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-1", "container", "app"), 0.2},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-1", "container", "sidecar"), 0.05},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-1", "container", "POD"), 0.001},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-2", "container", "app"), 0.4},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-3", "container", "app"), 0.1},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-4", "container", "app"), 0.3},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "shop", "pod", "web-4", "container", "sidecar"), 0.02},
		{set("__name__", "container_cpu_usage_seconds_total", "namespace", "other", "pod", "web-1", "container", "app"), 5},

		{set("__name__", "ingress_requests_total", "namespace", "shop", "service", "web"), 10},
		{set("__name__", "ingress_requests_total", "namespace", "shop", "service", "api"), 4},
		{set("__name__", "ingress_requests_total", "namespace", "shop", "service", "admin"), 1},
		{set("__name__", "ingress_requests_total", "namespace", "other", "service", "web"), 100},

		{set("__name__", "http_requests_total", "namespace", "solo", "pod", "solo-1", "code", "200"), 2},
	}
	// Cumulative bucket rates: each pod has its own latency distribution.
	buckets := map[string][4]float64{
		"web-1": {1, 2, 3, 3},
		"web-2": {0.5, 1, 3, 4},
		"web-3": {2, 2, 2, 2},
		"web-4": {0, 1, 2, 2},
	}
	for pod, rates := range buckets {
		for i, le := range []string{"0.1", "0.5", "1", "+Inf"} {
			counters = append(counters, struct {
				labels    map[string]string
				perSecond float64
			}{set("__name__", "http_request_duration_seconds_bucket", "namespace", "shop", "pod", pod, "le", le), rates[i]})
		}
	}
	for _, c := range counters {
		if err := srv.WriteCounter(ctx, c.labels, c.perSecond, start, now, step); err != nil {
			t.Fatal(err)
		}
	}

	var gauges []prom.Sample
	gauge := func(value func(i int) float64, kv ...string) {
		l := set(kv...)
		for i, ts := 0, start; !ts.After(now); i, ts = i+1, ts.Add(step) {
			gauges = append(gauges, prom.Sample{Labels: l, Value: value(i), Time: ts})
		}
	}
	constant := func(v float64) func(int) float64 { return func(int) float64 { return v } }
	const mi = 1 << 20
	for _, g := range []struct {
		pod, container string
		used, limit    float64
	}{
		{"web-1", "app", 100 * mi, 256 * mi},
		{"web-1", "sidecar", 20 * mi, 64 * mi},
		{"web-2", "app", 200 * mi, 256 * mi},
		{"web-3", "app", 50 * mi, 128 * mi},
		{"web-4", "app", 150 * mi, 512 * mi},
		{"web-4", "sidecar", 10 * mi, 32 * mi},
	} {
		gauge(constant(g.used), "__name__", "container_memory_working_set_bytes", "namespace", "shop", "pod", g.pod, "container", g.container)
		gauge(constant(g.limit), "__name__", "kube_pod_container_resource_limits", "namespace", "shop", "pod", g.pod, "container", g.container, "resource", "memory")
	}
	gauge(constant(mi), "__name__", "container_memory_working_set_bytes", "namespace", "shop", "pod", "web-1", "container", "POD")
	gauge(constant(1024*mi), "__name__", "container_memory_working_set_bytes", "namespace", "other", "pod", "web-1", "container", "app")
	gauge(constant(2048*mi), "__name__", "kube_pod_container_resource_limits", "namespace", "other", "pod", "web-1", "container", "app", "resource", "memory")
	// web-5 has only its info series, so that a constant side has an
	// object the per-object side lacks.
	for pod, node := range map[string]string{"web-1": "node-a", "web-2": "node-a", "web-3": "node-b", "web-4": "node-b", "web-5": "node-b"} {
		gauge(constant(1), "__name__", "kube_pod_info", "namespace", "shop", "pod", pod, "node", node)
	}
	gauge(constant(1), "__name__", "kube_pod_info", "namespace", "other", "pod", "web-1", "node", "node-a")
	gauge(constant(1), "__name__", "kube_pod_info", "namespace", "solo", "pod", "solo-1", "node", "node-a")
	gauge(constant(1), "__name__", "kube_pod_info", "namespace", "solo", "pod", "solo-2", "node", "node-b")
	for pod, base := range map[string]float64{"web-1": 5, "web-2": 9, "web-3": 2, "web-4": 7} {
		gauge(func(i int) float64 { return base + float64(i%3) }, "__name__", "http_inflight_requests", "namespace", "shop", "pod", pod)
	}
	gauge(constant(120), "__name__", "queue_messages_ready", "namespace", "shop", "queue", "orders")
	if err := srv.Write(ctx, gauges); err != nil {
		t.Fatal(err)
	}
}
