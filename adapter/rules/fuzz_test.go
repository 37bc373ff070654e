package rules

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/gantry-dev/gantry/adapter/config"
)

// FuzzMatcher builds matchers from arbitrary name lists (names separated by
// \x1f in list) and checks that each parses inside a selector and matches
// exactly the names given: every one of them, and no other string the fuzzer
// came up with (probe, and variations of the names). The same holds for the
// LabelValuesByName form pasted into double- or single-quoted literals, alone
// and as part of a larger regexp. Rendered through a template, a
// LabelValuesByName value inside an = or != matcher is the names joined
// with "|" (one name: the name), matched literally, and one inside =~ the
// regexp; neither can change the query's shape.
//
//	go test ./adapter/rules -run '^$' -fuzz FuzzMatcher -fuzztime 60s
func FuzzMatcher(f *testing.F) {
	for _, seed := range []struct{ list, probe string }{
		{"pod1\x1fpod2", "pod1|pod2"},
		{"web-7d9f8c6b5-abcde\x1fweb-7d9f8c6b5-fghij\x1fweb-5c6d7e8f9-klmno", "web-7d9f8c6b5-"},
		{"a\x1fa\x1fb", "ab"},
		{"\x1fa", ""},
		{"", "a"},
		{`x"} or vector(1) #`, `x`},
		{"x`} or vector(1)\x1fx'} or vector(1)", "x"},
		{`a\` + "\x1f" + `a\\`, `a\\\`},
		{".*\x1fa|b\x1f(?i)A\x1f[z]\x1f^$", "a"},
		{"é1\x1fè2\x1fé", "\xc3"},
		{"ip-10-0-1-17.ec2.internal\x1fip-10-0-1-18.ec2.internal", "ip-10-0-1-17xec2xinternal"},
		{"node-1.example.com", `node-1\.example\.com`},
		{"\x01 0\x02", "\x01"},
		{"line\nbreak\x1f\x00\x1f\x7f", "line"},
		{strings.Repeat("a", 40) + "\x1f" + strings.Repeat("a", 41), strings.Repeat("a", 39)},
	} {
		f.Add(seed.list, seed.probe)
	}
	f.Fuzz(func(t *testing.T, list, probe string) {
		var names []string
		if list != "" {
			names = strings.Split(list, "\x1f")
		}
		if len(list)+len(probe) > 4096 || len(names) > 200 {
			// Long lists are TestLongNameList's; here they would only make
			// each run slow (regexps of more than 256 alternatives are
			// matched without Prometheus' set optimisation).
			t.Skip()
		}
		valid := utf8.ValidString(list)

		probes := []string{probe, "", "x"}
		for i, n := range names {
			probes = append(probes, n+"x", "x"+n, n+n, n+"|"+n, `\`+n, n+`\`)
			if n != "" {
				_, size := utf8.DecodeLastRuneInString(n)
				probes = append(probes, n[:len(n)-size])
			}
			if i > 0 {
				probes = append(probes, names[i-1]+n)
			}
		}
		want := func(s string) bool { return slices.Contains(names, s) }

		check := func(form, query string, matches func(*labels.Matcher, string) bool) {
			expr, err := promql.ParseExpr(query)
			if err != nil {
				if !valid {
					return // label values must be UTF-8: Prometheus refuses the regexp
				}
				t.Fatalf("%s: %s does not parse: %v", form, query, err)
			}
			vs := vectorSelectors(expr)
			if len(vs) != 1 || len(vs[0].LabelMatchers) != 2 {
				t.Fatalf("%s: %s has changed shape: %s", form, query, expr)
			}
			m := vs[0].LabelMatchers[0]
			if m.Name != "l" {
				t.Fatalf("%s: %s: first matcher is %s", form, query, m)
			}
			for _, n := range names {
				if !matches(m, n) {
					t.Errorf("%s: %s does not match %q", form, m, n)
				}
			}
			for _, p := range probes {
				if !want(p) && matches(m, p) {
					t.Errorf("%s: %s matches %q, not in %q", form, m, p, names)
				}
			}
		}
		plain := func(m *labels.Matcher, s string) bool { return m.Matches(s) }

		// LabelMatchers: a regexp matcher of the names...
		re := Matcher{Label: "l", Type: labels.MatchRegexp, Values: names}
		check("=~", "{"+re.String()+`,__name__="x"}`, plain)
		// ...its negation...
		re.Type = labels.MatchNotRegexp
		check("!~", "{"+re.String()+`,__name__="x"}`, func(m *labels.Matcher, s string) bool { return !m.Matches(s) })
		// ...and an equality matcher of a single name.
		if len(names) == 1 {
			eq := Matcher{Label: "l", Type: labels.MatchEqual, Values: names}
			q := "{" + eq.String() + `,__name__="x"}`
			check("=", q, plain)
			if expr, err := promql.ParseExpr(q); err == nil {
				if got := vectorSelectors(expr)[0].LabelMatchers[0].Value; got != names[0] {
					t.Errorf("=: value %q, want %q", got, names[0])
				}
			}
		}

		// LabelValuesByName, in the quotes a template may put around it.
		body := stringBody(alternation(names, true))
		check(`"LabelValuesByName"`, `{l=~"`+body+`",__name__="x"}`, plain)
		check(`'LabelValuesByName'`, `{l=~'`+body+`',__name__="x"}`, plain)
		// As part of a larger regexp it stays one group.
		check(`"LabelValuesByName-z"`, `{l=~"`+body+`-z",__name__="x"}`, func(m *labels.Matcher, s string) bool {
			return m.Matches(s + "-z")
		})

		// LabelValuesByName rendered by a template into matchers of each
		// kind, on one label or on several in one query.
		ms := []Matcher{{Label: "l", Type: labels.MatchRegexp, Values: names}}
		literal := strings.Join(names, "|")
		for _, text := range []string{
			`{l="<<.LabelValuesByName.l>>",__name__="x"}`,
			`{l!='<<.LabelValuesByName.l>>',__name__="x"}`,
			`{l=~"<<.LabelValuesByName.l>>",__name__="x"}`,
			`{l=~'<<.LabelValuesByName.l>>',__name__="x"} or {l="<<.LabelValuesByName.l>>",__name__="x"} or {l!~"<<.LabelValuesByName.l>>",__name__="x"}`,
		} {
			tmpl, err := config.ParseQueryTemplate(text)
			if err != nil {
				t.Fatal(err)
			}
			q, err := Render(tmpl, "rules[0] (x)", "x", ms, []string{"l"})
			if err != nil {
				if !valid {
					continue // label values must be UTF-8: Prometheus refuses the query
				}
				t.Fatalf("%s: %v", text, err)
			}
			expr, err := promql.ParseExpr(q)
			if err != nil {
				t.Fatalf("%s: rendered %s does not parse: %v", text, q, err)
			}
			vs := vectorSelectors(expr)
			if len(vs) != strings.Count(text, "{") {
				t.Fatalf("%s: rendered %s has changed shape: %s", text, q, expr)
			}
			for _, v := range vs {
				if len(v.LabelMatchers) != 2 || v.LabelMatchers[0].Name != "l" || v.LabelMatchers[1].String() != `__name__="x"` {
					t.Fatalf("%s: rendered %s has changed shape: %s", text, q, expr)
				}
				m := v.LabelMatchers[0]
				switch m.Type {
				case labels.MatchEqual, labels.MatchNotEqual:
					if m.Value != literal {
						t.Errorf("%s: rendered %s: %s, want the value %q", text, q, m, literal)
					}
				case labels.MatchRegexp, labels.MatchNotRegexp:
					matches := m.Matches
					if m.Type == labels.MatchNotRegexp {
						matches = func(s string) bool { return !m.Matches(s) }
					}
					for _, n := range names {
						if !matches(n) {
							t.Errorf("%s: rendered %s: %s does not match %q", text, q, m, n)
						}
					}
					for _, p := range probes {
						if !want(p) && matches(p) {
							t.Errorf("%s: rendered %s: %s matches %q, not in %q", text, q, m, p, names)
						}
					}
				}
			}
		}
	})
}
