package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	"k8s.io/metrics/pkg/apis/metrics"
	mv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/metricsapi"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"

	cmapiserver "sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// injected is an object name that would end the selector and add a second
// expression if it were pasted into a query unescaped.
const injected = `x"} or vector(1) #`

// The rules follow prometheus-adapter's docs: config-walkthrough.md's
// per-second rate of a counter, externalmetrics.md's queue rules (namespaced
// and not), and the resource rules of its sample config.
const rulesYAML = `
rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: '{__name__=~"^ingress_requests_total$",namespace!="",service!=""}'
  resources:
    template: "<<.Resource>>"
  name:
    matches: "^ingress_(.*)_total$"
    as: "ingress_${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: 'broken_gauge{namespace!="",pod!=""}'
  resources:
    template: "<<.Resource>>"
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__="queue_consumer_lag",name!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    overrides:
      namespace: {resource: "namespace"}
- seriesQuery: '{__name__="queue_depth",name!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (name)
  resources:
    namespaced: false
resourceRules:
  cpu:
    containerQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[1m])) by (<<.GroupBy>>)'
    nodeQuery: 'sum(rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,id="/"}[1m])) by (<<.GroupBy>>)'
    resources:
      overrides:
        node: {resource: node}
        namespace: {resource: namespace}
        pod: {resource: pod}
    containerLabel: container
  memory:
    containerQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""}) by (<<.GroupBy>>)'
    nodeQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,id="/"}) by (<<.GroupBy>>)'
    resources:
      overrides:
        node: {resource: node}
        namespace: {resource: namespace}
        pod: {resource: pod}
    containerLabel: container
  window: 1m
`

// fixture is a real Prometheus loaded with series, and the providers wired
// to it as the server wires them.
type fixture struct {
	prom     *prom.Server
	client   *promcollector.Client
	registry *discovery.Registry
	custom   *provider.MetricsProvider
	resource *provider.ResourceProvider
	objects  *objectList
	now      time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := prom.Start(t)
	now := time.Now().Truncate(time.Minute)
	start := now.Add(-10 * time.Minute)
	step := 15 * time.Second

	counters := []struct {
		labels    map[string]string
		perSecond float64
	}{
		{map[string]string{"__name__": "http_requests_total", "namespace": "shop", "pod": "web-1"}, 1.5},
		{map[string]string{"__name__": "http_requests_total", "namespace": "shop", "pod": "web-2"}, 4},
		{map[string]string{"__name__": "http_requests_total", "namespace": "shop", "pod": injected}, 7},
		{map[string]string{"__name__": "http_requests_total", "namespace": "other", "pod": "web-1"}, 100},
		{map[string]string{"__name__": "ingress_requests_total", "namespace": "shop", "service": "web"}, 12},
		{map[string]string{"__name__": "container_cpu_usage_seconds_total", "namespace": "shop", "pod": "web-1", "container": "app", "node": "node-a"}, 0.25},
		{map[string]string{"__name__": "container_cpu_usage_seconds_total", "namespace": "shop", "pod": "web-1", "container": "sidecar", "node": "node-a"}, 0.01},
		{map[string]string{"__name__": "container_cpu_usage_seconds_total", "namespace": "shop", "pod": "web-2", "container": "app", "node": "node-a"}, 0.5},
		{map[string]string{"__name__": "container_cpu_usage_seconds_total", "id": "/", "node": "node-a"}, 1.75},
	}
	for _, c := range counters {
		if err := srv.WriteCounter(ctx, c.labels, c.perSecond, start, now, step); err != nil {
			t.Fatal(err)
		}
	}
	var gauges []prom.Sample
	gauge := func(v float64, kv ...string) {
		l := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		for ts := start; !ts.After(now); ts = ts.Add(step) {
			gauges = append(gauges, prom.Sample{Labels: l, Value: v, Time: ts})
		}
	}
	gauge(42, "__name__", "queue_consumer_lag", "name", "orders", "namespace", "shop")
	gauge(5, "__name__", "queue_consumer_lag", "name", "payments", "namespace", "shop")
	gauge(900, "__name__", "queue_consumer_lag", "name", "orders", "namespace", "other")
	gauge(17, "__name__", "queue_depth", "name", "emails", "namespace", "mail")
	gauge(math.NaN(), "__name__", "broken_gauge", "namespace", "shop", "pod", "web-1")
	gauge(64<<20, "__name__", "container_memory_working_set_bytes", "namespace", "shop", "pod", "web-1", "container", "app", "node", "node-a")
	gauge(16<<20, "__name__", "container_memory_working_set_bytes", "namespace", "shop", "pod", "web-1", "container", "sidecar", "node", "node-a")
	gauge(128<<20, "__name__", "container_memory_working_set_bytes", "namespace", "shop", "pod", "web-2", "container", "app", "node", "node-a")
	gauge(3<<30, "__name__", "container_memory_working_set_bytes", "id", "/", "node", "node-a")
	if err := srv.Write(ctx, gauges); err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Parse([]byte(rulesYAML), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mapper := testMapper()
	customRules, externalRules, resourceRules, err := rules.CompileConfig(cfg, "rules.yaml", mapper)
	if err != nil {
		t.Fatal(err)
	}
	client, err := promcollector.New(promcollector.Options{URL: srv.URL(), Timeout: 10 * time.Second}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := discovery.New(discovery.Options{
		Rules: customRules, ExternalRules: externalRules, Lister: client, Mapper: mapper,
		Interval: time.Minute, MaxAge: 30 * time.Minute,
	})
	if err := reg.Relist(ctx); err != nil {
		t.Fatalf("relist against real Prometheus: %v", err)
	}
	objs := &objectList{items: map[schema.GroupResource][]*metav1.PartialObjectMetadata{
		{Resource: "pods"}: {
			object("shop", "web-1", "app", "web"),
			object("shop", "web-2", "app", "web"),
			object("shop", injected, "app", "evil"),
			object("shop", "web-3", "app", "web"), // no series
			object("other", "web-1", "app", "web"),
		},
		{Resource: "nodes"}: {object("", "node-a"), object("", "node-b")},
	}}
	evalAt := func() time.Time { return now }
	mp := provider.New(provider.Options{Registry: reg, Queriers: map[string]provider.Querier{config.SourcePrometheus: client}, Objects: objs, Mapper: mapper, Now: evalAt})
	rp := provider.NewResourceProvider(resourceRules, client, 10*time.Second)
	provider.SetResourceClock(rp, evalAt)
	return &fixture{prom: srv, client: client, registry: reg, custom: mp, resource: rp, objects: objs, now: now}
}

func TestDiscoveryAgainstPrometheus(t *testing.T) {
	f := newFixture(t)
	var got []string
	for _, m := range f.custom.ListAllMetrics() {
		got = append(got, m.String())
	}
	for _, m := range f.custom.ListAllExternalMetrics() {
		got = append(got, "external/"+m.Metric)
	}
	golden(t, "discovery.json", got)
}

func TestCustomMetricsAgainstPrometheus(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pods := schema.GroupResource{Resource: "pods"}
	cases := []struct {
		name   string
		call   func() (runtime.Object, error)
		golden string
		// want is each described object's value, from the series the
		// fixture wrote: asserted on its own, so that a golden file
		// refreshed with -update cannot make a wrong answer pass.
		want   map[string]string
		code   int32 // expected API error code, 0 for success
		reason string
	}{{
		name: "pods metric by selector: per-second rate of each pod in the namespace",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricBySelector(ctx, "shop", labels.SelectorFromSet(labels.Set{"app": "web"}),
				cmprovider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "http_requests_per_second"}, labels.Everything())
		},
		golden: "pods-by-selector.json",
		want:   map[string]string{"web-1": "1500m", "web-2": "4"},
	}, {
		name: "object metric by name: a service from the template-mapped rule",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web"},
				cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "services"}, Namespaced: true, Metric: "ingress_requests_per_second"}, labels.Everything())
		},
		golden: "service-by-name.json",
		want:   map[string]string{"web": "12"},
	}, {
		name: "namespace form: the metric of the namespace object itself",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricByName(ctx, types.NamespacedName{Name: "shop"},
				cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "namespaces"}, Metric: "http_requests_per_second"}, labels.Everything())
		},
		golden: "namespace-by-name.json",
		want:   map[string]string{"shop": "12500m"}, // 1.5 + 4 + 7 per second
	}, {
		name: "injected object name reaches Prometheus as a literal",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: injected},
				cmprovider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "http_requests_per_second"}, labels.Everything())
		},
		golden: "pod-injected-name.json",
		want:   map[string]string{injected: "7"}, // its own series, not vector(1)
	}, {
		name: "pod without series: NotFound naming metric, object, rule and query",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-3"},
				cmprovider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "http_requests_per_second"}, labels.Everything())
		},
		code: http.StatusNotFound,
		// One query per namespace serves every pod in it (it names none),
		// so the message says which other pods it found.
		reason: `no data for metric "http_requests_per_second" on pods "web-3" in namespace "shop": rules[0] (http_requests_total) query sum(rate(http_requests_total{namespace="shop",pod!=""}[2m])) by (pod) returned no samples for them (only for 3 other pods)`,
	}, {
		name: "NaN samples are dropped, not served as zero",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"},
				cmprovider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "broken_gauge"}, labels.Everything())
		},
		code:   http.StatusNotFound,
		reason: `no data for metric "broken_gauge"`,
	}, {
		name: "unknown metric",
		call: func() (runtime.Object, error) {
			return f.custom.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"},
				cmprovider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "nope"}, labels.Everything())
		},
		code:   http.StatusNotFound,
		reason: `the server could not find the metric nope for pods web-1`,
	}, {
		name: "metric selector with a label that is not a Prometheus label name is a bad request",
		call: func() (runtime.Object, error) {
			sel, err := labels.Parse("app.kubernetes.io/name=web")
			if err != nil {
				t.Fatal(err)
			}
			return f.custom.GetMetricBySelector(ctx, "shop", labels.Everything(),
				cmprovider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "http_requests_per_second"}, sel)
		},
		code:   http.StatusBadRequest,
		reason: `label "app.kubernetes.io/name" in the metric selector is not a valid Prometheus label name`,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := tc.call()
			if tc.code != 0 {
				expectStatus(t, err, tc.code, tc.reason)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			var out runtime.Object
			switch o := obj.(type) {
			case *custom_metrics.MetricValue:
				out = &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{*o}}
			default:
				out = o
			}
			v := &cmv1beta2.MetricValueList{}
			if err := cmapiserver.Scheme.Convert(out, v, nil); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, item := range v.Items {
				if !item.Timestamp.Time.Equal(f.now) {
					t.Errorf("%s: timestamp %s, want the evaluation time %s", item.DescribedObject.Name, item.Timestamp.Time, f.now)
				}
				got[item.DescribedObject.Name] = item.Value.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("values by described object (-want +got):\n%s", diff)
			}
			golden(t, tc.golden, normalizeTimes(t, v, f.now))
		})
	}
}

func TestExternalMetricsAgainstPrometheus(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cases := []struct {
		name      string
		namespace string
		selector  string
		metric    string
		golden    string
		code      int32
		reason    string
	}{
		{name: "namespaced rule: only the request's namespace, metricSelector picks one queue", namespace: "shop", selector: "name=orders", metric: "queue_consumer_lag", golden: "external-lag-orders.json"},
		{name: "namespaced rule: all queues of the namespace", namespace: "shop", metric: "queue_consumer_lag", golden: "external-lag-all.json"},
		{name: "namespaced rule: set-based selector", namespace: "shop", selector: "name in (orders,payments)", metric: "queue_consumer_lag", golden: "external-lag-all.json"},
		{name: "rule with namespaced: false ignores the request's namespace", namespace: "shop", metric: "queue_depth", golden: "external-depth.json"},
		{name: "no data: NotFound with namespace and selector", namespace: "shop", selector: "name=nothing", metric: "queue_consumer_lag", code: http.StatusNotFound,
			reason: `no data for metric "queue_consumer_lag" on external metric in namespace "shop" with selector "name=nothing": externalRules[0] (queue_consumer_lag) query sum(queue_consumer_lag{name="nothing",namespace="shop"}) by (name) returned no samples`},
		{name: "unknown external metric", namespace: "shop", metric: "nope", code: http.StatusNotFound, reason: "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := labels.Parse(tc.selector)
			if err != nil {
				t.Fatal(err)
			}
			list, err := f.custom.GetExternalMetric(ctx, tc.namespace, sel, cmprovider.ExternalMetricInfo{Metric: tc.metric})
			if tc.code != 0 {
				expectStatus(t, err, tc.code, tc.reason)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			v := &emv1beta1.ExternalMetricValueList{}
			if err := cmapiserver.Scheme.Convert(list, v, nil); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, normalizeTimes(t, v, f.now))
		})
	}
}

func TestResourceMetricsAgainstPrometheus(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pods, _ := f.objects.Objects(ctx, schema.GroupResource{Resource: "pods"}, "shop", labels.Everything())
	pm, err := f.resource.PodMetrics(ctx, pods)
	if err != nil {
		t.Fatal(err)
	}
	podList := &mv1beta1.PodMetricsList{}
	if err := metricsapi.Scheme.Convert(&metrics.PodMetricsList{Items: pm}, podList, nil); err != nil {
		t.Fatal(err)
	}
	golden(t, "podmetrics.json", normalizeTimes(t, podList, f.now))

	nodes, _ := f.objects.Objects(ctx, schema.GroupResource{Resource: "nodes"}, "", labels.Everything())
	nm, err := f.resource.NodeMetrics(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	nodeList := &mv1beta1.NodeMetricsList{}
	if err := metricsapi.Scheme.Convert(&metrics.NodeMetricsList{Items: nm}, nodeList, nil); err != nil {
		t.Fatal(err)
	}
	golden(t, "nodemetrics.json", normalizeTimes(t, nodeList, f.now))
}

// TestBackendDown checks that an unreachable Prometheus turns into a
// ServiceUnavailable error, quickly, and that discovery keeps its last list.
func TestBackendDown(t *testing.T) {
	f := newFixture(t)
	before := len(f.custom.ListAllMetrics())
	if err := f.prom.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := f.custom.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"},
		cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "http_requests_per_second"}, labels.Everything())
	expectStatus(t, err, http.StatusServiceUnavailable, `metric "http_requests_per_second": rules[0] (http_requests_total): backend unavailable`)
	if strings.Contains(err.Error(), f.prom.URL()) {
		t.Errorf("API error leaks the backend URL: %v", err)
	}
	if err := f.registry.Relist(ctx); err == nil {
		t.Error("relist with Prometheus down: want an error")
	}
	if after := len(f.custom.ListAllMetrics()); after != before {
		t.Errorf("metrics after a failed relist = %d, want the last good %d", after, before)
	}
}

func expectStatus(t *testing.T, err error, code int32, reason string) {
	t.Helper()
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an API status", err, err)
	}
	if got := se.Status().Code; got != code {
		t.Errorf("code = %d, want %d (%v)", got, code, err)
	}
	if !strings.Contains(se.Status().Message, reason) {
		t.Errorf("message = %q, want it to contain %q", se.Status().Message, reason)
	}
}

// normalizeTimes renders v as JSON with the evaluation time replaced by a
// placeholder, so golden files do not change from run to run, and checks
// that no other timestamp is present.
func normalizeTimes(t *testing.T, v any, now time.Time) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), `"`+now.UTC().Format(time.RFC3339)+`"`, `"<evaluation time>"`)
	var out any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatal(err)
	}
	dropCreationTimestamps(out)
	return out
}

// dropCreationTimestamps removes metadata.creationTimestamp, which
// metrics.k8s.io sets to the time of the request.
func dropCreationTimestamps(v any) {
	switch x := v.(type) {
	case map[string]any:
		if md, ok := x["metadata"].(map[string]any); ok {
			delete(md, "creationTimestamp")
		}
		for _, c := range x {
			dropCreationTimestamps(c)
		}
	case []any:
		for _, c := range x {
			dropCreationTimestamps(c)
		}
	}
}

func golden(t *testing.T, name string, got any) {
	t.Helper()
	path := filepath.Join("testdata", name)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(b)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func object(namespace, name string, kv ...string) *metav1.PartialObjectMetadata {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l}}
}

// objectList stands in for the cluster's object cache.
type objectList struct {
	items map[schema.GroupResource][]*metav1.PartialObjectMetadata
}

func (o *objectList) Objects(_ context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]*metav1.PartialObjectMetadata, error) {
	var out []*metav1.PartialObjectMetadata
	for _, obj := range o.items[gr] {
		if (namespace == "" || obj.Namespace == namespace) && sel.Matches(labels.Set(obj.Labels)) {
			out = append(out, obj)
		}
	}
	return out, nil
}

func (o *objectList) Names(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]string, error) {
	objs, _ := o.Objects(ctx, gr, namespace, sel)
	var names []string
	for _, obj := range objs {
		names = append(names, obj.Name)
	}
	return names, nil
}

func testMapper() apimeta.RESTMapper {
	core := schema.GroupVersion{Version: "v1"}
	apps := schema.GroupVersion{Group: "apps", Version: "v1"}
	m := apimeta.NewDefaultRESTMapper([]schema.GroupVersion{core, apps})
	m.Add(core.WithKind("Pod"), apimeta.RESTScopeNamespace)
	m.Add(core.WithKind("Service"), apimeta.RESTScopeNamespace)
	m.Add(core.WithKind("Namespace"), apimeta.RESTScopeRoot)
	m.Add(core.WithKind("Node"), apimeta.RESTScopeRoot)
	m.Add(apps.WithKind("Deployment"), apimeta.RESTScopeNamespace)
	return m
}
