package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSyntaxErrorLine checks that a YAML syntax error names the line at
// fault. yaml.v3 names, for errors of its parser, the line (counted from 0)
// where the enclosing mapping or list begins, which may be far above: in
// prometheus-adapter's docs/sample-config.yaml a double-quoted query
// holding double quotes on line 30 was reported at line 12.
func TestSyntaxErrorLine(t *testing.T) {
	const hint = ` (a double-quoted value ends at the next "; single-quote a value that holds ", writing each ' in it as '')`
	lines := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	tests := []struct {
		name string
		yaml string
		want string
	}{{
		name: "double quotes inside a double-quoted query, deep in a long rule",
		yaml: lines(
			"rules:",
			"# a comment",
			"",
			"- seriesQuery: '{__name__=~\"^container_.*\",namespace!=\"\",pod!=\"\"}'",
			"  resources:",
			"    overrides:",
			"      namespace: {resource: namespace}",
			"      pod: {resource: pod}",
			"  name:",
			"    matches: \"^container_(.*)_seconds_total$\"",
			"  metricsQuery: \"sum(rate(<<.Series>>{<<.LabelMatchers>>,container!=\"POD\"}[2m])) by (<<.GroupBy>>)\"",
			"- seriesQuery: 'up'",
		),
		want: "rules.yaml:11: did not find expected key" + hint,
	}, {
		name: "the same in the second rule",
		yaml: lines(
			"rules:",
			"- seriesQuery: 'a{namespace!=\"\"}'",
			"  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'",
			"- seriesQuery: 'b{namespace!=\"\"}'",
			"  resources: {template: \"<<.Resource>>\"}",
			"  metricsQuery: \"sum(<<.Series>>{<<.LabelMatchers>>,job=\"b\"}) by (<<.GroupBy>>)\"",
		),
		want: "rules.yaml:6: did not find expected key" + hint,
	}, {
		name: "a stray quote at the top level",
		yaml: lines(
			"rules: []",
			"externalRules: \"a\"b\"",
		),
		want: "rules.yaml:2: did not find expected key" + hint,
	}, {
		name: "a single-quoted value with a single quote in it",
		yaml: lines(
			"rules:",
			"- seriesQuery: 'a'",
			"  metricsQuery: 'sum(a{b='c'})'",
		),
		want: "rules.yaml:3: did not find expected key (a single-quoted value ends at the next '; write each ' in it as '')",
	}, {
		name: "a list item indented like a key",
		yaml: lines(
			"rules:",
			"- seriesQuery: 'a'",
			"  seriesFilters:",
			"  - is: a",
			"   - isNot: b",
		),
		want: "rules.yaml:5: did not find expected key",
	}, {
		name: "a key among list items",
		yaml: lines(
			"rules:",
			"  - seriesQuery: 'a'",
			"  metricsQuery: 'b'",
		),
		want: "rules.yaml:3: did not find expected '-' indicator",
	}, {
		name: "scanner errors kept their line: a key inside a plain value",
		yaml: lines(
			"rules:",
			"- seriesQuery: a: b",
		),
		want: "rules.yaml:2: mapping values are not allowed in this context",
	}, {
		name: "an unterminated quoted value: the line it starts on",
		yaml: lines(
			"rules:",
			"- seriesQuery: 'a'",
			"  metricsQuery: \"sum(a)",
			"  name: {as: b}",
		),
		want: "rules.yaml:3: found unexpected end of stream",
	}, {
		name: "no final newline",
		yaml: "rules:\n- seriesQuery: 'a'\n  metricsQuery: \"x{a=\"b\"}\"",
		want: "rules.yaml:3: did not find expected key" + hint,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "rules.yaml")
			if err == nil {
				t.Fatal("Parse succeeded, want a syntax error")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}
