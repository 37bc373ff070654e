package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/rules"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"
)

// compile parses and compiles a rule file as the server does: custom rules
// are "rules[i] (name)", external rules "externalRules[i] (name)".
func compile(t *testing.T, yaml string) (custom, external []*rules.Rule) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "rules.yaml")
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	mapper := testMapper()
	for i, r := range cfg.Rules {
		rule, err := rules.Compile(fmt.Sprintf("rules[%d] (%s)", i, r.DisplayName()), r, false, mapper)
		if err != nil {
			t.Fatalf("rules.Compile: %v", err)
		}
		custom = append(custom, rule)
	}
	for i, r := range cfg.ExternalRules {
		rule, err := rules.Compile(fmt.Sprintf("externalRules[%d] (%s)", i, r.DisplayName()), r, true, mapper)
		if err != nil {
			t.Fatalf("rules.Compile: %v", err)
		}
		external = append(external, rule)
	}
	return custom, external
}

// testMapper stands in for the cluster's discovery: the core kinds the
// tests name, and apps/v1 Deployment.
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

var (
	pods       = schema.GroupResource{Resource: "pods"}
	namespaces = schema.GroupResource{Resource: "namespaces"}
	services   = schema.GroupResource{Resource: "services"}
	nodes      = schema.GroupResource{Resource: "nodes"}
)

func sortedInfos(infos []provider.CustomMetricInfo) []provider.CustomMetricInfo {
	out := append([]provider.CustomMetricInfo(nil), infos...)
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func externalInfos(names ...string) []provider.ExternalMetricInfo {
	var out []provider.ExternalMetricInfo
	for _, n := range names {
		out = append(out, provider.ExternalMetricInfo{Metric: n})
	}
	return out
}

// entryOf says which rule and series answer a metric, as "<rule ID> <series>".
func customEntry(r *discovery.Registry, info provider.CustomMetricInfo) string {
	e, ok := r.LookupCustom(info)
	if !ok {
		return "<none>"
	}
	return e.Rule.ID + " " + e.Series
}

func externalEntry(r *discovery.Registry, name string) string {
	e, ok := r.LookupExternal(name)
	if !ok {
		return "<none>"
	}
	return e.Rule.ID + " " + e.Series
}

// startPrometheus runs a real Prometheus holding gauges (one sample a minute
// over the last ten minutes) for each label set, plus older series that
// stopped 50 minutes ago.
func startPrometheus(t *testing.T, recent, old []map[string]string) (*prom.Server, *promcollector.Client) {
	t.Helper()
	srv := prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	var samples []prom.Sample
	for _, l := range old {
		for ts := now.Add(-55 * time.Minute); ts.Before(now.Add(-50 * time.Minute)); ts = ts.Add(time.Minute) {
			samples = append(samples, prom.Sample{Labels: l, Value: 1, Time: ts})
		}
	}
	for _, l := range recent {
		for ts := now.Add(-10 * time.Minute); !ts.After(now); ts = ts.Add(time.Minute) {
			samples = append(samples, prom.Sample{Labels: l, Value: 1, Time: ts})
		}
	}
	if err := srv.Write(ctx, samples); err != nil {
		t.Fatal(err)
	}
	client, err := promcollector.New(promcollector.Options{URL: srv.URL(), Timeout: 10 * time.Second}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return srv, client
}

func series(kv ...string) map[string]string {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

const relistRules = `
rules:
# Overrides; the name pattern turns counters into rates. The legacy series
# stopped long before --metrics-max-age and must not be found.
- seriesQuery: '{__name__=~".*_requests_total",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
# A label template; a series filter drops histogram buckets.
- seriesQuery: '{__name__=~"^ingress_.*",namespace!="",service!=""}'
  seriesFilters:
  - isNot: "_bucket$"
  resources:
    template: "<<.Resource>>"
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# A cluster-scoped resource.
- seriesQuery: 'node_load1{node!=""}'
  resources:
    template: "<<.Resource>>"
  metricsQuery: 'max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# Matches nothing at all.
- seriesQuery: 'absent_metric{namespace!=""}'
  resources:
    template: "<<.Resource>>"
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__=~"^queue_.*",queue!=""}'
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)
`

// TestRelistAgainstPrometheus builds the custom and external metric lists
// from the series of a real Prometheus.
func TestRelistAgainstPrometheus(t *testing.T) {
	srv, client := startPrometheus(t,
		[]map[string]string{
			series("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1"),
			series("__name__", "http_requests_total", "namespace", "shop", "pod", "web-2"),
			series("__name__", "http_requests_total", "namespace", "shop", "pod", "web-2", "code", "500"),
			series("__name__", "ingress_bytes_total", "namespace", "shop", "service", "web"),
			series("__name__", "ingress_latency_bucket", "namespace", "shop", "service", "web", "le", "0.1"),
			series("__name__", "node_load1", "node", "node-a"),
			series("__name__", "queue_depth", "queue", "orders"),
			series("__name__", "queue_lag_seconds", "queue", "orders", "namespace", "shop"),
			series("__name__", "unrelated", "job", "x"),
		},
		[]map[string]string{
			series("__name__", "legacy_requests_total", "namespace", "shop", "pod", "web-1"),
		})
	custom, external := compile(t, relistRules)
	reg := prometheus.NewRegistry()
	r := discovery.New(discovery.Options{
		Rules: custom, ExternalRules: external, Lister: client, Mapper: testMapper(),
		Interval: time.Minute, MaxAge: 15 * time.Minute, Registerer: reg,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Relist(ctx); err != nil {
		t.Fatalf("Relist: %v", err)
	}

	wantCustom := sortedInfos([]provider.CustomMetricInfo{
		{GroupResource: pods, Namespaced: true, Metric: "http_requests_per_second"},
		{GroupResource: namespaces, Namespaced: false, Metric: "http_requests_per_second"},
		{GroupResource: services, Namespaced: true, Metric: "ingress_bytes_total"},
		{GroupResource: namespaces, Namespaced: false, Metric: "ingress_bytes_total"},
		{GroupResource: nodes, Namespaced: false, Metric: "node_load1"},
	})
	if diff := cmp.Diff(wantCustom, r.CustomMetrics()); diff != "" {
		t.Errorf("CustomMetrics() mismatch, want sorted by String() (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(externalInfos("queue_depth", "queue_lag_seconds"), r.ExternalMetrics()); diff != "" {
		t.Errorf("ExternalMetrics() mismatch (-want +got):\n%s", diff)
	}

	lookups := []struct {
		name string
		got  string
		want string
	}{
		{"pod metric answered by the overrides rule with the series name", customEntry(r, provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "http_requests_per_second"}), "rules[0] (^(.*)_total$) http_requests_total"},
		{"namespace form of the same metric", customEntry(r, provider.CustomMetricInfo{GroupResource: namespaces, Metric: "http_requests_per_second"}), "rules[0] (^(.*)_total$) http_requests_total"},
		{"template rule", customEntry(r, provider.CustomMetricInfo{GroupResource: services, Namespaced: true, Metric: "ingress_bytes_total"}), `rules[1] ({__name__=~"^ingress_.*",namespace!="",service!=""}) ingress_bytes_total`},
		{"filtered series is not served", customEntry(r, provider.CustomMetricInfo{GroupResource: services, Namespaced: true, Metric: "ingress_latency_bucket"}), "<none>"},
		{"series older than max age is not served", customEntry(r, provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "legacy_requests_per_second"}), "<none>"},
		{"namespaced flag is part of the key", customEntry(r, provider.CustomMetricInfo{GroupResource: pods, Namespaced: false, Metric: "http_requests_per_second"}), "<none>"},
		{"external metric", externalEntry(r, "queue_lag_seconds"), `externalRules[0] ({__name__=~"^queue_.*",queue!=""}) queue_lag_seconds`},
		{"unknown external metric", externalEntry(r, "unrelated"), "<none>"},
	}
	for _, l := range lookups {
		t.Run(l.name, func(t *testing.T) {
			if l.got != l.want {
				t.Errorf("lookup = %q, want %q", l.got, l.want)
			}
		})
	}

	gotGR := r.GroupResources()
	sort.Slice(gotGR, func(i, j int) bool { return gotGR[i].String() < gotGR[j].String() })
	if diff := cmp.Diff([]schema.GroupResource{namespaces, nodes, pods, services}, gotGR); diff != "" {
		t.Errorf("GroupResources() mismatch (-want +got):\n%s", diff)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP gantry_discovery_metrics Metrics currently discovered, by API.
# TYPE gantry_discovery_metrics gauge
gantry_discovery_metrics{api="custom"} 5
gantry_discovery_metrics{api="external"} 2
# HELP gantry_discovery_conflicts Metrics yielded by more than one rule or series in the last relist; as in prometheus-adapter, the last rule in file order answers for each.
# TYPE gantry_discovery_conflicts gauge
gantry_discovery_conflicts 0
`), "gantry_discovery_metrics", "gantry_discovery_conflicts"); err != nil {
		t.Error(err)
	}
	if err := r.Ready(time.Minute); err != nil {
		t.Errorf("Ready after a complete relist: %v", err)
	}

	// A new series shows up on the next relist.
	now := time.Now()
	var more []prom.Sample
	for ts := now.Add(-2 * time.Minute); !ts.After(now); ts = ts.Add(time.Minute) {
		more = append(more, prom.Sample{Labels: series("__name__", "api_requests_total", "namespace", "shop", "pod", "api-1"), Value: 1, Time: ts})
	}
	if err := srv.Write(ctx, more); err != nil {
		t.Fatal(err)
	}
	if err := r.Relist(ctx); err != nil {
		t.Fatalf("second Relist: %v", err)
	}
	wantCustom = sortedInfos(append(wantCustom,
		provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "api_requests_per_second"},
		provider.CustomMetricInfo{GroupResource: namespaces, Metric: "api_requests_per_second"},
	))
	if diff := cmp.Diff(wantCustom, r.CustomMetrics()); diff != "" {
		t.Errorf("CustomMetrics() after a new series (-want +got):\n%s", diff)
	}
}

// TestConflictsAgainstPrometheus checks that when two rules (or two series
// of one rule) produce the same metric, the last rule in file order (and of
// a rule's series, the last by name) answers for it, as in
// prometheus-adapter, and gantry_discovery_conflicts counts the contested
// metrics.
func TestConflictsAgainstPrometheus(t *testing.T) {
	_, client := startPrometheus(t, []map[string]string{
		series("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1"),
		series("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1", "code", "500"),
		series("__name__", "grpc_requests_total", "namespace", "shop", "pod", "web-1"),
		series("__name__", "grpc_requests_total", "namespace", "shop", "pod", "web-1", "method", "Get"),
		series("__name__", "kafka_lag", "topic", "orders"),
		series("__name__", "sqs_lag", "topic", "orders"),
	}, nil)

	podRule := func(seriesQuery, matches string) string {
		return fmt.Sprintf(`
- seriesQuery: '%s'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name:
    matches: "%s"
    as: "requests_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`, seriesQuery, matches)
	}
	lagRule := func(seriesQuery string) string {
		return fmt.Sprintf(`
- seriesQuery: '%s'
  name:
    matches: ".*_lag$"
    as: "lag"
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (topic)
`, seriesQuery)
	}
	http := podRule(`http_requests_total{namespace!="",pod!=""}`, "^http_requests_total$")
	grpc := podRule(`grpc_requests_total{namespace!="",pod!=""}`, "^grpc_requests_total$")
	both := podRule(`{__name__=~"(http|grpc)_requests_total",namespace!="",pod!=""}`, "^(http|grpc)_requests_total$")
	podMetric := provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "requests_per_second"}
	nsMetric := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "requests_per_second"}

	cases := []struct {
		name          string
		yaml          string
		wantPod       string // rule and series answering pods/requests_per_second
		wantNamespace string
		wantLag       string // rule and series answering external "lag"
		wantConflicts int
	}{{
		name:          "custom: the last rule in the file answers for both resources of the metric",
		yaml:          "rules:" + http + grpc,
		wantPod:       "rules[1] (requests_per_second) grpc_requests_total",
		wantNamespace: "rules[1] (requests_per_second) grpc_requests_total",
		wantLag:       "<none>",
		wantConflicts: 2,
	}, {
		name:          "custom: with the rules swapped the other rule wins",
		yaml:          "rules:" + grpc + http,
		wantPod:       "rules[1] (requests_per_second) http_requests_total",
		wantNamespace: "rules[1] (requests_per_second) http_requests_total",
		wantLag:       "<none>",
		wantConflicts: 2,
	}, {
		name:          "one rule finding the same series with different label sets is no conflict",
		yaml:          "rules:" + http,
		wantPod:       "rules[0] (requests_per_second) http_requests_total",
		wantNamespace: "rules[0] (requests_per_second) http_requests_total",
		wantLag:       "<none>",
		wantConflicts: 0,
	}, {
		name: "one rule naming two series alike: the series last by name answers, each metric counted once",
		yaml: "rules:" + both,
		// Whatever order the backend lists them in (Prometheus lists its head
		// in creation order), the series last by name wins, as in
		// prometheus-adapter when Prometheus answers sorted.
		wantPod:       "rules[0] (requests_per_second) http_requests_total",
		wantNamespace: "rules[0] (requests_per_second) http_requests_total",
		wantLag:       "<none>",
		wantConflicts: 2,
	}, {
		name:          "external: the last rule in the file answers for the metric",
		yaml:          "externalRules:" + lagRule(`sqs_lag{topic!=""}`) + lagRule(`kafka_lag{topic!=""}`),
		wantPod:       "<none>",
		wantNamespace: "<none>",
		wantLag:       "externalRules[1] (lag) kafka_lag",
		wantConflicts: 1,
	}, {
		name:          "custom and external rules of the same name do not conflict",
		yaml:          "rules:" + http + "externalRules:" + lagRule(`sqs_lag{topic!=""}`),
		wantPod:       "rules[0] (requests_per_second) http_requests_total",
		wantNamespace: "rules[0] (requests_per_second) http_requests_total",
		wantLag:       "externalRules[0] (lag) sqs_lag",
		wantConflicts: 0,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			custom, external := compile(t, tc.yaml)
			reg := prometheus.NewRegistry()
			r := discovery.New(discovery.Options{
				Rules: custom, ExternalRules: external, Lister: client, Mapper: testMapper(),
				MaxAge: 15 * time.Minute, Registerer: reg,
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// Relist twice: the outcome must not depend on which query
			// answered first, and the gauge is per relist, not cumulative.
			for i := 0; i < 2; i++ {
				if err := r.Relist(ctx); err != nil {
					t.Fatalf("Relist: %v", err)
				}
			}
			got := []string{customEntry(r, podMetric), customEntry(r, nsMetric), externalEntry(r, "lag")}
			want := []string{tc.wantPod, tc.wantNamespace, tc.wantLag}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("owners of pods, namespaces and external metric (-want +got):\n%s", diff)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP gantry_discovery_conflicts Metrics yielded by more than one rule or series in the last relist; as in prometheus-adapter, the last rule in file order answers for each.
# TYPE gantry_discovery_conflicts gauge
gantry_discovery_conflicts %d
`, tc.wantConflicts)), "gantry_discovery_conflicts"); err != nil {
				t.Error(err)
			}
		})
	}
}

// fakeLister serves fixed series per selector and fails the selectors it is
// told to. It stands in for Prometheus where a failure must be injected.
type fakeLister struct {
	mu     sync.Mutex
	series map[string][]model.LabelSet
	fail   map[string]error
	calls  []string
	// called, if set, receives every selector listed.
	called chan string
	// block makes Series wait for ctx to be done.
	block bool
}

func (f *fakeLister) Series(ctx context.Context, matchers []string, _, _ time.Time) ([]model.LabelSet, error) {
	if len(matchers) != 1 {
		return nil, fmt.Errorf("want one matcher, got %q", matchers)
	}
	f.mu.Lock()
	q := matchers[0]
	f.calls = append(f.calls, q)
	sets, err, block, called := f.series[q], f.fail[q], f.block, f.called
	f.mu.Unlock()
	if called != nil {
		called <- q
	}
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return sets, nil
}

func (f *fakeLister) set(q string, sets []model.LabelSet, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.series == nil {
		f.series, f.fail = map[string][]model.LabelSet{}, map[string]error{}
	}
	f.series[q], f.fail[q] = sets, err
}

func labelSet(kv ...string) model.LabelSet {
	ls := model.LabelSet{}
	for i := 0; i+1 < len(kv); i += 2 {
		ls[model.LabelName(kv[i])] = model.LabelValue(kv[i+1])
	}
	return ls
}

const failureRules = `
rules:
- seriesQuery: 'a_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# Shares rules[0]'s series query: one call serves both.
- seriesQuery: 'a_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^a_(.*)$", as: "renamed_${1}"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: 'b_total{namespace!="",service!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth{queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
`

const (
	queryA     = `a_total{namespace!="",pod!=""}`
	queryB     = `b_total{namespace!="",service!=""}`
	queryQueue = `queue_depth{queue!=""}`
)

// TestRelistFailureKeepsLastGoodList fails series queries on demand: the
// failed query's metrics stay as they were, the others are rebuilt, and each
// rule of the failed query counts a failure.
func TestRelistFailureKeepsLastGoodList(t *testing.T) {
	errDown := errors.New("prometheus: unreachable: connection refused")
	aSeries := []model.LabelSet{labelSet("__name__", "a_total", "namespace", "shop", "pod", "p")}
	bSeries := []model.LabelSet{labelSet("__name__", "b_total", "namespace", "shop", "service", "s")}
	b2Series := []model.LabelSet{labelSet("__name__", "b2_total", "namespace", "shop", "service", "s")}
	qSeries := []model.LabelSet{labelSet("__name__", "queue_depth", "queue", "orders")}
	podA := provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "a_total"}
	nsA := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "a_total"}
	podRenamed := provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "renamed_total"}
	nsRenamed := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "renamed_total"}
	svcB := provider.CustomMetricInfo{GroupResource: services, Namespaced: true, Metric: "b_total"}
	nsB := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "b_total"}
	svcB2 := provider.CustomMetricInfo{GroupResource: services, Namespaced: true, Metric: "b2_total"}
	nsB2 := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "b2_total"}

	type relist struct {
		series   map[string][]model.LabelSet
		fail     map[string]error
		wantErr  []string // substrings of the error; none means success
		custom   []provider.CustomMetricInfo
		external []string
	}
	cases := []struct {
		name    string
		relists []relist
		// failures is the expected gantry_discovery_relist_failures_total
		// exposition after the last relist.
		failures string
	}{{
		name: "a failed query keeps its last good metrics while the others are rebuilt",
		relists: []relist{{
			series:   map[string][]model.LabelSet{queryA: aSeries, queryB: bSeries, queryQueue: qSeries},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed, svcB, nsB},
			external: []string{"queue_depth"},
		}, {
			series:   map[string][]model.LabelSet{queryA: nil, queryB: b2Series, queryQueue: qSeries},
			fail:     map[string]error{queryA: errDown},
			wantErr:  []string{`series query "a_total{namespace!=\"\",pod!=\"\"}"`, "rules[0] (a_total)", "connection refused"},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed, svcB2, nsB2},
			external: []string{"queue_depth"},
		}},
		failures: `gantry_discovery_relist_failures_total{rule="rules[0] (a_total)"} 1
gantry_discovery_relist_failures_total{rule="rules[1] (a_total)"} 1
`,
	}, {
		name: "an external query failing keeps the external list",
		relists: []relist{{
			series:   map[string][]model.LabelSet{queryA: aSeries, queryB: bSeries, queryQueue: qSeries},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed, svcB, nsB},
			external: []string{"queue_depth"},
		}, {
			series:   map[string][]model.LabelSet{queryA: aSeries, queryB: nil, queryQueue: nil},
			fail:     map[string]error{queryQueue: errDown},
			wantErr:  []string{"externalRules[0] (queue_depth)"},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed},
			external: []string{"queue_depth"},
		}, {
			series:   map[string][]model.LabelSet{queryA: aSeries, queryB: nil, queryQueue: qSeries},
			fail:     map[string]error{queryQueue: errDown},
			wantErr:  []string{"externalRules[0] (queue_depth)"},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed},
			external: []string{"queue_depth"},
		}},
		failures: `gantry_discovery_relist_failures_total{rule="externalRules[0] (queue_depth)"} 2
`,
	}, {
		name: "a query that never succeeded contributes nothing; every failure is reported",
		relists: []relist{{
			series:   map[string][]model.LabelSet{queryA: aSeries, queryB: bSeries, queryQueue: qSeries},
			fail:     map[string]error{queryB: errDown, queryQueue: errors.New("prometheus: timeout")},
			wantErr:  []string{"rules[2] (b_total)", "externalRules[0] (queue_depth)", "timeout"},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed},
			external: nil,
		}, {
			series:   map[string][]model.LabelSet{queryA: aSeries, queryB: bSeries, queryQueue: qSeries},
			custom:   []provider.CustomMetricInfo{podA, nsA, podRenamed, nsRenamed, svcB, nsB},
			external: []string{"queue_depth"},
		}},
		failures: `gantry_discovery_relist_failures_total{rule="externalRules[0] (queue_depth)"} 1
gantry_discovery_relist_failures_total{rule="rules[2] (b_total)"} 1
`,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			custom, external := compile(t, failureRules)
			lister := &fakeLister{}
			reg := prometheus.NewRegistry()
			r := discovery.New(discovery.Options{Rules: custom, ExternalRules: external, Lister: lister, Mapper: testMapper(), Registerer: reg})
			for i, step := range tc.relists {
				for _, q := range []string{queryA, queryB, queryQueue} {
					lister.set(q, step.series[q], step.fail[q])
				}
				lister.calls = nil
				err := r.Relist(context.Background())
				switch {
				case len(step.wantErr) == 0 && err != nil:
					t.Errorf("relist %d: unexpected error: %v", i, err)
				case len(step.wantErr) > 0 && err == nil:
					t.Errorf("relist %d: want an error containing %q, got none", i, step.wantErr)
				case err != nil:
					for _, s := range step.wantErr {
						if !strings.Contains(err.Error(), s) {
							t.Errorf("relist %d: error %q does not contain %q", i, err, s)
						}
					}
				}
				sort.Strings(lister.calls)
				if diff := cmp.Diff([]string{queryA, queryB, queryQueue}, lister.calls); diff != "" {
					t.Errorf("relist %d: each distinct series query is listed once (-want +got):\n%s", i, diff)
				}
				if diff := cmp.Diff(sortedInfos(step.custom), r.CustomMetrics()); diff != "" {
					t.Errorf("relist %d: CustomMetrics() (-want +got):\n%s", i, diff)
				}
				if diff := cmp.Diff(externalInfos(step.external...), r.ExternalMetrics(), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("relist %d: ExternalMetrics() (-want +got):\n%s", i, diff)
				}
			}
			want := `
# HELP gantry_discovery_relist_failures_total Series queries that failed during a relist; the last good result was kept.
# TYPE gantry_discovery_relist_failures_total counter
` + tc.failures
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_discovery_relist_failures_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestReady steps a fake clock through discovery's life: not ready before
// the first complete relist, ready after, stale when the last complete
// relist is older than staleAfter, and a partial relist does not refresh it.
func TestReady(t *testing.T) {
	const staleAfter = 5 * time.Minute
	custom, external := compile(t, failureRules)
	clock := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	lister := &fakeLister{}
	r := discovery.New(discovery.Options{Rules: custom, ExternalRules: external, Lister: lister, Mapper: testMapper(), Clock: clock})

	relist := func(fail bool) func() {
		return func() {
			var err error
			if fail {
				err = errors.New("unreachable")
			}
			lister.set(queryA, nil, nil)
			lister.set(queryB, nil, err)
			lister.set(queryQueue, nil, nil)
			_ = r.Relist(context.Background())
		}
	}
	steps := []struct {
		name    string
		do      func()
		wantErr string // empty: ready
	}{
		{name: "before any relist", do: func() {}, wantErr: "metric discovery has not completed yet"},
		{name: "after a relist with a failed query", do: relist(true), wantErr: "metric discovery has not completed yet"},
		{name: "after a complete relist", do: relist(false)},
		{name: "exactly staleAfter later", do: func() { clock.Step(staleAfter) }},
		{name: "past staleAfter", do: func() { clock.Step(time.Second) }, wantErr: "last complete metric discovery was 5m1s ago"},
		{name: "a partial relist does not make it fresh", do: relist(true), wantErr: "last complete metric discovery was 5m1s ago"},
		{name: "a complete relist does", do: relist(false)},
		{name: "an hour without relisting", do: func() { clock.Step(time.Hour) }, wantErr: "last complete metric discovery was 1h0m0s ago"},
	}
	for _, s := range steps {
		s.do()
		err := r.Ready(staleAfter)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != s.wantErr {
			t.Errorf("%s: Ready() = %q, want %q", s.name, got, s.wantErr)
		}
	}
	if err := r.Ready(0); err != nil {
		t.Errorf("Ready(0) never reports staleness, got %v", err)
	}
}

// TestRun checks that Run relists at once and on each tick of its clock, and
// returns when its context is cancelled, also in the middle of a relist.
func TestRun(t *testing.T) {
	const interval = time.Minute
	cases := []struct {
		name  string
		ticks int
		// blockOnLast makes the relist after the last tick hang on the
		// backend until the context is cancelled.
		blockOnLast bool
	}{
		{name: "cancelled before any tick", ticks: 0},
		{name: "relists on each tick, cancelled while waiting", ticks: 3},
		{name: "cancelled while a relist waits on the backend", ticks: 1, blockOnLast: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// One rule, so one series call per relist.
			custom, _ := compile(t, `
rules:
- seriesQuery: 'a_total{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
`)
			clock := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			lister := &fakeLister{called: make(chan string, 16)}
			lister.set(queryA, []model.LabelSet{labelSet("__name__", "a_total", "namespace", "shop", "pod", "p")}, nil)
			r := discovery.New(discovery.Options{Rules: custom, Lister: lister, Mapper: testMapper(), Clock: clock, Interval: interval})

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.Run(ctx)
			}()
			waitCall := func(what string) {
				t.Helper()
				select {
				case <-lister.called:
				case <-done:
					t.Fatalf("%s: Run returned early", what)
				case <-time.After(10 * time.Second):
					t.Fatalf("%s: no relist", what)
				}
			}
			waitCall("initial relist")
			for i := 1; i <= tc.ticks; i++ {
				if tc.blockOnLast && i == tc.ticks {
					lister.mu.Lock()
					lister.block = true
					lister.mu.Unlock()
				}
				clock.Step(interval)
				waitCall(fmt.Sprintf("tick %d", i))
			}
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context was cancelled")
			}
			lister.mu.Lock()
			calls := len(lister.calls)
			lister.mu.Unlock()
			if want := 1 + tc.ticks; calls != want {
				t.Errorf("series calls = %d, want %d (one at start, one per tick)", calls, want)
			}
			// Relists run one after another: a tick's relist starts after the
			// previous one finished, so that one's metrics are in. A relist
			// cut short by the cancellation leaves them as they were.
			if got := len(r.CustomMetrics()); tc.ticks > 0 && got != 2 {
				t.Errorf("custom metrics = %d, want 2 (pods and namespaces)", got)
			}
		})
	}
}
