package rules

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

// TestLabelValuesByNameContext checks how LabelValuesByName is written
// where the template puts it. prometheus-adapter gives the values joined
// with "|", so a single value in an = matcher is matched literally; Gantry
// escapes them as a regexp, which is right in =~ and !~ but made
// {kube_node="node-1\\.example\\.com"} of node node-1.example.com, a query
// that matches nothing. In = and != the value must be the literal (the
// values joined with "|", as prometheus-adapter writes them), still escaped
// for the string literal; elsewhere the regexp.
func TestLabelValuesByNameContext(t *testing.T) {
	const node = "node-1.example.com"
	tests := []struct {
		name  string
		query string // metricsQuery, or logqlQuery with logql
		logql bool
		gr    schema.GroupResource
		ns    string
		names []string
		want  string
	}{{
		name:  "one name in an = matcher: the literal",
		query: `sum(<<.Series>>{kube_node="<<index .LabelValuesByName "node">>"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{kube_node="node-1.example.com"}) by (node)`,
	}, {
		name:  "one name in a != matcher: the literal",
		query: `sum(<<.Series>>{<<.LabelMatchers>>,kube_node!="<<index .LabelValuesByName "node">>"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{node="node-1.example.com",kube_node!="node-1.example.com"}) by (node)`,
	}, {
		name:  "one name in an =~ matcher: escaped as a regexp",
		query: `sum(<<.Series>>{kube_node=~"<<index .LabelValuesByName "node">>"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{kube_node=~"node-1\\.example\\.com"}) by (node)`,
	}, {
		name:  "the same value in both kinds of matcher of one query",
		query: `sum(<<.Series>>{a="<<.LabelValuesByName.node>>"}) by (<<.GroupBy>>) or sum(<<.Series>>{b=~"<<.LabelValuesByName.node>>"}) by (<<.GroupBy>>) or sum(<<.Series>>{c!~'<<.LabelValuesByName.node>>', d!='<<.LabelValuesByName.node>>'}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{a="node-1.example.com"}) by (node) or sum(x{b=~"node-1\\.example\\.com"}) by (node) or sum(x{c!~'node-1\\.example\\.com', d!='node-1.example.com'}) by (node)`,
	}, {
		name:  "single quotes, and spaces around the operator",
		query: `sum(<<.Series>>{kube_node = '<<index .LabelValuesByName "node">>'}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{kube_node = 'node-1.example.com'}) by (node)`,
	}, {
		name:  "a backtick literal",
		query: "sum(<<.Series>>{kube_node=`<<index .LabelValuesByName \"node\">>`}) by (<<.GroupBy>>)",
		gr:    Nodes, names: []string{node},
		want: "sum(x{kube_node=`node-1.example.com`}) by (node)",
	}, {
		name:  "more text around the value in the literal",
		query: `sum(<<.Series>>{instance="<<index .LabelValuesByName "node">>:9100"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{instance="node-1.example.com:9100"}) by (node)`,
	}, {
		name:  "several names in an = matcher: joined with | as prometheus-adapter writes them",
		query: `sum(<<.Series>>{kube_node="<<index .LabelValuesByName "node">>"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{"b.example.com", "a.example.com"},
		want: `sum(x{kube_node="b.example.com|a.example.com"}) by (node)`,
	}, {
		name:  "a name that would end the literal stays inside it",
		query: `sum(<<.Series>>{kube_node="<<index .LabelValuesByName "node">>"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{`x"} or vector(1) #`},
		want: `sum(x{kube_node="x\x22} or vector(1) #"}) by (node)`,
	}, {
		name:  "the namespace of a request: the literal in =",
		query: `sum(<<.Series>>{ns="<<index .LabelValuesByName "namespace">>",pod=~"<<index .LabelValuesByName "pod">>"}) by (<<.GroupBy>>)`,
		gr:    Pods, ns: "team.a", names: []string{"web.1", "web.2"},
		want: `sum(x{ns="team.a",pod=~"web\\.(?:1|2)"}) by (pod)`,
	}, {
		name:  "a comment with quotes before the matcher",
		query: "# the \"node\" label's = is literal\nsum(<<.Series>>{kube_node=\"<<index .LabelValuesByName \"node\">>\"}) by (<<.GroupBy>>)",
		gr:    Nodes, names: []string{node},
		want: "# the \"node\" label's = is literal\nsum(x{kube_node=\"node-1.example.com\"}) by (node)",
	}, {
		name:  "a regexp argument of label_replace: escaped as a regexp",
		query: `label_replace(sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>), "short", "$1", "node", "(<<index .LabelValuesByName "node">>)")`,
		gr:    Nodes, names: []string{node},
		want: `label_replace(sum(x{node="node-1.example.com"}) by (node), "short", "$1", "node", "(node-1\\.example\\.com)")`,
	}, {
		name:  "a template that compares the value sees the regexp form, as before",
		query: `sum(<<.Series>>{kube_node="<<if eq (index .LabelValuesByName "node") "node-1\\\\.example\\\\.com">>match<<else>>other<<end>>"}) by (<<.GroupBy>>)`,
		gr:    Nodes, names: []string{node},
		want: `sum(x{kube_node="match"}) by (node)`,
	}, {
		name:  "LogQL: = and |= take the literal, =~ and |~ the regexp",
		logql: true,
		query: `sum by (<<.GroupBy>>) (rate({node="<<.LabelValuesByName.node>>"} |= "<<.LabelValuesByName.node>>" |~ "<<.LabelValuesByName.node>>" | host=~"<<.LabelValuesByName.node>>" [1m]))`,
		gr:    Nodes, names: []string{node},
		want: `sum by (node) (rate({node="node-1.example.com"} |= "node-1.example.com" |~ "node-1\\.example\\.com" | host=~"node-1\\.example\\.com" [1m]))`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rule := config.DiscoveryRule{
				SeriesQuery: "x",
				Resources:   config.ResourceMapping{Template: "<<.Resource>>"},
			}
			if tc.logql {
				rule.SeriesQuery, rule.LogQLQuery, rule.Name.As = `{app="x"}`, tc.query, "x"
			} else {
				rule.MetricsQuery = tc.query
			}
			r := mustCompile(t, rule, false)
			q, err := r.ObjectQuery("x", tc.gr, tc.ns, tc.names, nil)
			if err != nil {
				t.Fatalf("ObjectQuery: %v", err)
			}
			if diff := cmp.Diff(tc.want, q.Text); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if !tc.logql {
				mustParse(t, q.Text)
			}
		})
	}
}
