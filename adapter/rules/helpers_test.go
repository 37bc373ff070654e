package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

// promql is the parser the tests check rendered queries with, as Prometheus
// parses them; the code under test parses through config.ParsePromQL.
var promql = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})

// testMapper is a static stand-in for the cluster's discovery-backed
// RESTMapper: the built-in kinds the docs mention, and a few CRDs to
// exercise groups (dotted, dashed, served by two groups).
func testMapper() apimeta.RESTMapper {
	m := apimeta.NewDefaultRESTMapper(nil)
	for _, k := range []struct {
		group, version, kind string
		scope                apimeta.RESTScope
	}{
		{"", "v1", "Pod", apimeta.RESTScopeNamespace},
		{"", "v1", "Service", apimeta.RESTScopeNamespace},
		{"", "v1", "PersistentVolumeClaim", apimeta.RESTScopeNamespace},
		{"", "v1", "Namespace", apimeta.RESTScopeRoot},
		{"", "v1", "Node", apimeta.RESTScopeRoot},
		{"", "v1", "PersistentVolume", apimeta.RESTScopeRoot},
		{"apps", "v1", "Deployment", apimeta.RESTScopeNamespace},
		{"apps", "v1", "StatefulSet", apimeta.RESTScopeNamespace},
		{"apps", "v1", "ReplicaSet", apimeta.RESTScopeNamespace},
		{"batch", "v1", "Job", apimeta.RESTScopeNamespace},
		{"networking.k8s.io", "v1", "Ingress", apimeta.RESTScopeNamespace},
		{"storage.k8s.io", "v1", "StorageClass", apimeta.RESTScopeRoot},
		// sample-config.yaml's "brand" resource; cluster-scoped here so
		// that the sample's rule, which maps no namespace label, can
		// answer.
		{"cheese.io", "v1", "Brand", apimeta.RESTScopeRoot},
		{"my-group.example.com", "v1", "Widget", apimeta.RESTScopeNamespace},
		{"other.example.com", "v1", "Widget", apimeta.RESTScopeNamespace},
		{"monitoring.coreos.com", "v1", "ServiceMonitor", apimeta.RESTScopeNamespace},
	} {
		m.Add(schema.GroupVersionKind{Group: k.group, Version: k.version, Kind: k.kind}, k.scope)
	}
	return m
}

// mustCompile compiles a discovery rule that must be valid, and checks that
// config validation agrees.
func mustCompile(t testing.TB, r config.DiscoveryRule, external bool) *Rule {
	t.Helper()
	cfg := config.Config{Rules: []config.DiscoveryRule{r}}
	if external {
		cfg = config.Config{ExternalRules: []config.DiscoveryRule{r}}
	}
	if err := cfg.Validate("test.yaml"); err != nil {
		t.Fatalf("config.Validate: %v", err)
	}
	rule, err := Compile("rules[0] ("+r.DisplayName()+")", r, external, testMapper())
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rule
}

func mustSelector(t testing.TB, s string) k8slabels.Selector {
	t.Helper()
	sel, err := k8slabels.Parse(s)
	if err != nil {
		t.Fatalf("labels.Parse(%q): %v", s, err)
	}
	return sel
}

func mustParse(t testing.TB, q string) parser.Expr {
	t.Helper()
	expr, err := promql.ParseExpr(q)
	if err != nil {
		t.Fatalf("query %q does not parse: %v", q, err)
	}
	return expr
}

// vectorSelectors lists the series selectors of a query, in order.
func vectorSelectors(expr parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// sameQuery reports whether two queries do the same thing: equal once their
// matchers are sorted, with regexp matchers compared by what they match
// among probes rather than by how they are written. It lets a test state the
// query prometheus-adapter would send ("pod=~\"a|b\"") for a query Gantry
// writes differently ("pod=~\"(?:a|b)\"").
func sameQuery(t testing.TB, got, want string, probes []string) {
	t.Helper()
	g, w := mustParse(t, got), mustParse(t, want)
	gRes, wRes := normaliseRegexps(g), normaliseRegexps(w)
	if g.String() != w.String() {
		t.Errorf("query shape differs:\n got %s\nwant %s", g, w)
		return
	}
	for i := range gRes {
		for _, p := range probes {
			if gRes[i].Matches(p) != wRes[i].Matches(p) {
				t.Errorf("matcher %s and %s disagree on %q", gRes[i], wRes[i], p)
			}
		}
	}
}

// normaliseRegexps sorts each selector's matchers and replaces the values of
// regexp matchers by a placeholder, returning the originals in order.
func normaliseRegexps(expr parser.Expr) []*labels.Matcher {
	var res []*labels.Matcher
	for _, vs := range vectorSelectors(expr) {
		slices.SortFunc(vs.LabelMatchers, func(a, b *labels.Matcher) int {
			return strings.Compare(a.Name+a.Type.String(), b.Name+b.Type.String())
		})
		for i, m := range vs.LabelMatchers {
			if m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp {
				res = append(res, m)
				vs.LabelMatchers[i] = labels.MustNewMatcher(m.Type, m.Name, "REGEXP")
			}
		}
	}
	return res
}
