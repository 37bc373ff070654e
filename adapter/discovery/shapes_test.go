package discovery_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/adapter/discovery"
)

// shapeLister hands over shapes only (as the Prometheus collector does);
// its Series fails, so a Registry that calls it is caught.
type shapeLister struct {
	sets  map[string][]model.LabelSet
	calls int
}

func (s *shapeLister) Series(context.Context, []string, time.Time, time.Time) ([]model.LabelSet, error) {
	return nil, errors.New("Series called on a ShapeLister")
}

func (s *shapeLister) SeriesShapes(_ context.Context, matchers []string, _, _ time.Time, fn func(string, []model.LabelName)) error {
	s.calls++
	seen := map[string]bool{}
	// Unsorted and with repeats removed, in the order of the series.
	for _, ls := range s.sets[matchers[0]] {
		var names []model.LabelName
		for l := range ls {
			if l != model.MetricNameLabel {
				names = append(names, l)
			}
		}
		slices.Sort(names)
		key := string(ls[model.MetricNameLabel])
		for _, n := range names {
			key += "," + string(n)
		}
		if !seen[key] {
			seen[key] = true
			fn(string(ls[model.MetricNameLabel]), names)
		}
	}
	return nil
}

// TestShapeListerMatchesSeriesLister: a backend that lists shapes yields
// the same metrics, and the same winner between two series of one name, as
// one that lists whole label sets; the Registry asks it for shapes only.
func TestShapeListerMatchesSeriesLister(t *testing.T) {
	custom, external := compile(t, `
rules:
- seriesQuery: '{__name__=~"http_.*",namespace!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
      service: {resource: "service"}
  name: {matches: "^http_(.*)_total$", as: "${1}"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__=~"http_.*",namespace!=""}'
  name: {matches: "^http_(.*)_total$", as: "ext_${1}"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
`)
	sel := `{__name__=~"http_.*",namespace!=""}`
	sets := []model.LabelSet{
		labelSet("__name__", "http_requests_total", "namespace", "a", "pod", "p1", "code", "200"),
		labelSet("__name__", "http_requests_total", "namespace", "a", "pod", "p2", "code", "500"),
		labelSet("__name__", "http_requests_total", "namespace", "b", "service", "s"),
		labelSet("__name__", "http_errors_total", "namespace", "b", "pod", "p3"),
		labelSet("__name__", "http_other", "namespace", "b", "pod", "p3"),
	}
	plain := &fakeLister{}
	plain.set(sel, sets, nil)
	// The shape lister sees them in another order.
	shapes := &shapeLister{sets: map[string][]model.LabelSet{sel: slices.Concat(sets[3:], sets[:3])}}

	list := func(l discovery.SeriesLister) *discovery.Registry {
		reg := discovery.New(discovery.Options{Rules: custom, ExternalRules: external, Lister: l, Mapper: testMapper()})
		if err := reg.Relist(context.Background()); err != nil {
			t.Fatalf("Relist: %v", err)
		}
		return reg
	}
	a, b := list(plain), list(shapes)
	if shapes.calls != 1 {
		t.Errorf("SeriesShapes calls = %d, want 1", shapes.calls)
	}
	if len(a.CustomMetrics()) != 5 { // requests, errors × namespaces, pods; requests × services
		t.Errorf("custom metrics = %v, want 5", a.CustomMetrics())
	}
	if diff := cmp.Diff(sortedInfos(a.CustomMetrics()), sortedInfos(b.CustomMetrics())); diff != "" {
		t.Errorf("custom metrics (-Series +SeriesShapes):\n%s", diff)
	}
	if diff := cmp.Diff(a.ExternalMetrics(), b.ExternalMetrics()); diff != "" {
		t.Errorf("external metrics (-Series +SeriesShapes):\n%s", diff)
	}
	for _, info := range a.CustomMetrics() {
		ea, _ := a.LookupCustom(info)
		eb, ok := b.LookupCustom(info)
		if !ok || ea.Rule != eb.Rule || ea.Series != eb.Series {
			t.Errorf("%s: entry %+v with Series, %+v with SeriesShapes", info, ea, eb)
		}
	}
}
