package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/common/model"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/discovery"
)

const (
	rulesA = `
rules:
- seriesQuery: 'a_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
`
	rulesB = `
rules:
- seriesQuery: 'b_total{namespace!="",service!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth{queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
`
)

// TestSetRules swaps the rules of a running registry, as a config reload
// does: the swap triggers a relist without waiting for the next tick, the
// new list replaces the old one, and the series of a query no rule asks any
// more are forgotten.
func TestSetRules(t *testing.T) {
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	lister := &fakeLister{}
	lister.set(queryA, []model.LabelSet{labelSet("__name__", "a_total", "namespace", "shop", "pod", "p")}, nil)
	lister.set(queryB, []model.LabelSet{labelSet("__name__", "b_total", "namespace", "shop", "service", "s")}, nil)
	lister.set(queryQueue, []model.LabelSet{labelSet("__name__", "queue_depth", "queue", "orders")}, nil)
	customA, _ := compile(t, rulesA)
	customB, externalB := compile(t, rulesB)
	// The interval is never stepped: every relist after the first comes
	// from SetRules.
	r := discovery.New(discovery.Options{Rules: customA, Lister: lister, Mapper: testMapper(), Clock: clock, Interval: time.Hour})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	// waitList polls, within a deadline, until a relist has published
	// the wanted lists.
	waitList := func(what string, custom []provider.CustomMetricInfo, external []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			dc := cmp.Diff(sortedInfos(custom), r.CustomMetrics(), cmpopts.EquateEmpty())
			de := cmp.Diff(externalInfos(external...), r.ExternalMetrics(), cmpopts.EquateEmpty())
			if dc == "" && de == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: custom (-want +got):\n%s\nexternal (-want +got):\n%s", what, dc, de)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	podA := provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "a_total"}
	nsA := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "a_total"}
	svcB := provider.CustomMetricInfo{GroupResource: services, Namespaced: true, Metric: "b_total"}
	nsB := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "b_total"}

	waitList("initial relist", []provider.CustomMetricInfo{podA, nsA}, nil)

	r.SetRules(customB, externalB)
	waitList("after SetRules(B)", []provider.CustomMetricInfo{svcB, nsB}, []string{"queue_depth"})
	if e, ok := r.LookupExternal("queue_depth"); !ok || e.Rule != externalB[0] {
		t.Errorf("LookupExternal(queue_depth) = %v, %v; want the new external rule", e, ok)
	}
	if _, ok := r.LookupCustom(podA); ok {
		t.Errorf("LookupCustom(%s) still answers after its rule was removed", podA)
	}

	// Back to A while A's query fails: its series were forgotten when B
	// replaced it, so nothing stale comes back.
	lister.set(queryA, nil, errBackend)
	r.SetRules(customA, nil)
	waitList("after SetRules(A) with A's query failing", nil, nil)

	lister.set(queryA, []model.LabelSet{labelSet("__name__", "a_total", "namespace", "shop", "pod", "p")}, nil)
	r.SetRules(customA, nil)
	waitList("after SetRules(A) with A's query answering", []provider.CustomMetricInfo{podA, nsA}, nil)
}

// TestSetRulesDuringRelist changes the rules while a relist with the old
// ones waits on the backend: that relist must not publish the old rules'
// metrics over the new ones.
func TestSetRulesDuringRelist(t *testing.T) {
	customA, _ := compile(t, rulesA)
	customB, externalB := compile(t, rulesB)
	gate := make(chan struct{})
	lister := &gatedLister{fakeLister: &fakeLister{}, gate: gate, waiting: make(chan struct{}, 1)}
	lister.set(queryA, []model.LabelSet{labelSet("__name__", "a_total", "namespace", "shop", "pod", "p")}, nil)
	lister.set(queryB, []model.LabelSet{labelSet("__name__", "b_total", "namespace", "shop", "service", "s")}, nil)
	lister.set(queryQueue, []model.LabelSet{labelSet("__name__", "queue_depth", "queue", "orders")}, nil)
	r := discovery.New(discovery.Options{Rules: customA, Lister: lister, Mapper: testMapper()})

	old := make(chan error, 1)
	go func() { old <- r.Relist(context.Background()) }()
	select {
	case <-lister.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the relist with the old rules never reached the backend")
	}
	r.SetRules(customB, externalB)
	close(gate) // the old relist's answer arrives after the swap
	if err := <-old; err != nil {
		t.Fatalf("old relist: %v", err)
	}
	if got := r.CustomMetrics(); len(got) != 0 {
		t.Errorf("the relist started before SetRules published %v", got)
	}
	if err := r.Relist(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.LookupExternal("queue_depth"); !ok {
		t.Error("the relist after SetRules did not publish the new rules' metrics")
	}
}

var errBackend = &backendDown{}

type backendDown struct{}

func (*backendDown) Error() string { return "prometheus: unreachable: connection refused" }

// gatedLister holds every Series call until gate is closed, and says when
// the first one is waiting.
type gatedLister struct {
	*fakeLister
	gate    chan struct{}
	waiting chan struct{}
}

func (g *gatedLister) Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error) {
	select {
	case g.waiting <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.fakeLister.Series(ctx, matchers, start, end)
}
