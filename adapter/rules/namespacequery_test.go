package rules

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

func TestCheckNamespaceQuery(t *testing.T) {
	const rate = `rate(<<.Series>>{<<.LabelMatchers>>}[2m])`
	const perPod = `sum(` + rate + `) by (<<.GroupBy>>)`
	tests := []struct {
		name  string
		query string
		label string // the resource label; checkLabel when empty
		// wantErr is a part of the reason; "" when the namespace query
		// is safe.
		wantErr string
	}{
		// Safe: each object's value comes from its own series.
		{name: "the documented rate by the resource label", query: perPod},
		{name: "a bare selector", query: `<<.Series>>{<<.LabelMatchers>>}`},
		{name: "functions of one series", query: `abs(clamp_max(round(irate(<<.Series>>{<<.LabelMatchers>>}[1m]), 0.1), 10))`},
		{name: "over_time functions with scalar parameters", query: `quantile_over_time(0.9, <<.Series>>{<<.LabelMatchers>>}[5m]) + predict_linear(<<.Series>>{<<.LabelMatchers>>}[5m], 60)`},
		{name: "a subquery of a safe query", query: `max_over_time(` + perPod + `[5m:30s])`},
		{name: "without keeps the resource label", query: `sum without (code) (` + rate + `)`},
		{name: "by with more labels", query: `max by (container, <<.GroupBy>>) (` + rate + `)`},
		{name: "topk within each object", query: `topk by (<<.GroupBy>>) (1, ` + rate + `)`},
		{name: "quantile within each object", query: `quantile by (<<.GroupBy>>) (0.5, ` + rate + `)`},
		{name: "count_values writing another label", query: `count_values by (<<.GroupBy>>) ("value", <<.Series>>{<<.LabelMatchers>>})`},
		{name: "ratio of two per-object sums (default matching)", query: perPod + ` / sum(rate(errors{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`},
		{name: "on() with the resource label", query: perPod + ` / on(<<.GroupBy>>) sum(limits{<<.LabelMatchers>>}) by (<<.GroupBy>>)`},
		{name: "ignoring another label, group_left", query: `sum by (<<.GroupBy>>, code) (` + rate + `) / ignoring(code) group_left ` + perPod},
		{name: "group_left copies the resource label from the one side, the same value", query: `sum by (<<.GroupBy>>, code) (` + rate + `) / ignoring(code) group_left(<<.GroupBy>>) ` + perPod},
		{name: "a number literal", query: perPod + ` * 100 > 5`},
		{name: "scalar of a selector without the matchers", query: perPod + ` / scalar(sum(rate(<<.Series>>{namespace="shop"}[2m])))`},
		{name: "on() group_left onto a selector without the matchers", query: perPod + ` / on() group_left sum(rate(<<.Series>>{namespace="shop"}[2m]))`},
		{name: "join with an info series on the resource label", query: `sum(` + rate + ` * on(namespace, <<.GroupBy>>) group_left(node) kube_pod_info) by (<<.GroupBy>>)`},
		{name: "join with an info series without the resource label", query: `sum(` + rate + ` * on(namespace) group_left(owner) kube_namespace_labels) by (<<.GroupBy>>)`},
		{name: "label_replace writing another label", query: `sum(label_replace(` + rate + `, "name", "$1", "container", "(.+)")) by (<<.GroupBy>>, name)`},
		{name: "histogram_quantile keeps the resource label", query: `histogram_quantile(0.95, sum(` + rate + `) by (le, <<.GroupBy>>))`},
		{name: "and with the resource label in the signature", query: perPod + ` and ` + perPod + ` > 1`},
		{name: "and on() with a constant right side", query: perPod + ` and on() (sum(up{job="api"}) > 0)`},
		{name: "constant left side or per-object right side", query: `kube_pod_info{namespace="shop"} * 0 or on() ` + perPod},
		{name: "a query without the matchers at all", query: `count(kube_pod_info) by (pod)`},
		{name: "group_right with the per-object side many", query: `sum(up{job="api"}) + on() group_right ` + perPod},
		{name: "unary minus and offset", query: `-sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m] offset 1m)) by (<<.GroupBy>>)`},
		{name: "vector of a constant", query: perPod + ` + on(<<.GroupBy>>) vector(1)`},

		// Unsafe: an object's value can depend on other objects' series.
		{name: "scalar of the requested objects (the share example)", query: perPod + ` / scalar(sum(` + rate + `))`, wantErr: "sum groups without the resource label, so it combines the series of different objects: sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]))"},
		{name: "scalar of a per-object sum", query: perPod + ` / scalar(max(` + perPod + `))`, wantErr: "max groups without"},
		{name: "scalar of a per-object selector", query: `scalar(<<.Series>>{<<.LabelMatchers>>})`, wantErr: "scalar() folds the series of all requested objects into one number: scalar(<<.Series>>{<<.LabelMatchers>>})"},
		{name: "sum without by", query: `sum(` + rate + `)`, wantErr: "sum groups without the resource label"},
		{name: "by another label", query: `sum by (namespace) (` + rate + `)`, wantErr: "sum groups without the resource label"},
		{name: "by a hard-coded label that is not the resource label", query: `sum by (pod) (` + rate + `)`, wantErr: "sum groups without the resource label"},
		{name: "without the resource label", query: `sum without (<<.GroupBy>>) (` + rate + `)`, wantErr: "sum groups without the resource label"},
		{name: "on() group_left onto the requested objects", query: perPod + ` / on() group_left sum(` + rate + `)`, wantErr: "sum groups without"},
		{name: "on(namespace) group_left onto a per-object sum", query: perPod + ` / on(namespace) group_left sum by (namespace, <<.GroupBy>>) (` + rate + `)`, wantErr: "/ pairs series without the resource label"},
		{name: "ignoring the resource label", query: perPod + ` / ignoring(<<.GroupBy>>) group_left ` + perPod, wantErr: "/ pairs series without the resource label"},
		{name: "one-to-one on() drops the resource label", query: perPod + ` / on() vector(2)`, wantErr: "/ drops the resource label from its result"},
		{name: "a constant many side carrying the label", query: `kube_pod_info * on(namespace) group_left sum by (namespace) (` + rate + `)`, wantErr: "sum groups without"},
		{name: "a constant many side, per-object one side, without the label", query: `kube_pod_info * on(namespace) group_left ` + perPod, wantErr: "* pairs series without the resource label"},
		{name: "group_left including the resource label from a constant", query: perPod + ` * on(namespace) group_left(<<.GroupBy>>) kube_namespace_labels`, wantErr: "* pairs series without"},
		{name: "topk across objects", query: `topk(2, ` + perPod + `)`, wantErr: "topk groups without the resource label"},
		{name: "bottomk across objects", query: `bottomk(1, ` + perPod + `)`, wantErr: "bottomk groups without"},
		{name: "quantile across objects", query: perPod + ` > on() group_left quantile(0.5, ` + perPod + `)`, wantErr: "quantile groups without"},
		{name: "count_values across objects", query: `count_values("v", ` + perPod + `)`, wantErr: "count_values groups without"},
		{name: "count_values writing the resource label", query: `count_values by (<<.GroupBy>>) ("<<.GroupBy>>", ` + perPod + `)`, wantErr: "count_values writes the resource label"},
		{name: "limitk keeps an order-dependent k", query: `limitk by (<<.GroupBy>>) (1, ` + rate + `)`, wantErr: "limitk depends on the order"},
		{name: "topk with a parameter from the requested objects", query: `topk by (<<.GroupBy>>) (scalar(<<.Series>>{<<.LabelMatchers>>}), ` + rate + `)`, wantErr: "scalar() folds"},
		{name: "absent", query: `absent(<<.Series>>{<<.LabelMatchers>>})`, wantErr: "absent() answers for the requested objects together"},
		{name: "absent_over_time", query: `absent_over_time(<<.Series>>{<<.LabelMatchers>>}[5m])`, wantErr: "absent_over_time() answers"},
		{name: "vector of a scalar of the requested objects", query: `vector(scalar(` + rate + `))`, wantErr: "scalar() folds"},
		{name: "label_replace writing the resource label", query: `sum(label_replace(` + rate + `, "<<.GroupBy>>", "$1", "kubernetes_pod_name", "(.*)")) by (<<.GroupBy>>)`, wantErr: "label_replace writes the resource label"},
		{name: "label_join writing the resource label", query: `label_join(` + rate + `, "<<.GroupBy>>", "-", "a", "b")`, wantErr: "label_join writes the resource label"},
		{name: "histogram_quantile when le is the resource label", query: `histogram_quantile(0.9, sum(` + rate + `) by (le))`, label: "le", wantErr: `histogram_quantile drops or writes the resource label "le"`},
		{name: "and on() with the requested objects on the right", query: perPod + ` and on() ` + perPod, wantErr: "and pairs series without"},
		{name: "unless on() with the requested objects on the right", query: perPod + ` unless on() (` + perPod + ` > 5)`, wantErr: "unless pairs series without"},
		{name: "per-object left side or on() constant", query: perPod + ` or on() vector(0)`, wantErr: "or pairs series without"},
		{name: "a subquery of an unsafe query", query: `max_over_time(sum(` + rate + `)[5m:1m])`, wantErr: "sum groups without"},
		{name: "the matchers inside a string", query: `label_replace(` + perPod + `, "q", '<<.LabelMatchers>>', "", "")`, wantErr: "holds the request's label matchers"},
		{name: "info joins on labels it chooses", query: `info(` + rate + `)`, wantErr: "info() is not known to keep objects apart"},
		{name: "hard-coded resource label: safe for pod", query: `sum by (pod) (` + rate + `)`, label: "pod"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := config.ParseQueryTemplate(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			label := tc.label
			if label == "" {
				label = checkLabel
			}
			err = checkNamespaceQuery(tmpl, label)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("namespace query refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("namespace query accepted, want refused: %s", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("reason:\n got %v\nwant it to contain %s", err, tc.wantErr)
			}
		})
	}
}

func TestNamespaceQueryable(t *testing.T) {
	podOverrides := config.ResourceMapping{Overrides: map[string]config.GroupResource{
		"namespace": {Resource: "namespace"},
		"pod":       {Resource: "pod"},
		"node":      {Resource: "node"},
	}}
	byResource := config.ResourceMapping{Template: "<<.Resource>>"}
	prefixed := config.ResourceMapping{Template: "kubernetes_<<.Resource>>"}
	withGroup := config.ResourceMapping{Template: "<<.Group>>_<<.Resource>>"}
	tests := []struct {
		name      string
		resources config.ResourceMapping
		query     string
		logql     bool
		// want is "" when the namespace query serves the rule, else a
		// part of the reason.
		want string
	}{{
		name:      "hard-coded by (pod) with overrides: pod is the only namespaced resource label",
		resources: podOverrides,
		query:     `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (pod)`,
	}, {
		name:      "hard-coded by (pod) with a label template: other resources would be summed across",
		resources: byResource,
		query:     `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (pod)`,
		want:      "sum groups without the resource label",
	}, {
		name:      "group_left(node) with a label template: node names a cluster-scoped resource only",
		resources: byResource,
		query:     `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]) * on(namespace, <<.GroupBy>>) group_left(node) kube_pod_info) by (<<.GroupBy>>)`,
	}, {
		name:      "label_replace writing pod with a label template: pod may be the resource label",
		resources: byResource,
		query:     `sum(label_replace(rate(<<.Series>>{<<.LabelMatchers>>}[2m]), "pod", "$1", "kubernetes_pod_name", "(.*)")) by (<<.GroupBy>>)`,
		want:      `label_replace writes the resource label "pod"`,
	}, {
		name:      "label_replace writing pod with overrides: checked for pod",
		resources: podOverrides,
		query:     `sum(label_replace(rate(<<.Series>>{<<.LabelMatchers>>}[2m]), "pod", "$1", "kubernetes_pod_name", "(.*)")) by (<<.GroupBy>>)`,
		want:      `label_replace writes the resource label "pod"`,
	}, {
		name:      "label_replace writing node with overrides: nodes have no namespace query",
		resources: podOverrides,
		query:     `sum(label_replace(rate(<<.Series>>{<<.LabelMatchers>>}[2m]), "node", "$1", "instance", "(.*)")) by (<<.GroupBy>>)`,
	}, {
		name:      "histogram_quantile with a <<.Resource>> template: le names no resource of the cluster",
		resources: byResource,
		query:     `histogram_quantile(0.95, sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (le, <<.GroupBy>>))`,
	}, {
		name:      "label_replace writing service with a <<.Resource>> template: services are namespaced",
		resources: byResource,
		query:     `sum(label_replace(rate(<<.Series>>{<<.LabelMatchers>>}[2m]), "service", "$1", "job", "(.*)")) by (<<.GroupBy>>)`,
		want:      `label_replace writes the resource label "service"`,
	}, {
		name:      "histogram_quantile with a prefixed template: le cannot be rendered",
		resources: prefixed,
		query:     `histogram_quantile(0.95, sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (le, <<.GroupBy>>))`,
	}, {
		name:      "histogram_quantile with overrides",
		resources: podOverrides,
		query:     `histogram_quantile(0.95, sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (le, <<.GroupBy>>))`,
	}, {
		name:      "a template with the group: any written label that fits counts",
		resources: withGroup,
		query:     `sum(label_replace(rate(<<.Series>>{<<.LabelMatchers>>}[2m]), "apps_deployment", "$1", "owner", "(.*)")) by (<<.GroupBy>>)`,
		want:      `label_replace writes the resource label "apps_deployment"`,
	}, {
		name:      "a resource label for which neither query parses is left out",
		resources: withGroup,
		query:     `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]) * on(namespace, <<.GroupBy>>) group_left(apps_node) kube_pod_info) by (<<.GroupBy>>)`,
	}, {
		name:      "the share of the requested objects",
		resources: podOverrides,
		query:     `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>) / scalar(sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])))`,
		want:      `metricsQuery: sum groups without the resource label "pod"`,
	}, {
		name:      "LabelValuesByName",
		resources: podOverrides,
		query:     `sum(<<.Series>>{pod=~"<<.LabelValuesByName.pod>>"}) by (pod)`,
		want:      "metricsQuery uses LabelValuesByName, which needs the objects' names",
	}, {
		name:      "a template action other than the plain fields",
		resources: podOverrides,
		query:     `sum(rate(<<.Series>>{<<.LabelMatchers>>}[<<if eq .Series "slow_total">>10m<<else>>2m<<end>>])) by (<<.GroupBy>>)`,
		want:      `metricsQuery: the template has <<if eq .Series "slow_total">>10m<<else>>2m<<end>>; only`,
	}, {
		name:      "LogQL: no parser to prove it",
		resources: podOverrides,
		query:     `sum by (<<.GroupBy>>) (rate({job="app",<<.LabelMatchers>>} |= "error" [1m]))`,
		logql:     true,
		want:      "logqlQuery: Gantry has no LogQL parser",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rule := config.DiscoveryRule{SeriesQuery: `{__name__=~"x.*"}`, Resources: tc.resources, MetricsQuery: tc.query}
			if tc.logql {
				rule = config.DiscoveryRule{SeriesQuery: `{job="app"}`, Resources: tc.resources, LogQLQuery: tc.query, Name: config.NameMapping{As: "errors"}}
			}
			r := mustCompile(t, rule, false)
			if got := r.NamespaceQueryable(); got != (tc.want == "") {
				t.Errorf("NamespaceQueryable() = %v (%s)", got, r.notNamespaceQueryable)
			}
			_, err := r.NamespaceQuery("x_total", Pods, "shop", nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("NamespaceQuery: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("NamespaceQuery error:\n got %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

// TestNamespaceQueryableKeepsLabelAnswers pins what the decision for a
// label template rests on: a written label the cluster has no resource for
// when the rule is compiled ("le") is not taken for a resource later, when
// one appears, so no request can have it as the resource label.
func TestNamespaceQueryableKeepsLabelAnswers(t *testing.T) {
	mapper := testMapper().(*apimeta.DefaultRESTMapper)
	rule := config.DiscoveryRule{
		SeriesQuery:  `{__name__=~".*_bucket"}`,
		Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
		MetricsQuery: `histogram_quantile(0.95, sum(rate(<<.Series>>{<<.LabelMatchers>>}[5m])) by (le, <<.GroupBy>>))`,
	}
	r, err := Compile("rules[0]", rule, false, mapper)
	if err != nil {
		t.Fatal(err)
	}
	if !r.NamespaceQueryable() {
		t.Fatalf("NamespaceQueryable() = false (%s)", r.notNamespaceQueryable)
	}
	mapper.Add(schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Le"}, apimeta.RESTScopeNamespace)
	if _, err := mapper.ResourceFor(schema.GroupVersionResource{Resource: "le"}); err != nil {
		t.Fatalf("the mapper does not know the new resource: %v", err)
	}
	if gr, ok := r.Labels.ResourceForLabel("le"); ok {
		t.Errorf("ResourceForLabel(le) = %v after the rule was found namespace-queryable without it", gr)
	}
}

// corpusEntry is one rule template of testdata/namespace-query-corpus.yaml,
// with the decision Gantry must take for it. The same corpus runs on a real
// Prometheus in TestNamespaceQueryAgainstPrometheus.
type corpusEntry struct {
	Name string `yaml:"name"`
	// Source says where the template comes from.
	Source string `yaml:"source"`
	// Series is the series the request is about; Resource the resource
	// asked for (pods or services).
	Series   string `yaml:"series"`
	Resource string `yaml:"resource"`
	// Selector is the request's metric label selector, if any.
	Selector string `yaml:"selector"`
	// Wide is whether the namespace query must serve the rule.
	Wide bool `yaml:"wide"`
	// Differs, for a rule that is not wide, says that on the test data the
	// namespace query gives some requested object another value: the
	// reason it must not be used, shown.
	Differs bool `yaml:"differs"`
	// Note explains a decision that is not obvious.
	Note string               `yaml:"note"`
	Rule config.DiscoveryRule `yaml:"rule"`
}

func loadCorpus(t testing.TB) []corpusEntry {
	t.Helper()
	data, err := os.ReadFile("testdata/namespace-query-corpus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var corpus []corpusEntry
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&corpus); err != nil {
		t.Fatalf("testdata/namespace-query-corpus.yaml: %v", err)
	}
	names := map[string]bool{}
	for _, e := range corpus {
		if names[e.Name] {
			t.Fatalf("testdata/namespace-query-corpus.yaml: duplicate name %q", e.Name)
		}
		names[e.Name] = true
		if e.Differs && e.Wide {
			t.Fatalf("testdata/namespace-query-corpus.yaml: %q: differs is for rules that are not wide", e.Name)
		}
	}
	return corpus
}

// TestNamespaceQueryCorpus checks the decision for every template of the
// corpus; the Prometheus test checks that the decisions are right.
func TestNamespaceQueryCorpus(t *testing.T) {
	wide := 0
	corpus := loadCorpus(t)
	for _, e := range corpus {
		t.Run(e.Name, func(t *testing.T) {
			r := mustCompile(t, e.Rule, false)
			if got := r.NamespaceQueryable(); got != e.Wide {
				t.Errorf("NamespaceQueryable() = %v, want %v (%s)", got, e.Wide, r.notNamespaceQueryable)
			}
			if r.NamespaceQueryable() {
				wide++
			}
		})
	}
	t.Logf("%d templates: %d answered by the namespace query, %d by the query naming the objects", len(corpus), wide, len(corpus)-wide)
}

// FuzzNamespaceQueryable runs the check on arbitrary templates: it must not
// panic, and when it accepts a rule NamespaceQuery must serve it.
func FuzzNamespaceQueryable(f *testing.F) {
	for _, seed := range []string{
		`sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`,
		`sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>) / scalar(sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])))`,
		`histogram_quantile(0.9, sum by (le, <<.GroupBy>>) (rate(<<.Series>>{<<.LabelMatchers>>}[5m])))`,
		`label_replace(<<.Series>>{<<.LabelMatchers>>}, "pod", "$1", "x", "(.*)") * on(namespace) group_left(node) kube_pod_info`,
		`count_values by (<<.GroupBy>>) ("v", <<.Series>>{<<.LabelMatchers>>}) or on() vector(0)`,
		`max_over_time((<<.Series>>{<<.LabelMatchers>>} and on(<<.GroupBy>>) up)[5m:1m])`,
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, query string, template bool) {
		if len(query) > 2048 {
			return
		}
		resources := config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"namespace": {Resource: "namespace"},
			"pod":       {Resource: "pod"},
		}}
		if template {
			resources = config.ResourceMapping{Template: "<<.Resource>>"}
		}
		rule := config.DiscoveryRule{SeriesQuery: "x", Resources: resources, MetricsQuery: query}
		cfg := config.Config{Rules: []config.DiscoveryRule{rule}}
		if cfg.Validate("fuzz.yaml") != nil {
			return
		}
		r, err := Compile("rules[0]", rule, false, testMapper())
		if err != nil {
			return
		}
		if !r.NamespaceQueryable() {
			return
		}
		if _, err := r.NamespaceQuery("x_total", Pods, "shop", nil); err != nil {
			t.Errorf("NamespaceQuery of an accepted rule: %v", err)
		}
	})
}
