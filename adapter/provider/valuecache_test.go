package provider_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/provider"
)

// countingQuerier records the queries that reach the backend. gate, when
// set, holds every query until it is closed.
type countingQuerier struct {
	next provider.Querier
	gate chan struct{}

	mu      sync.Mutex
	queries []string
}

func (c *countingQuerier) Query(ctx context.Context, q string, ts time.Time) (model.Vector, error) {
	c.mu.Lock()
	c.queries = append(c.queries, q)
	c.mu.Unlock()
	if c.gate != nil {
		<-c.gate
	}
	return c.next.Query(ctx, q, ts)
}

func (c *countingQuerier) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.queries...)
}

type cachedFixture struct {
	*fixture
	querier *countingQuerier
	clock   *clocktesting.FakeClock
	reg     *prometheus.Registry
	p       *provider.MetricsProvider
}

func newCachedFixture(t *testing.T, ttl time.Duration) *cachedFixture {
	f := newFixture(t)
	cf := &cachedFixture{
		fixture: f,
		querier: &countingQuerier{next: f.client},
		clock:   clocktesting.NewFakeClock(f.now),
		reg:     prometheus.NewRegistry(),
	}
	cf.p = provider.New(provider.Options{
		Registry: f.registry, Queriers: map[string]provider.Querier{config.SourcePrometheus: cf.querier}, Objects: f.objects, Mapper: testMapper(),
		Now: func() time.Time { return f.now }, ValueCacheTTL: ttl, Clock: cf.clock, Registerer: cf.reg,
	})
	return cf
}

func (cf *cachedFixture) cacheRequests(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := cf.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gantry_value_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no gantry_value_cache_requests_total{result=%q}", result)
	return 0
}

var podsRPS = cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "http_requests_per_second"}

func TestValueCache(t *testing.T) {
	cf := newCachedFixture(t, 10*time.Second)
	ctx := context.Background()
	byName := func(ns, name string) error {
		_, err := cf.p.GetMetricByName(ctx, types.NamespacedName{Namespace: ns, Name: name}, podsRPS, labels.Everything())
		return err
	}
	bySelector := func(ns string, set labels.Set) (int, error) {
		l, err := cf.p.GetMetricBySelector(ctx, ns, labels.SelectorFromSet(set), podsRPS, labels.Everything())
		if err != nil {
			return 0, err
		}
		return len(l.Items), nil
	}

	// Different pods and selectors in one namespace: one query.
	if n, err := bySelector("shop", labels.Set{"app": "web"}); err != nil || n != 2 {
		t.Fatalf("app=web in shop: %d items, %v; want 2", n, err)
	}
	if err := byName("shop", injected); err != nil {
		t.Fatal(err)
	}
	if n, err := bySelector("shop", labels.Set{"app": "evil"}); err != nil || n != 1 {
		t.Fatalf("app=evil in shop: %d items, %v; want 1", n, err)
	}
	expectStatus(t, byName("shop", "web-3"), http.StatusNotFound, "only for 3 other pods")
	// Another namespace, and another metric selector, are other queries.
	if err := byName("other", "web-1"); err != nil {
		t.Fatal(err)
	}
	_, err := cf.p.GetMetricBySelector(ctx, "shop", labels.Everything(), podsRPS, labels.SelectorFromSet(labels.Set{"pod": "web-1"}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`sum(rate(http_requests_total{namespace="shop",pod!=""}[2m])) by (pod)`,
		`sum(rate(http_requests_total{namespace="other",pod!=""}[2m])) by (pod)`,
		`sum(rate(http_requests_total{pod="web-1",namespace="shop",pod!=""}[2m])) by (pod)`,
	}
	if diff := cmp.Diff(want, cf.querier.sent()); diff != "" {
		t.Fatalf("backend queries (-want +got):\n%s", diff)
	}
	if hit, miss := cf.cacheRequests(t, "hit"), cf.cacheRequests(t, "miss"); hit != 3 || miss != 3 {
		t.Errorf("cache requests: %v hits, %v misses; want 3 and 3", hit, miss)
	}

	// Within the TTL the values are reused; after it they are queried again.
	cf.clock.Step(9 * time.Second)
	if err := byName("shop", "web-1"); err != nil {
		t.Fatal(err)
	}
	if got := len(cf.querier.sent()); got != 3 {
		t.Errorf("after 9s: %d backend queries, want still 3", got)
	}
	cf.clock.Step(time.Second)
	if err := byName("shop", "web-1"); err != nil {
		t.Fatal(err)
	}
	if got := len(cf.querier.sent()); got != 4 {
		t.Errorf("after 10s: %d backend queries, want 4", got)
	}
}

func TestValueCacheClusterScopedNamesObjects(t *testing.T) {
	cf := newCachedFixture(t, 10*time.Second)
	ctx := context.Background()
	ns := cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "namespaces"}, Metric: "http_requests_per_second"}
	for range 2 {
		if _, err := cf.p.GetMetricByName(ctx, types.NamespacedName{Name: "shop"}, ns, labels.Everything()); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{`sum(rate(http_requests_total{namespace="shop"}[2m])) by (namespace)`}
	if diff := cmp.Diff(want, cf.querier.sent()); diff != "" {
		t.Fatalf("backend queries (-want +got):\n%s", diff)
	}
}

func TestValueCacheConcurrentRequestsShareOneQuery(t *testing.T) {
	cf := newCachedFixture(t, 10*time.Second)
	cf.querier.gate = make(chan struct{})
	ctx := context.Background()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"web-1", "web-2"}[i%2]
			_, err := cf.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: name}, podsRPS, labels.Everything())
			errs <- err
		}()
	}
	// Let every request reach the cache before the query answers.
	deadline := time.Now().Add(10 * time.Second)
	for cf.cacheRequests(t, "hit")+cf.cacheRequests(t, "miss") < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(cf.querier.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := cf.querier.sent(); len(got) != 1 {
		t.Errorf("backend queries: %q, want one", got)
	}
}

func TestValueCacheKeepsNoErrors(t *testing.T) {
	cf := newCachedFixture(t, 10*time.Second)
	ctx := context.Background()
	if err := cf.prom.Stop(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := cf.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"}, podsRPS, labels.Everything())
		expectStatus(t, err, http.StatusServiceUnavailable, "backend unavailable")
	}
	if got := len(cf.querier.sent()); got != 2 {
		t.Errorf("backend queries: %d, want 2 (a failure is not cached)", got)
	}
}

func TestValueCacheDisabled(t *testing.T) {
	cf := newCachedFixture(t, 0)
	ctx := context.Background()
	for range 2 {
		if _, err := cf.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "shop", Name: "web-1"}, podsRPS, labels.Everything()); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(cf.querier.sent()); got != 2 {
		t.Errorf("backend queries: %d, want 2", got)
	}
	if miss := cf.cacheRequests(t, "miss"); miss != 2 {
		t.Errorf("misses: %v, want 2", miss)
	}
}
