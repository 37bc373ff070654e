package explain_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/explain"
	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"
)

const rulesYAML = `
rules:
- seriesQuery: '{__name__="app_load",namespace!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
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
	return m
}

type fixture struct {
	provider *provider.MetricsProvider
	reg      *prometheus.Registry
	explain  *explain.Explainer
	now      time.Time
}

// newFixture is a real Prometheus holding the series of five pods of
// namespace shop, each a different case, and one of namespace other, with
// discovery, the provider (value cache on) and an Explainer wired to it as
// the server wires them.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := prom.Start(t)
	now := time.Now().Truncate(time.Minute)
	start := now.Add(-20 * time.Minute)
	var samples []prom.Sample
	gauge := func(v float64, until time.Time, kv ...string) {
		l := map[string]string{"__name__": "app_load"}
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
	e := explain.New(explain.Options{
		Provider: p, Discovery: registry, Listers: map[string]discovery.SeriesLister{config.SourcePrometheus: client},
		Objects: objects, Mapper: mapper(), ConfigFile: "rules.yaml",
	})
	return &fixture{provider: p, reg: reg, explain: e, now: now}
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
