package provider_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// everyNamespaceQuerier is a backend that ignores the query's matchers and
// answers every query with one sample per namespace, labelled as every
// resource: if a request's namespace is lost on the way to the query, the
// answer for another namespace is there to be served.
type everyNamespaceQuerier struct {
	mu      sync.Mutex
	queries []string
}

func (q *everyNamespaceQuerier) Query(_ context.Context, query string, ts time.Time) (model.Vector, error) {
	q.mu.Lock()
	q.queries = append(q.queries, query)
	q.mu.Unlock()
	var out model.Vector
	for i, ns := range []string{"a", "b"} {
		out = append(out, &model.Sample{
			Metric:    model.Metric{"namespace": model.LabelValue(ns), "pod": "web", "node": "node-1"},
			Value:     model.SampleValue(i + 1),
			Timestamp: model.TimeFromUnixNano(ts.UnixNano()),
		})
	}
	return out, nil
}

func (q *everyNamespaceQuerier) sent() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.queries...)
}

// staticRegistry answers every lookup with one rule.
type staticRegistry struct{ entry discovery.Entry }

func (r staticRegistry) LookupCustom(cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	return r.entry, true
}
func (r staticRegistry) LookupExternal(string) (discovery.Entry, bool) { return r.entry, true }
func (r staticRegistry) CustomMetrics() []cmprovider.CustomMetricInfo  { return nil }
func (r staticRegistry) ExternalMetrics() []cmprovider.ExternalMetricInfo {
	return nil
}

// TestNamespacedRequestsStayInTheirNamespace is the cross-namespace read of
// a request in namespace a about namespace b: RBAC authorizes the request in
// a, so no answer may be about anything outside a, whatever resource it
// names.
func TestNamespacedRequestsStayInTheirNamespace(t *testing.T) {
	cfg, err := config.Parse([]byte(`rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
      node: {resource: node}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mapper := testMapper()
	custom, _, _, err := rules.CompileConfig(cfg, "rules.yaml", mapper)
	if err != nil {
		t.Fatal(err)
	}
	q := &everyNamespaceQuerier{}
	objs := &objectList{items: map[schema.GroupResource][]*metav1.PartialObjectMetadata{
		rules.Namespaces:   {object("", "a"), object("", "b")},
		rules.Nodes:        {object("", "node-1")},
		{Resource: "pods"}: {object("a", "web"), object("b", "web")},
	}}
	p := provider.New(provider.Options{
		Registry: staticRegistry{discovery.Entry{Rule: custom[0], Series: "http_requests_total"}},
		Queriers: map[string]provider.Querier{config.SourcePrometheus: q}, Objects: objs, Mapper: mapper,
	})
	ctx := context.Background()
	info := func(resource string) cmprovider.CustomMetricInfo {
		return cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: resource}, Namespaced: true, Metric: "http_requests_per_second"}
	}

	for _, tc := range []struct {
		name     string
		resource string // as the API path spells it
		object   string // "" = every object (the selector form)
	}{
		{name: "another namespace by name (v1beta2 path)", resource: "namespaces", object: "b"},
		{name: "another namespace by name (v1beta1 singular)", resource: "namespace", object: "b"},
		{name: "a node inside a namespace", resource: "nodes", object: "node-1"},
		{name: "every node inside a namespace", resource: "nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(q.sent())
			var err error
			if tc.object != "" {
				var v any
				v, err = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "a", Name: tc.object}, info(tc.resource), labels.Everything())
				if err == nil {
					t.Fatalf("namespace a, %s/%s: answered %+v; want NotFound", tc.resource, tc.object, v)
				}
			} else {
				var l any
				l, err = p.GetMetricBySelector(ctx, "a", labels.Everything(), info(tc.resource), labels.Everything())
				if err == nil {
					t.Fatalf("namespace a, %s/*: answered %+v; want NotFound", tc.resource, l)
				}
			}
			expectStatus(t, err, http.StatusNotFound, "")
			if sent := q.sent()[before:]; len(sent) > 0 {
				t.Errorf("queries sent for a request that may not be answered: %q", sent)
			}
		})
	}

	t.Run("its own namespace, by name and by selector", func(t *testing.T) {
		for _, resource := range []string{"namespaces", "namespace"} {
			v, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "a", Name: "a"}, info(resource), labels.Everything())
			if err != nil {
				t.Fatalf("namespace a, %s/a: %v", resource, err)
			}
			if v.DescribedObject.Name != "a" || v.Value.MilliValue() != 1000 {
				t.Errorf("namespace a, %s/a: %+v; want namespace a's value 1", resource, v)
			}
			l, err := p.GetMetricBySelector(ctx, "a", labels.Everything(), info(resource), labels.Everything())
			if err != nil {
				t.Fatalf("namespace a, %s/*: %v", resource, err)
			}
			if len(l.Items) != 1 || l.Items[0].DescribedObject.Name != "a" {
				t.Errorf("namespace a, %s/*: %+v; want namespace a alone", resource, l.Items)
			}
		}
		for _, s := range q.sent() {
			if strings.Contains(s, `"b"`) {
				t.Errorf("a query names namespace b: %s", s)
			}
		}
	})

	t.Run("pods: the query keeps the request's namespace", func(t *testing.T) {
		before := len(q.sent())
		_, _ = p.GetMetricByName(ctx, types.NamespacedName{Namespace: "a", Name: "web"}, info("pods"), labels.SelectorFromSet(labels.Set{"namespace": "b"}))
		_, _ = p.GetMetricBySelector(ctx, "a", labels.Everything(), info("pods"), labels.Everything())
		if len(q.sent()) == before {
			t.Fatal("no query sent for pods of namespace a")
		}
		for _, s := range q.sent()[before:] {
			if !strings.Contains(s, `namespace="a"`) {
				t.Errorf("query for a pod of namespace a without namespace=\"a\": %s", s)
			}
		}
	})
}

// TestErrorsDoNotEchoHugeSelectors: a selector with thousands of values is
// named in an error by its start and a count, not repeated whole.
func TestErrorsDoNotEchoHugeSelectors(t *testing.T) {
	cfg, err := config.Parse([]byte(`rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	custom, _, _, err := rules.CompileConfig(cfg, "rules.yaml", testMapper())
	if err != nil {
		t.Fatal(err)
	}
	objs := &objectList{items: map[schema.GroupResource][]*metav1.PartialObjectMetadata{
		{Resource: "pods"}: {object("a", "ghost", "app", "v1")}, // no series
	}}
	p := provider.New(provider.Options{
		Registry: staticRegistry{discovery.Entry{Rule: custom[0], Series: "http_requests_total"}},
		Queriers: map[string]provider.Querier{config.SourcePrometheus: &everyNamespaceQuerier{}}, Objects: objs, Mapper: testMapper(),
	})
	values := make([]string, 7600)
	for i := range values {
		values[i] = fmt.Sprintf("v%d", i+1)
	}
	sel, err := labels.Parse("app in (" + strings.Join(values, ",") + ")")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GetMetricBySelector(context.Background(), "a", sel, cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "http_requests_per_second"}, sel)
	expectStatus(t, err, http.StatusNotFound, "more bytes)")
	if n := len(err.Error()); n > 4096 {
		t.Errorf("the error is %d bytes long for a selector of %d: %.300s", n, len(sel.String()), err)
	}
}
