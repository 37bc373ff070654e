package explain_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/explain"
	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const rulesYAML = `
rules:
- seriesQuery: '{__name__="app_load",namespace!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
# rules[1]: maps pod, but its series carry pod_name: discovery lists
# legacy_load for namespaces only.
- seriesQuery: 'legacy_load{namespace!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
# rules[2]: requests through a service, an Object metric of services (and
# namespaces); its template maps pod too, but no series carries a pod.
- seriesQuery: 'svc_requests_total{namespace!="",service!=""}'
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  resources: {template: "<<.Resource>>"}
externalRules:
- seriesQuery: '{__name__="queue_depth",queue!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
`

// objectNames is a fixed object cache.
type objectNames map[string][]string // namespace → pod names

func (o objectNames) Names(_ context.Context, gr schema.GroupResource, namespace string, _ labels.Selector) ([]string, error) {
	if gr != rules.Pods {
		return nil, nil
	}
	return o[namespace], nil
}

func (o objectNames) Objects(context.Context, schema.GroupResource, string, labels.Selector) ([]*metav1.PartialObjectMetadata, error) {
	return nil, errors.New("not used")
}

func mapper() apimeta.RESTMapper {
	core := schema.GroupVersion{Version: "v1"}
	m := apimeta.NewDefaultRESTMapper([]schema.GroupVersion{core})
	m.Add(core.WithKind("Pod"), apimeta.RESTScopeNamespace)
	m.Add(core.WithKind("Namespace"), apimeta.RESTScopeRoot)
	m.Add(core.WithKind("Service"), apimeta.RESTScopeNamespace)
	return m
}

type fixture struct {
	provider *provider.MetricsProvider
	reg      *prometheus.Registry
	explain  *explain.Explainer
	opts     explain.Options
	now      time.Time
}

// newFixture is a real Prometheus holding the series of five pods of
// namespace shop, each a different case, and one of namespace other, with
// discovery, the provider (value cache on) and an Explainer wired to it as
// the server wires them.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	toolbin.Require(t, "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := prom.Start(t)
	now := time.Now().Truncate(time.Minute)
	start := now.Add(-20 * time.Minute)
	var samples []prom.Sample
	gauge := func(v float64, until time.Time, kv ...string) {
		l := map[string]string{"__name__": "app_load"} // unless kv names another
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		for ts := start; !ts.After(until); ts = ts.Add(15 * time.Second) {
			samples = append(samples, prom.Sample{Labels: l, Value: v, Time: ts})
		}
	}
	gauge(3, now, "namespace", "shop", "pod", "web-1")
	gauge(math.NaN(), now, "namespace", "shop", "pod", "web-2")
	gauge(5, now.Add(-15*time.Minute), "namespace", "shop", "pod", "web-3") // stale
	gauge(7, now, "namespace", "shop", "pod_name", "web-4")                 // the wrong label
	gauge(100, now, "namespace", "other", "pod", "web-5")                   // another namespace
	gauge(2, now, "__name__", "legacy_load", "namespace", "shop", "pod_name", "web-1")
	gauge(120, now, "__name__", "queue_depth", "queue", "orders")
	for ts := start; !ts.After(now); ts = ts.Add(15 * time.Second) {
		samples = append(samples, prom.Sample{Labels: map[string]string{"__name__": "svc_requests_total", "namespace": "shop", "service": "web"},
			Value: 10 * ts.Sub(start).Seconds(), Time: ts})
	}
	if err := srv.Write(ctx, samples); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(rulesYAML), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	custom, external, _, err := rules.CompileConfig(cfg, "rules.yaml", mapper())
	if err != nil {
		t.Fatal(err)
	}
	client, err := promcollector.New(promcollector.Options{URL: srv.URL(), Timeout: 10 * time.Second}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	registry := discovery.New(discovery.Options{Rules: custom, ExternalRules: external, Lister: client, Mapper: mapper(), Interval: time.Minute, MaxAge: 30 * time.Minute})
	if err := registry.Relist(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	objects := objectNames{"shop": {"web-1", "web-2", "web-3", "web-4", "web-5"}, "other": {"web-5"}}
	p := provider.New(provider.Options{
		Registry: registry, Queriers: map[string]provider.Querier{config.SourcePrometheus: client}, Objects: objects, Mapper: mapper(),
		Now: func() time.Time { return now }, ValueCacheTTL: time.Hour, Registerer: reg,
	})
	opts := explain.Options{
		Provider: p, Discovery: registry, Listers: map[string]discovery.SeriesLister{config.SourcePrometheus: client},
		Objects: objects, Mapper: mapper(), ConfigFile: "rules.yaml",
	}
	return &fixture{provider: p, reg: reg, explain: explain.New(opts), opts: opts, now: now}
}

func (f *fixture) cacheRequests(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "gantry_value_cache_requests_total" {
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestObjectsWithoutValue explains a Pods request on a real Prometheus:
// each pod without a value gets the reason the series show.
func TestObjectsWithoutValue(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ex := f.explain.Metric(ctx, explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "app_load", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()})
	raw, _ := json.MarshalIndent(ex, "", "  ")
	t.Logf("explanation:\n%s", raw)

	got := map[string]string{}
	for _, o := range ex.Objects.Items {
		got[o.Name] = o.Reason
		if o.Reason == "" {
			got[o.Name] = "value " + o.Value
		}
	}
	want := map[string]string{
		"web-1": "value 3",
		"web-2": v1alpha1.NoValueNaN,
		"web-3": v1alpha1.NoValueStale,
		"web-4": v1alpha1.NoValueOtherLabel,
		"web-5": v1alpha1.NoValueNoSeries,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("objects (-want +got):\n%s", d)
	}
	for _, o := range ex.Objects.Items {
		if o.Name == "web-4" && !strings.Contains(o.Message, `"pod_name"`) {
			t.Errorf("web-4's message does not name pod_name: %q", o.Message)
		}
		// web-3's last sample is 15 minutes before the query's time.
		if o.Name == "web-3" {
			if o.Age == nil || o.Age.Duration != 15*time.Minute {
				t.Errorf("web-3 (stale): age %v, want 15m0s", o.Age)
			}
			if !strings.Contains(o.Message, "latest sample 15m0s old, lookback 5m0s") {
				t.Errorf("web-3 (stale): message %q does not give the sample's age and the lookback", o.Message)
			}
		}
	}
	if ex.Rule == nil || ex.Rule.ID != "rules[0] (app_load)" || ex.Rule.Origin != v1alpha1.RuleOriginConfig || ex.Rule.Backend != "prometheus" || ex.Rule.ResourceLabel != "pod" {
		t.Errorf("rule = %+v", ex.Rule)
	}
	if ex.Value == nil || !ex.Value.Found || ex.Value.Value != "3" || ex.Value.Count != 1 {
		t.Errorf("value = %+v, want 3 from one pod", ex.Value)
	}
	if ex.Diagnosis.Status != v1alpha1.StatusWarn {
		t.Errorf("diagnosis = %+v, want WARN (4 of 5 pods without a value)", ex.Diagnosis)
	}
	// Nothing of namespace other: its pod web-5 has a value there.
	if strings.Contains(string(raw), `"other"`) || strings.Contains(string(raw), "100") {
		t.Errorf("the explanation shows namespace other's series:\n%s", raw)
	}
	if strings.Contains(string(raw), "127.0.0.1") || strings.Contains(string(raw), "http://") {
		t.Errorf("the explanation shows the backend's address:\n%s", raw)
	}
}

// TestValueCacheUntouched: an explanation runs its queries afresh and
// leaves the value cache as it was: no counted request, no entry (the next
// HPA request still misses), and it sees an entry an HPA request made.
func TestValueCacheUntouched(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ask := explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "app_load", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()}
	before := f.cacheRequests(t)
	ex := f.explain.Metric(ctx, ask)
	if ex.Cache == nil || !ex.Cache.Enabled || ex.Cache.Hit {
		t.Fatalf("cache before any HPA request = %+v, want enabled, no hit", ex.Cache)
	}
	if d := cmp.Diff(before, f.cacheRequests(t)); d != "" {
		t.Errorf("explaining counted value cache requests (-before +after):\n%s", d)
	}
	// An HPA's request: a miss (the explanation stored nothing), then the
	// explanation sees its entry.
	info := cmprovider.CustomMetricInfo{GroupResource: rules.Pods, Namespaced: true, Metric: "app_load"}
	if _, err := f.provider.GetMetricBySelector(ctx, "shop", labels.Everything(), info, labels.Everything()); err != nil {
		t.Fatal(err)
	}
	if got := f.cacheRequests(t); got["miss"] != before["miss"]+1 || got["hit"] != before["hit"] {
		t.Errorf("the HPA request after the explanation: cache requests %v (before %v), want one more miss", got, before)
	}
	afterHPA := f.cacheRequests(t)
	ex = f.explain.Metric(ctx, ask)
	if ex.Cache == nil || !ex.Cache.Hit || ex.Cache.Age == nil {
		t.Errorf("cache after an HPA request = %+v, want a hit with its age", ex.Cache)
	}
	if d := cmp.Diff(afterHPA, f.cacheRequests(t)); d != "" {
		t.Errorf("peeking counted value cache requests (-before +after):\n%s", d)
	}
}

// TestNotListed: a metric no rule serves fails, naming what discovery
// lists instead.
func TestNotListed(t *testing.T) {
	f := newFixture(t)
	ex := f.explain.Metric(context.Background(), explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "app_loads", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()})
	if ex.Diagnosis.Status != v1alpha1.StatusFail || ex.Discovery == nil || ex.Discovery.Listed || ex.Rule != nil {
		t.Fatalf("explanation of an unknown metric: %+v", ex.Explanation)
	}
	if !slices.ContainsFunc(ex.Discovery.Similar, func(s string) bool { return strings.HasPrefix(s, "app_load ") }) {
		t.Errorf("similar = %v, want app_load", ex.Discovery.Similar)
	}
}

// TestOtherLabelUnlisted: series carry the pods' names in pod_name where
// the rule maps pod, so discovery lists the metric for namespaces only;
// the explanation finds the rule through its series and says so.
func TestOtherLabelUnlisted(t *testing.T) {
	f := newFixture(t)
	ex := f.explain.Metric(context.Background(), explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "legacy_load", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()})
	raw, _ := json.MarshalIndent(ex, "", "  ")
	t.Logf("explanation:\n%s", raw)
	if ex.Discovery == nil || ex.Discovery.Listed || !slices.Contains(ex.Discovery.Similar, "legacy_load (custom, namespaces)") {
		t.Errorf("discovery %+v, want legacy_load not listed for pods, listed for namespaces", ex.Discovery)
	}
	if ex.Rule == nil || ex.Rule.ID != "rules[1] (legacy_load)" || ex.Rule.ResourceLabel != "pod" || ex.Rule.Series != "legacy_load" {
		t.Errorf("rule %+v, want rules[1] mapping pod, series legacy_load", ex.Rule)
	}
	if ex.Objects == nil || len(ex.Objects.Items) != 5 || ex.Objects.WithValue != 0 {
		t.Fatalf("objects %+v, want the 5 pods, none with a value", ex.Objects)
	}
	for _, o := range ex.Objects.Items {
		want := v1alpha1.NoValueNoSeries
		if o.Name == "web-1" {
			want = v1alpha1.NoValueOtherLabel
			if !strings.Contains(o.Message, `"pod_name"`) || !strings.Contains(o.Message, `"pod"`) {
				t.Errorf("web-1: message %q, want it to name pod_name and pod", o.Message)
			}
		}
		if o.Reason != want {
			t.Errorf("%s: reason %s (%s), want %s", o.Name, o.Reason, o.Message, want)
		}
	}
	d := ex.Diagnosis
	if d.Status != v1alpha1.StatusFail || !strings.Contains(d.Reason, `"pod_name"`) || !strings.Contains(d.Reason, `"pod"`) || !strings.Contains(d.Reason, "rules[1]") {
		t.Errorf("diagnosis %+v, want FAIL naming pod_name, pod and rules[1]", d)
	}
	if !strings.Contains(d.Hint, "resources.overrides") || !strings.Contains(d.Hint, "pod_name: {resource: pods}") || !strings.Contains(d.Hint, "relabel") {
		t.Errorf("hint %q, want the override to add and relabeling", d.Hint)
	}
}

// TestWrongTypeHint: a metric served as an Object metric of services and
// namespaces, asked as a Pods metric, is not explained through its rule
// (no series carries a pod), and the hint lists both resources, services
// first, with the Object form to ask for.
func TestWrongTypeHint(t *testing.T) {
	f := newFixture(t)
	ex := f.explain.Metric(context.Background(), explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "svc_requests_per_second", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()})
	t.Logf("diagnosis: %+v", ex.Diagnosis)
	if ex.Diagnosis.Status != v1alpha1.StatusFail || ex.Rule != nil {
		t.Fatalf("explanation %+v, want FAIL and no rule", ex.Explanation)
	}
	hint := ex.Diagnosis.Hint
	if !strings.Contains(hint, "svc_requests_per_second for services, namespaces") {
		t.Errorf("hint %q, want the metric's resources listed, services first", hint)
	}
	if !strings.Contains(hint, "Object metric") || !strings.Contains(hint, "describedObject a Service (v1)") {
		t.Errorf("hint %q, want an Object metric of a Service", hint)
	}
}

// fakeCluster answers APIService reads only.
type fakeCluster struct {
	explain.Cluster
	apiServices map[string]explain.APIService
}

func (c fakeCluster) APIService(_ context.Context, name string) (explain.APIService, error) {
	return c.apiServices[name], nil
}

// TestAPIServiceUnavailable: a custom or external metric Gantry itself
// answers fails when the APIService the HPA's request goes through is not
// Available, naming it and its reason.
func TestAPIServiceUnavailable(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	svc := func(available bool) explain.APIService {
		s := explain.APIService{Found: true, Available: available, Service: "gantry/gantry"}
		if !available {
			s.Reason, s.Message = "FailedDiscoveryCheck", "failing or missing response from https://10.0.0.1:6443/apis: bad status 503\nretrying"
		}
		return s
	}
	cl := fakeCluster{apiServices: map[string]explain.APIService{
		explain.APIServiceCustom:      svc(true),
		explain.APIServiceExternal:    svc(false),
		explain.APIServiceDiagnostics: svc(true),
	}}
	opts := f.opts
	opts.Cluster = cl
	clk := clocktesting.NewFakeClock(time.Now())
	opts.Clock = clk
	e := explain.New(opts)

	external := e.Metric(ctx, explain.Ask{Type: v1alpha1.MetricTypeExternal, Metric: "queue_depth", MetricSelector: labels.Everything()})
	t.Logf("external: %+v", external.Diagnosis)
	if external.Value == nil || !external.Value.Found || external.Value.Value != "120" {
		t.Errorf("external value %+v, want 120: Gantry itself answers", external.Value)
	}
	d := external.Diagnosis
	if d.Status != v1alpha1.StatusFail || !strings.Contains(d.Reason, explain.APIServiceExternal) || !strings.Contains(d.Reason, "FailedDiscoveryCheck") || strings.Contains(d.Reason, "\n") {
		t.Errorf("external diagnosis %+v, want one line of FAIL naming %s and its reason", d, explain.APIServiceExternal)
	}

	pods := explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "app_load", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()}
	if d := e.Metric(ctx, pods).Diagnosis; d.Status != v1alpha1.StatusWarn {
		t.Errorf("custom diagnosis with its APIService Available: %+v, want WARN (pods without a value)", d)
	}
	cl.apiServices[explain.APIServiceCustom] = svc(false)
	clk.Step(explain.DefaultAPIServiceTTL) // the APIServices are read again
	d = e.Metric(ctx, pods).Diagnosis
	t.Logf("custom: %+v", d)
	if d.Status != v1alpha1.StatusFail || !strings.Contains(d.Reason, explain.APIServiceCustom) || !strings.Contains(d.Reason, "FailedDiscoveryCheck") {
		t.Errorf("custom diagnosis %+v, want FAIL naming %s and its reason", d, explain.APIServiceCustom)
	}
}

// countingCluster counts the APIService reads of a fakeCluster.
type countingCluster struct {
	fakeCluster
	mu    sync.Mutex
	reads map[string]int
}

func (c *countingCluster) APIService(ctx context.Context, name string) (explain.APIService, error) {
	c.mu.Lock()
	c.reads[name]++
	c.mu.Unlock()
	return c.fakeCluster.APIService(ctx, name)
}

func (c *countingCluster) readCounts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.reads)
}

// TestAPIServicesReadOncePerTTL: explanations asked one after another
// read each APIService they report once per APIServiceTTL, not each time.
// Every read is a GET through Gantry's client, whose rate limiter (5 a
// second by default) made each metric explanation, which reported two
// APIServices, wait a flat 400 ms in the bench.
func TestAPIServicesReadOncePerTTL(t *testing.T) {
	ctx := context.Background()
	available := explain.APIService{Found: true, Available: true, Service: "gantry/gantry"}
	cl := &countingCluster{fakeCluster: fakeCluster{apiServices: map[string]explain.APIService{
		explain.APIServiceCustom:      available,
		explain.APIServiceExternal:    available,
		explain.APIServiceDiagnostics: available,
	}}, reads: map[string]int{}}
	registry := discovery.New(discovery.Options{Mapper: mapper()})
	objects := objectNames{"shop": {"web-1"}}
	p := provider.New(provider.Options{Registry: registry, Objects: objects, Mapper: mapper()})
	clk := clocktesting.NewFakeClock(time.Now())
	e := explain.New(explain.Options{Provider: p, Discovery: registry, Objects: objects, Mapper: mapper(), Cluster: cl, Clock: clk})
	ask := explain.Ask{Type: v1alpha1.MetricTypePods, Metric: "app_load", Namespace: "shop", Resource: rules.Pods, Selector: labels.Everything(), MetricSelector: labels.Everything()}

	explainAll := func(n int) {
		t.Helper()
		for range n {
			m := e.Metric(ctx, ask)
			if api := m.API; api.APIService != explain.APIServiceCustom || !api.Found || !api.Available || !api.ServedByGantry || api.Error != "" {
				t.Fatalf("API %+v, want %s Available and served by Gantry", api, explain.APIServiceCustom)
			}
		}
	}
	explainAll(20)
	want := map[string]int{explain.APIServiceCustom: 1, explain.APIServiceDiagnostics: 1}
	if diff := cmp.Diff(want, cl.readCounts()); diff != "" {
		t.Errorf("APIService reads of 20 explanations (-want +got):\n%s", diff)
	}
	clk.Step(explain.DefaultAPIServiceTTL)
	explainAll(20)
	want = map[string]int{explain.APIServiceCustom: 2, explain.APIServiceDiagnostics: 2}
	if diff := cmp.Diff(want, cl.readCounts()); diff != "" {
		t.Errorf("APIService reads once the TTL has passed (-want +got):\n%s", diff)
	}
}
