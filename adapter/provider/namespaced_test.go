package provider_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// confinedRules compiles one custom and one external rule confined to
// namespace, as a MetricRule's are.
func confinedRules(t *testing.T, namespace string) (custom, external *rules.Rule) {
	t.Helper()
	cfg, err := config.Parse([]byte(`rules:
- seriesQuery: 'http_requests_total{pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
`), "MetricRule "+namespace+"/web")
	if err != nil {
		t.Fatal(err)
	}
	c, e, _, err := rules.CompileConfig(cfg, "MetricRule "+namespace+"/web", testMapper())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*rules.Rule{c[0], e[0]} {
		r.ID = "MetricRule " + namespace + "/web " + r.ID
		if err := r.Confine("namespace", namespace); err != nil {
			t.Fatal(err)
		}
	}
	return c[0], e[0]
}

// anyNamespace is a namespaced registry that answers every lookup, from
// whichever namespace, with the same rules: the provider must still
// answer a request only from a rule of the request's own namespace.
type anyNamespace struct{ custom, external *rules.Rule }

func (a anyNamespace) LookupCustomIn(string, cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	return discovery.Entry{Rule: a.custom, Series: "http_requests_total"}, true
}

func (a anyNamespace) LookupExternalIn(string, string) (discovery.Entry, bool) {
	return discovery.Entry{Rule: a.external, Series: "queue_depth"}, true
}

func TestNamespacedRulesAnswerOnlyTheirNamespace(t *testing.T) {
	custom, external := confinedRules(t, "team-a")
	q := &everyNamespaceQuerier{}
	p := provider.New(provider.Options{
		Registry: staticRegistryNone{},
		Queriers: map[string]provider.Querier{config.SourcePrometheus: q},
		Objects:  &objectList{},
		Mapper:   testMapper(),
	})
	p.ServeNamespaced(anyNamespace{custom: custom, external: external}, 4)
	ctx := context.Background()
	pods := cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "http_requests_per_second"}

	if _, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "team-b", Name: "web"}, pods, labels.Everything()); err == nil {
		t.Error("team-b's request was answered from team-a's rule")
	} else {
		expectStatus(t, err, http.StatusNotFound, "")
	}
	if _, err := p.GetExternalMetric(ctx, "team-b", labels.Everything(), cmprovider.ExternalMetricInfo{Metric: "queue_depth"}); err == nil {
		t.Error("team-b's external request was answered from team-a's rule")
	} else {
		expectStatus(t, err, http.StatusNotFound, "")
	}
	if _, err := p.GetExternalMetric(ctx, "", labels.Everything(), cmprovider.ExternalMetricInfo{Metric: "queue_depth"}); err == nil {
		t.Error("a request outside any namespace was answered from team-a's rule")
	}
	if len(q.sent()) != 0 {
		t.Errorf("queries sent for requests that may not be answered: %q", q.sent())
	}
	if l := p.ListAllExternalMetrics(); len(l) != 0 {
		t.Errorf("the cluster-wide list has %v", l)
	}

	// Its own namespace is answered, and the query names it alone.
	v, err := p.GetExternalMetric(ctx, "team-a", labels.Everything(), cmprovider.ExternalMetricInfo{Metric: "queue_depth"})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Items) == 0 {
		t.Fatal("no value for team-a")
	}
	for _, s := range q.sent() {
		if !strings.Contains(s, `namespace="team-a"`) || strings.Contains(s, "team-b") {
			t.Errorf("query %s is not confined to team-a", s)
		}
	}
}

// staticRegistryNone is a cluster registry with no metrics.
type staticRegistryNone struct{}

func (staticRegistryNone) LookupCustom(cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	return discovery.Entry{}, false
}
func (staticRegistryNone) LookupExternal(string) (discovery.Entry, bool) {
	return discovery.Entry{}, false
}
func (staticRegistryNone) CustomMetrics() []cmprovider.CustomMetricInfo     { return nil }
func (staticRegistryNone) ExternalMetrics() []cmprovider.ExternalMetricInfo { return nil }

// heldQuerier holds every query of team-a until released, and answers
// others at once.
type heldQuerier struct {
	release chan struct{}
	mu      sync.Mutex
	held    int
}

func (q *heldQuerier) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	if strings.Contains(query, "team-a") {
		q.mu.Lock()
		q.held++
		q.mu.Unlock()
		select {
		case <-q.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return model.Vector{&model.Sample{Value: 1, Timestamp: model.TimeFromUnixNano(ts.UnixNano())}}, nil
}

func (q *heldQuerier) holding() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held
}

// TestNamespaceInFlightShare: a namespace whose rules hold all its slots
// waits for one (here, until its deadline), and other namespaces are not
// held up.
func TestNamespaceInFlightShare(t *testing.T) {
	_, extA := confinedRules(t, "team-a")
	_, extB := confinedRules(t, "team-b")
	q := &heldQuerier{release: make(chan struct{})}
	p := provider.New(provider.Options{
		Registry: staticRegistryNone{},
		Queriers: map[string]provider.Querier{config.SourcePrometheus: q},
		Objects:  &objectList{},
		Mapper:   testMapper(),
		Timeout:  time.Minute,
	})
	p.ServeNamespaced(byNamespace{"team-a": extA, "team-b": extB}, 1)
	info := cmprovider.ExternalMetricInfo{Metric: "queue_depth"}

	first := make(chan error, 1)
	go func() {
		_, err := p.GetExternalMetric(context.Background(), "team-a", labels.Everything(), info)
		first <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for q.holding() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first query of team-a never reached the backend")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// team-a's only slot is taken: another of its queries waits until its
	// deadline and is refused, never sent.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := p.GetExternalMetric(ctx, "team-a", labels.Selector(labels.SelectorFromSet(labels.Set{"queue": "other"})), info)
	cancel()
	if err == nil {
		t.Fatal("a second team-a query was answered while its one slot was taken")
	}
	expectStatus(t, err, http.StatusServiceUnavailable, "--metricrule-namespace-max-in-flight")
	if n := q.holding(); n != 1 {
		t.Errorf("%d team-a queries reached the backend; want 1", n)
	}
	// team-b has its own share.
	if _, err := p.GetExternalMetric(context.Background(), "team-b", labels.Everything(), info); err != nil {
		t.Errorf("team-b: %v", err)
	}
	close(q.release)
	if err := <-first; err != nil {
		t.Errorf("team-a's first query: %v", err)
	}
}

// byNamespace serves one external rule per namespace.
type byNamespace map[string]*rules.Rule

func (b byNamespace) LookupCustomIn(string, cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	return discovery.Entry{}, false
}

func (b byNamespace) LookupExternalIn(namespace, _ string) (discovery.Entry, bool) {
	r, ok := b[namespace]
	return discovery.Entry{Rule: r, Series: "queue_depth"}, ok
}
