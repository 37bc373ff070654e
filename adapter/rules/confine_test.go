package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/prometheus/model/labels"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/gantry-dev/gantry/adapter/config"
)

// Rules as a team pastes them into a MetricRule: the shipped ConfigMap's
// (deploy/manifests/configmap.yaml), namespace!="" and all.
var (
	podRequestsRule = config.DiscoveryRule{
		SeriesQuery: `{__name__=~"^(http|grpc)_.+_total$",namespace!="",pod!=""}`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"namespace": {Resource: "namespace"}, "pod": {Resource: "pod"}, "service": {Resource: "service"},
		}},
		Name:         config.NameMapping{Matches: "^(.+)_total$", As: "${1}_per_second"},
		MetricsQuery: `sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[2m]))`,
	}
	queueRule = config.DiscoveryRule{
		SeriesQuery:  `{__name__="queue_messages_ready",namespace!=""}`,
		Resources:    config.ResourceMapping{Overrides: map[string]config.GroupResource{"namespace": {Resource: "namespace"}}},
		MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>})`,
	}
	logErrorsRule = config.DiscoveryRule{
		SeriesQuery: `{app="web",namespace!="",pod!=""}`,
		LogQLQuery:  `sum by (<<.GroupBy>>) (rate({<<.LabelMatchers>>} |= "error" [2m])) / on () group_left () sum(rate({app="web"}[2m]))`,
		Resources:   config.ResourceMapping{Template: "<<.Resource>>"},
		Name:        config.NameMapping{As: "log_errors_per_second"},
	}
)

func mustConfine(t *testing.T, r config.DiscoveryRule, external bool) *Rule {
	t.Helper()
	rule := mustCompile(t, r, external)
	if err := rule.Confine("namespace", "team-a"); err != nil {
		t.Fatalf("Confine: %v", err)
	}
	return rule
}

// onlyTeamA fails unless every selector of the PromQL query q has exactly
// one matcher on namespace, namespace="team-a".
func onlyTeamA(t *testing.T, q string) {
	t.Helper()
	sels := vectorSelectors(mustParse(t, q))
	if len(sels) == 0 {
		t.Fatalf("query %s has no selector", q)
	}
	for _, vs := range sels {
		var on []string
		for _, m := range vs.LabelMatchers {
			if m.Name == "namespace" {
				on = append(on, m.String())
			}
		}
		if diff := cmp.Diff([]string{`namespace="team-a"`}, on); diff != "" {
			t.Errorf("selector %s of %s: namespace matchers (-want +got):\n%s", vs, q, diff)
		}
	}
}

func TestConfineRewritesSeriesQuery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rule     config.DiscoveryRule
		external bool
		want     string
	}{
		{"object rule", podRequestsRule, false, `{__name__=~"^(http|grpc)_.+_total$",namespace="team-a",pod!=""}`},
		{"external rule", queueRule, true, `queue_messages_ready{namespace="team-a"}`},
		{"LogQL rule", logErrorsRule, false, `{app="web", pod!="", namespace="team-a"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustConfine(t, tc.rule, tc.external)
			if r.SeriesQuery != tc.want {
				t.Errorf("SeriesQuery = %s, want %s", r.SeriesQuery, tc.want)
			}
			if r.Namespace != "team-a" || r.NamespaceLabel != "namespace" {
				t.Errorf("Namespace, NamespaceLabel = %q, %q; want team-a, namespace", r.Namespace, r.NamespaceLabel)
			}
		})
	}
}

func TestConfinedQueries(t *testing.T) {
	object := mustConfine(t, podRequestsRule, false)
	q, err := object.ObjectQuery("http_requests_total", Pods, "team-a", []string{"web-1", "web-2"}, mustSelector(t, "code=200"))
	if err != nil {
		t.Fatal(err)
	}
	sameQuery(t, q.Text, `sum by (pod) (rate(http_requests_total{code="200",namespace="team-a",pod=~"web-1|web-2"}[2m]))`, []string{"web-1", "web-2", "web-3"})
	onlyTeamA(t, q.Text)

	q, err = object.NamespaceQuery("http_requests_total", Pods, "team-a", k8slabels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	onlyTeamA(t, q.Text)

	external := mustConfine(t, queueRule, true)
	q, err = external.ExternalQuery("queue_messages_ready", "team-a", mustSelector(t, "queue=orders"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `sum(queue_messages_ready{namespace="team-a",queue="orders"})`; q.Text != want {
		t.Errorf("external query = %s, want %s", q.Text, want)
	}

	// An external rule that does not match the request's namespace
	// (namespaced: false) still reads only its own.
	unmatched := queueRule
	unmatched.Resources = config.ResourceMapping{Namespaced: new(false)}
	q, err = mustConfine(t, unmatched, true).ExternalQuery("queue_messages_ready", "team-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `sum(queue_messages_ready{namespace="team-a"})`; q.Text != want {
		t.Errorf("external query of a rule with namespaced: false = %s, want %s", q.Text, want)
	}

	logql := mustConfine(t, logErrorsRule, false)
	q, err = logql.ObjectQuery("", Pods, "team-a", []string{"web-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `sum by (pod) (rate({pod="web-1", namespace="team-a"} |= "error" [2m])) / on () group_left () sum(rate({app="web", namespace="team-a"}[2m]))`
	if q.Text != want {
		t.Errorf("LogQL query\n got %s\nwant %s", q.Text, want)
	}
}

// TestConfinedRequestNamingAnotherNamespace: a request whose metric
// selector or namespace names another namespace than the rule's is the
// request's fault, an *InvalidSelectorError, and no query is returned.
func TestConfinedRequestNamingAnotherNamespace(t *testing.T) {
	object := mustConfine(t, podRequestsRule, false)
	external := mustConfine(t, queueRule, true)
	logql := mustConfine(t, logErrorsRule, false)
	for _, tc := range []struct {
		name    string
		query   func() (Query, error)
		wantErr string
	}{
		{
			name: "object metric selector naming team-b",
			query: func() (Query, error) {
				return object.ObjectQuery("http_requests_total", Pods, "team-a", []string{"web-1"}, mustSelector(t, "namespace=team-b"))
			},
			wantErr: `namespace="team-b" in http_requests_total{namespace="team-a",namespace="team-b",pod="web-1"}: a namespaced rule reads only namespace="team-a"`,
		},
		{
			name: "namespace query metric selector listing two namespaces",
			query: func() (Query, error) {
				return object.NamespaceQuery("http_requests_total", Pods, "team-a", mustSelector(t, "namespace in (team-a,team-b)"))
			},
			wantErr: `namespace=~"team-(?:a|b)"`,
		},
		{
			name: "external metric selector naming team-b",
			query: func() (Query, error) {
				return external.ExternalQuery("queue_messages_ready", "team-a", mustSelector(t, "namespace=team-b"))
			},
			wantErr: `namespace="team-b"`,
		},
		{
			name: "external metric selector excluding team-b",
			query: func() (Query, error) {
				return external.ExternalQuery("queue_messages_ready", "team-a", mustSelector(t, "namespace!=team-b"))
			},
			wantErr: `namespace!="team-b"`,
		},
		{
			name: "LogQL metric selector naming team-b",
			query: func() (Query, error) {
				return logql.ObjectQuery("", Pods, "team-a", []string{"web-1"}, mustSelector(t, "namespace=team-b"))
			},
			wantErr: `namespace="team-b"`,
		},
		{
			name: "object request in team-b",
			query: func() (Query, error) {
				return object.ObjectQuery("http_requests_total", Pods, "team-b", []string{"web-1"}, nil)
			},
			wantErr: `serves only namespace "team-a", not "team-b"`,
		},
		{
			name: "external request in team-b",
			query: func() (Query, error) {
				return external.ExternalQuery("queue_messages_ready", "team-b", nil)
			},
			wantErr: `serves only namespace "team-a", not "team-b"`,
		},
		{
			name: "the namespace object team-b",
			query: func() (Query, error) {
				return object.ObjectQuery("http_requests_total", Namespaces, "", []string{"team-b"}, nil)
			},
			wantErr: `namespace="team-b"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := tc.query()
			var invalid *InvalidSelectorError
			if !errors.As(err, &invalid) {
				t.Fatalf("got %q, %v; want an *InvalidSelectorError", q.Text, err)
			}
			if !strings.HasPrefix(invalid.Reason, "rules[0] (") || !strings.Contains(invalid.Reason, tc.wantErr) {
				t.Errorf("error %q: want the rule's ID and %q", invalid.Reason, tc.wantErr)
			}
			if q.Text != "" {
				t.Errorf("a refused request returned the query %s", q.Text)
			}
		})
	}
}

func TestConfineRefusesRule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edit     func(*config.DiscoveryRule)
		logql    bool
		external bool
		wantErr  string
	}{
		{
			name:    "seriesQuery naming another namespace",
			edit:    func(r *config.DiscoveryRule) { r.SeriesQuery = `http_requests_total{namespace="team-b"}` },
			wantErr: `seriesQuery: namespace="team-b" in http_requests_total{namespace="team-b"}: a namespaced rule reads only namespace="team-a"`,
		},
		{
			name:    "seriesQuery with a regexp on the namespace",
			edit:    func(r *config.DiscoveryRule) { r.SeriesQuery = `{__name__=~"http_.*",namespace=~".+"}` },
			wantErr: `seriesQuery: namespace=~".+"`,
		},
		{
			name: "metricsQuery hardcoding another namespace",
			edit: func(r *config.DiscoveryRule) {
				r.MetricsQuery = `sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[2m])) / on () group_left () scalar(sum(rate(<<.Series>>{namespace="team-b"}[2m])))`
			},
			wantErr: `metricsQuery: namespace="team-b" in sample_metric{namespace="team-b"}`,
		},
		{
			name: "metricsQuery calling info()",
			edit: func(r *config.DiscoveryRule) {
				r.MetricsQuery = `sum by (<<.GroupBy>>) (info(rate(<<.Series>>{<<.LabelMatchers>>}[2m])))`
			},
			wantErr: `metricsQuery: function info() is not allowed in a namespaced rule`,
		},
		{
			name: "metricsQuery rewriting the namespace label",
			edit: func(r *config.DiscoveryRule) {
				r.MetricsQuery = `label_replace(sum by (<<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[2m])), "namespace", "team-b", "", "")`
			},
			wantErr: `metricsQuery: label_replace() writes the label "namespace"`,
		},
		{
			name:  "logqlQuery naming another namespace",
			logql: true,
			edit: func(r *config.DiscoveryRule) {
				r.LogQLQuery = `sum by (<<.GroupBy>>) (rate({<<.LabelMatchers>>} [2m])) / on () group_left () sum(rate({namespace="team-b"}[2m]))`
			},
			wantErr: `logqlQuery: namespace="team-b" in {namespace="team-b"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := podRequestsRule
			if tc.logql {
				r = logErrorsRule
			}
			tc.edit(&r)
			rule := mustCompile(t, r, tc.external)
			err := rule.Confine("namespace", "team-a")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Confine = %v; want an error containing %q", err, tc.wantErr)
			}
			if rule.Namespace != "team-a" {
				t.Errorf("a rule Confine refused is left unconfined (Namespace %q)", rule.Namespace)
			}
		})
	}
}

// TestConfinedRuleFollowsItsLabel: the admin's namespace label need not be
// "namespace"; the rule's own resource mapping still adds its matcher.
func TestConfinedRuleFollowsItsLabel(t *testing.T) {
	r := mustCompile(t, config.DiscoveryRule{
		SeriesQuery: `frontend_http_requests_total{kubernetes_namespace!="",kubernetes_pod_name!=""}`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"kubernetes_namespace": {Resource: "namespace"}, "kubernetes_pod_name": {Resource: "pod"},
		}},
		MetricsQuery: `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`,
	}, false)
	if err := r.Confine("kubernetes_namespace", "team-a"); err != nil {
		t.Fatal(err)
	}
	if want := `frontend_http_requests_total{kubernetes_namespace="team-a",kubernetes_pod_name!=""}`; r.SeriesQuery != want {
		t.Errorf("SeriesQuery = %s, want %s", r.SeriesQuery, want)
	}
	q, err := r.ObjectQuery("frontend_http_requests_total", Pods, "team-a", []string{"web-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range vectorSelectors(mustParse(t, q.Text)) {
		n := 0
		for _, m := range vs.LabelMatchers {
			if m.Name == "kubernetes_namespace" {
				n++
				if m.Type != labels.MatchEqual || m.Value != "team-a" {
					t.Errorf("selector %s: matcher %s", vs, m)
				}
			}
		}
		if n != 1 {
			t.Errorf("selector %s has %d kubernetes_namespace matchers, want 1", vs, n)
		}
	}
}
