package metricrules

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

func testMapper() apimeta.RESTMapper {
	m := apimeta.NewDefaultRESTMapper(nil)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, apimeta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, apimeta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, apimeta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, apimeta.RESTScopeNamespace)
	return m
}

func testEnv() *Env {
	return &Env{
		Mapper:         testMapper(),
		Sources:        []string{"local", "loki", "prometheus", "thanos"},
		Backends:       []config.Backend{{Name: "thanos", Type: config.BackendPrometheus, URL: "http://thanos.monitoring:9090"}},
		NamespaceLabel: "namespace",
	}
}

// spec reads a MetricRule spec written as YAML, as kubectl would send it.
func spec(t testing.TB, text string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const goodRule = `
rules:
- seriesQuery: 'http_requests_total{pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
`

func TestCompileConfinesAndNamesRules(t *testing.T) {
	c, refusal := Compile("team-a", "web", spec(t, goodRule), testEnv())
	if refusal != nil {
		t.Fatalf("refused: %s: %s", refusal.Reason, refusal.Full())
	}
	if len(c.Custom) != 1 || len(c.External) != 1 || c.Entries() != 2 {
		t.Fatalf("compiled %d custom, %d external rules; want 1 and 1", len(c.Custom), len(c.External))
	}
	r := c.Custom[0]
	if want := "MetricRule team-a/web spec.rules[0] (http_requests_total)"; r.ID != want {
		t.Errorf("rule ID %q; want %q", r.ID, want)
	}
	if r.Namespace != "team-a" || r.NamespaceLabel != "namespace" {
		t.Errorf("rule confined to %s=%q; want namespace=\"team-a\"", r.NamespaceLabel, r.Namespace)
	}
	if !strings.Contains(r.SeriesQuery, `namespace="team-a"`) {
		t.Errorf("seriesQuery %q lacks the namespace matcher", r.SeriesQuery)
	}
	// A request can never take the rule to another namespace's data: the
	// external query, asked with no namespace, still names team-a only.
	q, err := c.External[0].ExternalQuery("queue_depth", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(q.Text, `namespace="team-a"`) {
		t.Errorf("external query %q lacks the namespace matcher", q.Text)
	}
}

func TestCompileMessagesNameTheField(t *testing.T) {
	allowOnlyPrometheus := testEnv()
	allowOnlyPrometheus.AllowedBackends = []string{"prometheus"}
	for _, tc := range []struct {
		name   string
		spec   string
		env    *Env
		reason string
		want   []string // each problem's start
		has    string   // a part of the whole message, when not ""
	}{
		{
			name: "template that renders no PromQL",
			spec: `
rules:
- seriesQuery: 'http_requests_total'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}'`,
			reason: ReasonInvalid,
			want:   []string{"spec.rules[0].metricsQuery: rendered query does not parse: "},
		},
		{
			// The sample request a rendered query is shown with is one in
			// the MetricRule's own namespace, not "default".
			name: "rendered sample in the rule's namespace",
			spec: `
rules:
- seriesQuery: 'http_requests_total'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by by'`,
			reason: ReasonInvalid,
			want:   []string{`spec.rules[0].metricsQuery: rendered query does not parse: `},
			has:    `(rendered: sum(sample_metric{namespace="team-a",pod=~"a|b"}) by by)`,
		},
		{
			name: "unknown field, and a bad duration in an external rule",
			spec: `
rules:
- seriesQuery: 'x'
  metricsQuery: 'sum(<<.Series>>)'
  bogus: 2
externalRules:
- seriesQuery: 'y'
  metricsQuery: 'sum(<<.Series>>)'
  window: abc`,
			reason: ReasonInvalid,
			want: []string{
				`spec.rules[0]: unknown field "bogus"`,
				`spec.externalRules[0].window: expected a duration such as "1m", got "abc"`,
			},
		},
		{
			name: "missing seriesQuery",
			spec: `
rules:
- metricsQuery: 'sum(<<.Series>>)'`,
			reason: ReasonInvalid,
			want:   []string{"spec.rules[0].seriesQuery: required: "},
		},
		{
			name: "resourceRules and backends are the admin's",
			spec: `
rules:
- seriesQuery: 'x'
  metricsQuery: 'sum(<<.Series>>)'
resourceRules: {}
backends: []`,
			reason: ReasonInvalid,
			want:   []string{"spec.backends: not allowed in a MetricRule", "spec.resourceRules: not allowed in a MetricRule"},
		},
		{
			name: "another namespace in the seriesQuery",
			spec: `
rules:
- seriesQuery: 'http_requests_total{namespace="team-b"}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'`,
			reason: ReasonInvalid,
			want:   []string{"spec.rules[0].seriesQuery: "},
		},
		{
			name: "another namespace in the query",
			spec: `
externalRules:
- seriesQuery: 'x'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) + sum(x{namespace=~".+"})'`,
			reason: ReasonInvalid,
			want:   []string{"spec.externalRules[0].metricsQuery: "},
		},
		{
			name: "info() reads series without a selector",
			spec: `
externalRules:
- seriesQuery: 'x'
  metricsQuery: 'info(sum(<<.Series>>{<<.LabelMatchers>>}))'`,
			reason: ReasonInvalid,
			want:   []string{"spec.externalRules[0].metricsQuery: "},
		},
		{
			name: "unknown named backend",
			spec: `
rules:
- seriesQuery: 'x'
  metricsQuery: 'sum(<<.Series>>)'
  backend: mimir`,
			reason: ReasonInvalid,
			want:   []string{`spec.rules[0].backend: unknown backend "mimir" (backends: thanos)`},
		},
		{
			name: "a backend the admin does not allow",
			spec: `
rules:
- seriesQuery: 'x'
  metricsQuery: 'sum(<<.Series>>)'
  backend: thanos`,
			env:    allowOnlyPrometheus,
			reason: ReasonBackendNotAllowed,
			want:   []string{`spec.rules[0].backend: MetricRules may not use the thanos backend (allowed: prometheus)`},
		},
		{
			name: "a source Gantry does not have",
			spec: `
rules:
- seriesQuery: 'x'
  metricsQuery: 'sum(<<.Series>>)'
  source: local`,
			env:    &Env{Mapper: testMapper(), Sources: []string{"prometheus"}, NamespaceLabel: "namespace"},
			reason: ReasonInvalid,
			want:   []string{`spec.rules[0].source: Gantry has no local backend to run it on (backends: prometheus)`},
		},
		{
			name:   "no rules",
			spec:   `rules: []`,
			reason: ReasonInvalid,
			want:   []string{"spec: no rules or externalRules"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = testEnv()
			}
			c, refusal := Compile("team-a", "web", spec(t, tc.spec), env)
			if refusal == nil {
				t.Fatalf("compiled %d rules; want a refusal", c.Entries())
			}
			if refusal.Reason != tc.reason {
				t.Errorf("reason %s; want %s (%s)", refusal.Reason, tc.reason, refusal.Full())
			}
			if tc.has != "" && !strings.Contains(refusal.Full(), tc.has) {
				t.Errorf("message %q lacks %q", refusal.Full(), tc.has)
			}
			if len(refusal.Problems) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d starting with %q", strings.Join(refusal.Problems, "\n"), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(refusal.Problems[i], w) {
					t.Errorf("problem %d: %q; want it to start with %q", i, refusal.Problems[i], w)
				}
			}
			if refusal.Message() != refusal.Problems[0] {
				t.Errorf("Message() %q is not the first problem", refusal.Message())
			}
		})
	}
}

func TestSpecMessage(t *testing.T) {
	names := map[string]string{"rules[0]": "a: (b)"}
	for _, tc := range []struct{ in, want string }{
		{"MetricRule n/x:1: top level: unknown field \"foo\"", "spec: unknown field \"foo\""},
		{"MetricRule n/x: rules[0] (a: (b)): name.matches: bad", "spec.rules[0].name.matches: bad"},
		{"MetricRule n/x: rules[3] (zz): seriesFilters[1].is: bad", "spec.rules[3].seriesFilters[1].is: bad"},
		{"MetricRule n/x: externalRules[0] (q): set either is or isNot", "spec.externalRules[0]: set either is or isNot"},
	} {
		if diff := cmp.Diff(tc.want, specMessage(tc.in, "MetricRule n/x", names)); diff != "" {
			t.Errorf("specMessage(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
