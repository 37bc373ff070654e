package provider_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// onePodQuerier answers every query with one sample for pod web-1, as
// the backend of the metricrules bench scenario (test/bench) does.
type onePodQuerier struct{}

func (onePodQuerier) Query(_ context.Context, _ string, ts time.Time) (model.Vector, error) {
	return model.Vector{{
		Metric:    model.Metric{"pod": "web-1"},
		Value:     1.5,
		Timestamp: model.TimeFromUnixNano(ts.UnixNano()),
	}}, nil
}

// oneNamespace is a namespaced registry with one custom metric's entry
// in one namespace.
type oneNamespace struct {
	namespace string
	entry     discovery.Entry
}

func (o oneNamespace) LookupCustomIn(namespace string, _ cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	return o.entry, namespace == o.namespace
}

func (o oneNamespace) LookupExternalIn(string, string) (discovery.Entry, bool) {
	return discovery.Entry{}, false
}

// benchRule is the rule of the metricrules bench scenario, compiled as
// the cluster config's (confined false) or as a MetricRule's.
func benchRule(b *testing.B, confined bool) *rules.Rule {
	b.Helper()
	cfg, err := config.Parse([]byte(`rules:
- seriesQuery: 'mr_007_1_requests_total{namespace="mr-007",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`), "bench")
	if err != nil {
		b.Fatal(err)
	}
	c, _, _, err := rules.CompileConfig(cfg, "bench", testMapper())
	if err != nil {
		b.Fatal(err)
	}
	if confined {
		if err := c[0].Confine("namespace", "mr-007"); err != nil {
			b.Fatal(err)
		}
	}
	return c[0]
}

// BenchmarkGetMetricBySelector is the request of the metricrules bench's
// HPA-like pollers (the pods app=mr-1 of a namespace, value cache off, so
// each request renders and runs its query), answered from a cluster rule
// and from the same rule in a MetricRule: the difference is what serving
// a rule from a namespace costs per request.
func BenchmarkGetMetricBySelector(b *testing.B) {
	objects := &objectList{items: map[schema.GroupResource][]*metav1.PartialObjectMetadata{
		{Resource: "pods"}: {object("mr-007", "web-1", "app", "mr-1")},
	}}
	info := cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "mr_007_1_requests_per_second"}
	sel := labels.SelectorFromSet(labels.Set{"app": "mr-1"})
	for _, bc := range []struct {
		name     string
		confined bool
	}{{"cluster", false}, {"metricrule", true}} {
		b.Run(bc.name, func(b *testing.B) {
			entry := discovery.Entry{Rule: benchRule(b, bc.confined), Series: "mr_007_1_requests_total"}
			opts := provider.Options{
				Queriers: map[string]provider.Querier{config.SourcePrometheus: onePodQuerier{}},
				Objects:  objects,
				Mapper:   testMapper(),
			}
			if bc.confined {
				opts.Registry = staticRegistryNone{}
			} else {
				opts.Registry = staticRegistry{entry: entry}
			}
			p := provider.New(opts)
			if bc.confined {
				p.ServeNamespaced(oneNamespace{namespace: "mr-007", entry: entry}, 4)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				list, err := p.GetMetricBySelector(ctx, "mr-007", sel, info, labels.Everything())
				if err != nil {
					b.Fatal(err)
				}
				if len(list.Items) != 1 {
					b.Fatalf("%d items, want 1", len(list.Items))
				}
			}
		})
	}
}
