package discovery_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// describeConflicts writes conflicts as "pods/requests: rules[0] (a) series
// x, rules[1] (b) series y" (the winner last), or "external/lag: ...".
func describeConflicts(cs []discovery.Conflict) []string {
	var out []string
	for _, c := range cs {
		what := "external/" + c.Metric
		if !c.External {
			what = c.Resource.String() + "/" + c.Metric
		}
		entries := make([]string, len(c.Entries))
		for i, e := range c.Entries {
			entries[i] = e.String()
		}
		if c.Winner() != c.Entries[len(c.Entries)-1] {
			entries = append(entries, "winner is not the last")
		}
		out = append(out, what+": "+strings.Join(entries, ", "))
	}
	return out
}

// TestConflictsLastRuleWins gives several rules series that yield the same
// metric. prometheus-adapter keeps, for each metric and resource, the last
// rule that yields it (its series registry overwrites the entry per rule),
// so Gantry must too: the last rule in file order answers, and within a rule
// the last series by name. The relist and discovery.Conflicts (what
// check-config reports) must agree.
func TestConflictsLastRuleWins(t *testing.T) {
	podRule := func(seriesQuery, as string) string {
		return fmt.Sprintf(`
- seriesQuery: '%s'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name: {as: "%s"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`, seriesQuery, as)
	}
	svcRule := fmt.Sprintf(`
- seriesQuery: '%s'
  resources:
    overrides:
      service: {resource: service}
  name: {as: "requests"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`, `svc_requests_total{service!=""}`)
	lagRule := func(seriesQuery string) string {
		return fmt.Sprintf(`
- seriesQuery: '%s'
  name: {as: "lag"}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (topic)
`, seriesQuery)
	}
	const (
		httpQ = `http_requests_total{namespace!="",pod!=""}`
		grpcQ = `grpc_requests_total{namespace!="",pod!=""}`
		bothQ = `{__name__=~"(http|grpc)_requests_total",namespace!="",pod!=""}`
		podsQ = `pod_requests{namespace!="",pod!=""}`
		sqsQ  = `sqs_lag{topic!=""}`
		kafQ  = `kafka_lag{topic!=""}`
	)
	lister := &fakeLister{}
	lister.set(httpQ, []model.LabelSet{
		labelSet("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1"),
		labelSet("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1", "code", "500"),
	}, nil)
	lister.set(grpcQ, []model.LabelSet{labelSet("__name__", "grpc_requests_total", "namespace", "shop", "pod", "web-1")}, nil)
	// Listed in reverse name order: the order a backend answers in must
	// not decide.
	lister.set(bothQ, []model.LabelSet{
		labelSet("__name__", "http_requests_total", "namespace", "shop", "pod", "web-1"),
		labelSet("__name__", "grpc_requests_total", "namespace", "shop", "pod", "web-1"),
	}, nil)
	lister.set(podsQ, []model.LabelSet{labelSet("__name__", "pod_requests", "namespace", "shop", "pod", "web-1")}, nil)
	lister.set(`svc_requests_total{service!=""}`, []model.LabelSet{labelSet("__name__", "svc_requests_total", "service", "web")}, nil)
	lister.set(sqsQ, []model.LabelSet{labelSet("__name__", "sqs_lag", "topic", "orders")}, nil)
	lister.set(kafQ, []model.LabelSet{labelSet("__name__", "kafka_lag", "topic", "orders")}, nil)

	podMetric := provider.CustomMetricInfo{GroupResource: pods, Namespaced: true, Metric: "requests"}
	nsMetric := provider.CustomMetricInfo{GroupResource: namespaces, Metric: "requests"}
	svcMetric := provider.CustomMetricInfo{GroupResource: services, Namespaced: true, Metric: "requests"}

	cases := []struct {
		name          string
		yaml          string
		want          []string // answering pods, namespaces, services/requests and external lag
		wantConflicts []string
	}{{
		name: "two custom rules: the later answers for every resource they share",
		yaml: "rules:" + podRule(httpQ, "requests") + podRule(grpcQ, "requests"),
		want: []string{"rules[1] (requests) grpc_requests_total", "rules[1] (requests) grpc_requests_total", "<none>", "<none>"},
		wantConflicts: []string{
			"namespaces/requests: rules[0] (requests) series http_requests_total, rules[1] (requests) series grpc_requests_total",
			"pods/requests: rules[0] (requests) series http_requests_total, rules[1] (requests) series grpc_requests_total",
		},
	}, {
		name: "three rules: the last answers, every one is named in order",
		yaml: "rules:" + podRule(grpcQ, "requests") + podRule(podsQ, "requests") + podRule(httpQ, "requests"),
		want: []string{"rules[2] (requests) http_requests_total", "rules[2] (requests) http_requests_total", "<none>", "<none>"},
		wantConflicts: []string{
			"namespaces/requests: rules[0] (requests) series grpc_requests_total, rules[1] (requests) series pod_requests, rules[2] (requests) series http_requests_total",
			"pods/requests: rules[0] (requests) series grpc_requests_total, rules[1] (requests) series pod_requests, rules[2] (requests) series http_requests_total",
		},
	}, {
		name: "the same name on another resource is no conflict",
		yaml: "rules:" + podRule(httpQ, "requests") + svcRule,
		want: []string{"rules[0] (requests) http_requests_total", "rules[0] (requests) http_requests_total", "rules[1] (requests) svc_requests_total", "<none>"},
	}, {
		name: "one rule, two series alike: the last by name answers",
		yaml: "rules:" + podRule(bothQ, "requests"),
		want: []string{"rules[0] (requests) http_requests_total", "rules[0] (requests) http_requests_total", "<none>", "<none>"},
		wantConflicts: []string{
			"namespaces/requests: rules[0] (requests) series grpc_requests_total, rules[0] (requests) series http_requests_total",
			"pods/requests: rules[0] (requests) series grpc_requests_total, rules[0] (requests) series http_requests_total",
		},
	}, {
		name:          "external rules: the later answers",
		yaml:          "externalRules:" + lagRule(sqsQ) + lagRule(kafQ),
		want:          []string{"<none>", "<none>", "<none>", "externalRules[1] (lag) kafka_lag"},
		wantConflicts: []string{"external/lag: externalRules[0] (lag) series sqs_lag, externalRules[1] (lag) series kafka_lag"},
	}, {
		name: "a custom and an external metric of one name do not conflict",
		yaml: "rules:" + podRule(httpQ, "lag") + "externalRules:" + lagRule(sqsQ),
		want: []string{"<none>", "<none>", "<none>", "externalRules[0] (lag) sqs_lag"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			custom, external := compile(t, tc.yaml)
			reg := prometheus.NewRegistry()
			r := discovery.New(discovery.Options{Rules: custom, ExternalRules: external, Lister: lister, Mapper: testMapper(), Registerer: reg})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.Relist(ctx); err != nil {
				t.Fatalf("Relist: %v", err)
			}
			got := []string{customEntry(r, podMetric), customEntry(r, nsMetric), customEntry(r, svcMetric), externalEntry(r, "lag")}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("what answers pods, namespaces, services/requests and external lag (-want +got):\n%s", diff)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP gantry_discovery_conflicts Metrics yielded by more than one rule or series in the last relist; as in prometheus-adapter, the last rule in file order answers for each.
# TYPE gantry_discovery_conflicts gauge
gantry_discovery_conflicts %d
`, len(tc.wantConflicts))), "gantry_discovery_conflicts"); err != nil {
				t.Error(err)
			}

			series := map[*rules.Rule][]model.LabelSet{}
			for _, rule := range append(append([]*rules.Rule(nil), custom...), external...) {
				sets, err := lister.Series(ctx, []string{rule.SeriesQuery}, time.Time{}, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				series[rule] = sets
			}
			if diff := cmp.Diff(tc.wantConflicts, describeConflicts(discovery.Conflicts(custom, external, testMapper(), series))); diff != "" {
				t.Errorf("Conflicts (-want +got):\n%s", diff)
			}
		})
	}
}
