package rules

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/gantry-dev/gantry/adapter/config"
)

// FuzzSelectorMatchers translates metric selectors into queries and checks
// the parsed query, not the text: its series selector holds exactly the
// matchers intended — one per selector requirement, in order, on the
// requirement's label, then the namespace (and for object queries the
// object), and the metric name — and each selector matcher agrees with the
// Kubernetes requirement on every probe value. Prometheus cannot tell an
// absent label from an empty one, so for "" either Kubernetes answer
// (absent, or present and empty) is accepted.
//
// selector is parsed as the API server parses ?metricSelector= (labels.Parse,
// which validates keys and values); key and value also make an unvalidated
// equality selector, so that any string is tried as a value, as no request
// can send but the translation must still contain.
//
//	go test ./adapter/rules -run '^$' -fuzz FuzzSelectorMatchers -fuzztime 60s
func FuzzSelectorMatchers(f *testing.F) {
	for _, seed := range []struct{ selector, key, value, probe string }{
		{"queue=orders", "queue", "orders", "orders"},
		{"a in (b,c),d notin (e),f,!g", "a", "b|c", "b"},
		{"a==b,a!=c", "a", `x"} or vector(1) #`, "x"},
		{"a in (x.y,x-z,xzy)", "a", ".*", "xzy"},
		{"a.b/c=d", "a.b/c", "d", "d"},
		{"a>1,b<2", "b", `\`, `\\`},
		{"namespace=other,pod in (a,b)", "namespace", "", ""},
		{"a in (,b)", "__name__", "up", ""},
		{"a notin (,b)", "a", "é\n\x00", "é"},
		{"a=" + strings.Repeat("x", 63), "a", strings.Repeat("x", 64), strings.Repeat("x", 62)},
		{"kubernetes.io/name=a", "a", "'`", "'"},
	} {
		f.Add(seed.selector, seed.key, seed.value, seed.probe)
	}
	external := mustCompile(f, config.DiscoveryRule{
		SeriesQuery:  `{__name__="queue_depth",queue!=""}`,
		MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)`,
		Resources:    config.ResourceMapping{Overrides: map[string]config.GroupResource{"namespace": {Resource: "namespace"}}},
	}, true)
	object := mustCompile(f, config.DiscoveryRule{
		SeriesQuery:  `http_requests_total{namespace!="",pod!=""}`,
		MetricsQuery: `sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"namespace": {Resource: "namespace"}, "pod": {Resource: "pod"},
		}},
	}, false)

	f.Fuzz(func(t *testing.T, selector, key, value, probe string) {
		if len(selector)+len(key)+len(value)+len(probe) > 4096 {
			t.Skip()
		}
		check := func(form string, sel k8slabels.Selector) {
			reqs, _ := sel.Requirements()
			var reject string
			for _, r := range reqs {
				switch {
				case !model.LabelName(r.Key()).IsValidLegacy():
					reject = "label name"
				case strings.HasPrefix(r.Key(), model.ReservedLabelPrefix):
					reject = "reserved label name"
				case r.Operator() == selection.GreaterThan || r.Operator() == selection.LessThan:
					reject = "operator"
				}
			}
			ms, err := SelectorMatchers(sel)
			var ise *InvalidSelectorError
			switch {
			case err != nil && !errors.As(err, &ise):
				t.Fatalf("%s %q: error %v (%T), want an *InvalidSelectorError", form, sel, err, err)
			case err != nil && reject == "":
				t.Fatalf("%s %q rejected: %v", form, sel, err)
			case err == nil && reject != "":
				t.Fatalf("%s %q: accepted with an invalid %s: %v", form, sel, reject, ms)
			case err != nil:
				return
			}
			if len(ms) != len(reqs) {
				t.Fatalf("%s %q: %d matchers for %d requirements", form, sel, len(ms), len(reqs))
			}
			valid := true
			for _, r := range reqs {
				for _, v := range r.Values().UnsortedList() {
					valid = valid && utf8.ValidString(v)
				}
			}

			probes := []string{probe, "", "x"}
			for _, r := range reqs {
				for _, v := range r.Values().UnsortedList() {
					probes = append(probes, v, v+"x", "x"+v, v+v, v+"|"+v, `\`+v)
				}
				if vs := r.Values().List(); len(vs) > 1 {
					probes = append(probes, strings.Join(vs, "|"), strings.Join(vs, ""))
				}
			}

			qe, errE := external.ExternalQuery("queue_depth", "shop", sel)
			qo, errO := object.ObjectQuery("http_requests_total", Pods, "shop", []string{"web-0"}, sel)
			for _, q := range []struct {
				name, series string
				query        Query
				err          error
				tail         []*labels.Matcher
			}{
				{"external query", "queue_depth", qe, errE, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "namespace", "shop")}},
				{"object query", "http_requests_total", qo, errO, []*labels.Matcher{
					labels.MustNewMatcher(labels.MatchEqual, "namespace", "shop"),
					labels.MustNewMatcher(labels.MatchEqual, "pod", "web-0"),
				}},
			} {
				if q.err != nil {
					if !valid {
						continue // label values must be UTF-8: Prometheus refuses the query
					}
					t.Fatalf("%s %q: %s: %v", form, sel, q.name, q.err)
				}
				expr, err := promql.ParseExpr(q.query.Text)
				if err != nil {
					t.Fatalf("%s %q: %s %s does not parse: %v", form, sel, q.name, q.query.Text, err)
				}
				vs := vectorSelectors(expr)
				if len(vs) != 1 {
					t.Fatalf("%s %q: %s %s has %d series selectors, want 1", form, sel, q.name, q.query.Text, len(vs))
				}
				var got []*labels.Matcher
				names := 0
				for _, m := range vs[0].LabelMatchers {
					if m.Name == model.MetricNameLabel {
						names++
						if m.Type != labels.MatchEqual || m.Value != q.series {
							t.Errorf("%s %q: %s: metric name matcher %s", form, sel, q.name, m)
						}
						continue
					}
					got = append(got, m)
				}
				if names != 1 || len(got) != len(reqs)+len(q.tail) {
					t.Fatalf("%s %q: %s %s: %d name matchers and %d others, want 1 and %d", form, sel, q.name, q.query.Text, names, len(got), len(reqs)+len(q.tail))
				}
				for i, want := range q.tail {
					if m := got[len(reqs)+i]; m.String() != want.String() {
						t.Errorf("%s %q: %s: matcher %s, want %s", form, sel, q.name, m, want)
					}
				}
				for i, r := range reqs {
					m := got[i]
					if m.Name != r.Key() {
						t.Fatalf("%s %q: %s: matcher %d is %s, want one on %q", form, sel, q.name, i, m, r.Key())
					}
					for _, p := range probes {
						if !utf8.ValidString(p) {
							continue
						}
						prom := m.Matches(p)
						if p == "" {
							absent, empty := r.Matches(k8slabels.Set{}), r.Matches(k8slabels.Set{r.Key(): ""})
							if prom != absent && prom != empty {
								t.Errorf("%s %q: %s: %s on an absent/empty label: %v, Kubernetes says %v (absent) and %v (empty)", form, sel, q.name, m, prom, absent, empty)
							}
							continue
						}
						if k8s := r.Matches(k8slabels.Set{r.Key(): p}); prom != k8s {
							t.Errorf("%s %q: %s: %s on %q: %v, Kubernetes says %v", form, sel, q.name, m, p, prom, k8s)
						}
					}
				}
			}
		}

		if sel, err := k8slabels.Parse(selector); err == nil {
			check("selector", sel)
		}
		check("unvalidated selector", k8slabels.SelectorFromValidatedSet(k8slabels.Set{key: value}))
	})
}
