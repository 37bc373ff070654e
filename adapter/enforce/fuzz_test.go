package enforce

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/adapter/config"
)

// testParser parses as Prometheus does with experimental functions on; the
// fuzz target checks the results with it, not with the code under test.
var testParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})

// escapeAttempts are issue 16's ways out of a namespace, as PromQL.
var escapeAttempts = []string{
	`sum(rate(http_requests_total[1m]))`,
	`sum(rate(http_requests_total{namespace="team-b"}[1m]))`,
	`http_requests_total{namespace=~".+"}`,
	`{__name__=~".+"}`,
	`sum(a) or sum(b{namespace="team-b"})`,
	`a unless on () b`,
	`a * on (namespace) group_left () b`,
	`max_over_time(rate(x[1m])[10m:30s] offset 5m)`,
	`label_replace(x, "namespace", "team-b", "", "")`,
	`label_replace(x, "ns", "$1", "namespace", "(.*)")`,
	`absent(nonexistent{job="x"})`,
	`info(rate(http_requests_total[1m]))`,
	`rate(x[5m] @ 1700000000 offset 1h)`,
	`x{path="/a}{b",namespace="team-a"}`,
	`{"http.requests", "namespace"="team-a"}`,
	`count_values("namespace", x)`,
	`x # {namespace="team-b"}`,
	`vector(1) + time()`,
}

// FuzzPromQL confines PromQL expressions to namespace "team-a" and checks
// the result with the parser, independently of the code under test: either
// enforcement refused with an *Error, or the result parses, every vector
// selector in it has exactly one matcher on the namespace label and that
// is namespace="team-a", it calls no refused function, and, with the
// namespace matchers taken out of both, it is the expression it was given.
// Seeds: the query templates of the repository's rules (the namespace query
// corpus, the shipped ConfigMap, the config test files) rendered with
// sample arguments, and the escape attempts of issue 16.
//
//	go test ./adapter/enforce -run '^$' -fuzz FuzzPromQL -fuzztime 60s
func FuzzPromQL(f *testing.F) {
	for _, q := range repositoryQueries(f) {
		f.Add(q)
	}
	for _, q := range escapeAttempts {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		out, err := PromQL(query, label, ns)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("PromQL(%q) error %v (%T) is not an *Error", query, err, err)
			}
			return
		}
		got, err := testParser.ParseExpr(out)
		if err != nil {
			t.Fatalf("PromQL(%q) = %q, which does not parse: %v", query, out, err)
		}
		parser.Inspect(got, func(n parser.Node, _ []parser.Node) error {
			switch n := n.(type) {
			case *parser.VectorSelector:
				var on []*labels.Matcher
				for _, m := range n.LabelMatchers {
					if m.Name == label {
						on = append(on, m)
					}
				}
				if len(on) != 1 || on[0].Type != labels.MatchEqual || on[0].Value != ns {
					t.Errorf("PromQL(%q) = %q: selector %s has namespace matchers %v, want exactly [namespace=%q]", query, out, n, on, ns)
				}
			case *parser.Call:
				if n.Func.Name == "info" {
					t.Errorf("PromQL(%q) = %q calls info()", query, out)
				}
			}
			return nil
		})
		in, err := testParser.ParseExpr(query)
		if err != nil {
			t.Fatalf("PromQL accepted %q, which does not parse: %v", query, err)
		}
		if a, b := withoutNamespace(in), withoutNamespace(got); a != b {
			t.Errorf("PromQL(%q) changed more than the namespace:\n in: %s\nout: %s", query, a, b)
		}
	})
}

// withoutNamespace prints expr with the matchers on the namespace label
// taken out of every selector.
func withoutNamespace(expr parser.Expr) string {
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		kept := vs.LabelMatchers[:0:0]
		for _, m := range vs.LabelMatchers {
			if m.Name != label {
				kept = append(kept, m)
			}
		}
		vs.LabelMatchers = kept
		if !model.IsValidLegacyMetricName(vs.Name) {
			vs.Name = ""
		}
		return nil
	})
	return expr.String()
}

// repositoryQueries are the query templates and series selectors of the
// repository's rule files, rendered with sample arguments.
func repositoryQueries(t testing.TB) []string {
	t.Helper()
	files := []string{
		"../rules/testdata/namespace-query-corpus.yaml",
		"../../deploy/manifests/configmap.yaml",
	}
	good, err := filepath.Glob("../config/testdata/*.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, good...)
	var out []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tmpl := range queryFields(&doc) {
			if q, ok := renderSample(tmpl); ok {
				out = append(out, q)
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d queries found in %v; the seed files moved?", len(out), files)
	}
	return out
}

// queryFields collects the values of the query and selector fields of a
// YAML document, reading embedded config files (a ConfigMap's config.yaml)
// as YAML too.
func queryFields(n *yaml.Node) []string {
	var out []string
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			out = append(out, queryFields(c)...)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch {
			case v.Kind == yaml.ScalarNode && (k == "seriesQuery" || strings.HasSuffix(k, "Query") && k != "logqlQuery"):
				out = append(out, v.Value)
			case v.Kind == yaml.ScalarNode && strings.HasSuffix(k, ".yaml"):
				var doc yaml.Node
				if yaml.Unmarshal([]byte(v.Value), &doc) == nil {
					out = append(out, queryFields(&doc)...)
				}
			default:
				out = append(out, queryFields(v)...)
			}
		}
	}
	return out
}

// renderSample renders a query template as adapter/config checks it: for
// two pods of the namespace.
func renderSample(text string) (string, bool) {
	tmpl, err := config.ParseQueryTemplate(text)
	if err != nil {
		return "", false
	}
	tmpl.Option("missingkey=zero")
	var b strings.Builder
	err = tmpl.Execute(&b, config.QueryArgs{
		Series:            "sample_metric",
		LabelMatchers:     `namespace="team-a",pod=~"a|b"`,
		LabelValuesByName: map[string]string{"namespace": "team-a", "pod": "a|b"},
		GroupBy:           "pod",
		GroupBySlice:      []string{"pod"},
	})
	return b.String(), err == nil
}

// FuzzLogQL confines LogQL queries to namespace "team-a": either an *Error,
// or a query that comes back unchanged when confined again (each stream
// selector already has exactly the one matcher) and in which every
// stream selector, as Prometheus' parser reads its matchers, has it.
//
//	go test ./adapter/enforce -run '^$' -fuzz FuzzLogQL -fuzztime 60s
func FuzzLogQL(f *testing.F) {
	for _, q := range []string{
		`sum by (pod) (rate({app="web", namespace!="", pod=~"a|b"} |= "error" [2m]))`,
		`count_over_time({namespace="team-b"}[1m])`,
		`sum(count_over_time({app="web"}[1m])) / sum(count_over_time({app="api"}[1m]))`,
		"sum(count_over_time({app=\"web\"} |= \"{namespace=\\\"team-b\\\"}\" | line_format `{{.namespace}}` [1m]))",
		`count_over_time({app="a}b"} | json | namespace="team-b" [1m])`,
		`count_over_time({app="web"} |= '"' [1m]) or count_over_time({namespace="team-b"} |= '"' [1m])`,
		"{app=\"web\"} # {namespace=\"team-b\"}",
		`vector(1)`,
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		out, err := LogQL(query, label, ns)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("LogQL(%q) error %v (%T) is not an *Error", query, err, err)
			}
			return
		}
		again, err := LogQL(out, label, ns)
		if err != nil || again != out {
			t.Fatalf("LogQL(%q) = %q, which confined again is %q, %v", query, out, again, err)
		}
		n := 0
		if _, _, err := rewriteStreams(out, func(sel string) (string, error) {
			n++
			ms, err := testParser.ParseMetricSelector(sel)
			if err != nil {
				t.Errorf("LogQL(%q) = %q: stream selector %s does not parse: %v", query, out, sel, err)
				return sel, nil
			}
			var on []*labels.Matcher
			for _, m := range ms {
				if m.Name == label {
					on = append(on, m)
				}
			}
			if len(on) != 1 || on[0].Type != labels.MatchEqual || on[0].Value != ns {
				t.Errorf("LogQL(%q) = %q: stream selector %s has namespace matchers %v", query, out, sel, on)
			}
			return sel, nil
		}); err != nil || n == 0 {
			t.Errorf("LogQL(%q) = %q: %d stream selectors, %v", query, out, n, err)
		}
	})
}
