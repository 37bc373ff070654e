// Package enforce confines a query to one namespace: every selector of a
// PromQL expression, series selector or LogQL query gets exactly one
// namespace="<namespace>" matcher, and anything that could read series of
// another namespace is refused.
//
// It is what makes a namespaced rule (a MetricRule) unable to read other
// namespaces' data. adapter/rules passes every query a confined rule
// renders through it before the query is sent (a rule that renders the
// same text again sends what this package returned for it the first
// time: the result depends on the text, label and namespace alone), and
// the seriesQuery it lists series with. It works on the parsed expression, not on text: the
// PromQL parser finds every selector (of vectors, ranges, subqueries and
// function arguments), and the rewritten expression is printed from the
// tree and then parsed and checked once more, so that a printing mistake
// cannot send a query that escapes.
package enforce

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Error is a query that cannot be confined to the namespace. Reason says
// why, naming the selector, matcher or function at fault.
type Error struct{ Reason string }

func (e *Error) Error() string { return e.Reason }

func errorf(format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// promql parses as adapter/config does: experimental functions are parsed,
// and then judged by the allow-list like any other function.
var promql = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})

// PromQL confines a PromQL expression to namespace: in every vector
// selector (including those of range selectors, subqueries and function
// arguments) a matcher label="namespace" or label!="" is dropped and
// exactly one label="namespace" matcher is added. It fails when the query
// does not parse, when a selector has any other matcher on label (another
// value, != another value, =~ or !~, even one that would match namespace), when the query calls a function that is not
// on the allow-list (such as info(), which reads series no selector names),
// or when it writes label into its result (label_replace, label_join,
// count_values), which would make the namespace's data claim another one.
func PromQL(query, label, namespace string) (string, error) {
	if err := checkTarget(label, namespace); err != nil {
		return "", err
	}
	expr, err := promql.ParseExpr(query)
	if err != nil {
		return "", errorf("does not parse: %s", firstLine(err.Error()))
	}
	if err := confine(expr, label, namespace); err != nil {
		return "", err
	}
	out := expr.String()
	if err := Check(out, label, namespace); err != nil {
		// Printing the tree lost or changed something: never send it.
		return "", errorf("the confined query fails its own check (%s): %s", err, out)
	}
	return out, nil
}

// Check reports whether query is confined to namespace: it parses, every
// vector selector has exactly one matcher on label, the equality with
// namespace, and it calls only allowed functions and does not write label.
// PromQL's output always passes.
func Check(query, label, namespace string) error {
	expr, err := promql.ParseExpr(query)
	if err != nil {
		return errorf("does not parse: %s", firstLine(err.Error()))
	}
	var found error
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if err := checkNode(n, label); err != nil {
			found = err
			return err
		}
		if vs, ok := n.(*parser.VectorSelector); ok && !confined(vs.LabelMatchers, label, namespace) {
			found = errorf("selector %s is not confined to %s=%q", vs, label, namespace)
			return found
		}
		return nil
	})
	return found
}

// confined reports whether ms has exactly one matcher on label, the
// equality with namespace.
func confined(ms []*labels.Matcher, label, namespace string) bool {
	n := 0
	for _, m := range ms {
		if m.Name != label {
			continue
		}
		if m.Type != labels.MatchEqual || m.Value != namespace {
			return false
		}
		n++
	}
	return n == 1
}

// confine rewrites the selectors of expr in place.
func confine(expr parser.Expr, label, namespace string) error {
	var found error
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if err := checkNode(n, label); err != nil {
			found = err
			return err
		}
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		ms, err := confineMatchers(vs.LabelMatchers, vs.String, label, namespace)
		if err != nil {
			found = err
			return err
		}
		vs.LabelMatchers = ms
		if vs.Name != "" && !model.LegacyValidation.IsValidMetricName(vs.Name) {
			// The printer writes the name bare; as a __name__ matcher
			// it reads back the same.
			vs.Name = ""
		}
		return nil
	})
	return found
}

// checkNode refuses functions off the allow-list and expressions that
// write label into their result.
func checkNode(n parser.Node, label string) error {
	switch n := n.(type) {
	case *parser.Call:
		name := n.Func.Name
		if why, refused := refusedFunctions[name]; refused {
			return errorf("function %s() is not allowed in a namespaced rule: %s", name, why)
		}
		if !allowedFunctions[name] {
			return errorf("function %s() is not allowed in a namespaced rule: it is not on Gantry's list of functions known to read only the series their selectors name", name)
		}
		if name == "label_replace" || name == "label_join" {
			dst, ok := stringArg(n.Args, 1)
			if !ok {
				return errorf("%s(): the destination label must be a string literal in a namespaced rule", name)
			}
			if dst == label {
				return errorf("%s() writes the label %q, which must keep naming the rule's namespace", name, label)
			}
		}
	case *parser.AggregateExpr:
		if n.Op == parser.COUNT_VALUES {
			dst, ok := stringExpr(n.Param)
			if !ok {
				return errorf("count_values: the label must be a string literal in a namespaced rule")
			}
			if dst == label {
				return errorf("count_values writes the label %q, which must keep naming the rule's namespace", label)
			}
		}
	}
	return nil
}

func stringArg(args parser.Expressions, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	return stringExpr(args[i])
}

func stringExpr(e parser.Expr) (string, bool) {
	for {
		switch x := e.(type) {
		case *parser.ParenExpr:
			e = x.Expr
		case *parser.StringLiteral:
			return x.Val, true
		default:
			return "", false
		}
	}
}

// confineMatchers drops label="namespace" and label!="" from ms, refuses
// any other matcher on label, and appends the one label="namespace". what
// names the selector in errors (called only then: printing a selector
// costs more than confining it).
//
// label!="" is implied by the equality, and it is how nearly every
// prometheus-adapter rule says that its series have a namespace
// (`{__name__=~"...",namespace!="",pod!=""}`), so such rules are accepted
// unchanged. Any other matcher on the label is refused, even one the
// namespace would match (namespace=~"team-a", namespace!="team-b"): a rule
// names its namespace in one way only, and a reader of the rule never has
// to work out what a regexp matches to know what it reads.
func confineMatchers(ms []*labels.Matcher, what func() string, label, namespace string) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(ms)+1)
	for _, m := range ms {
		if m.Name != label {
			out = append(out, m)
			continue
		}
		if m.Type == labels.MatchEqual && m.Value == namespace || m.Type == labels.MatchNotEqual && m.Value == "" {
			continue
		}
		return nil, errorf("%s in %s: a namespaced rule reads only %s=%q", m, what(), label, namespace)
	}
	return append(out, labels.MustNewMatcher(labels.MatchEqual, label, namespace)), nil
}

// text is what confineMatchers names a selector with when its text is at
// hand.
func text(s string) func() string { return func() string { return s } }

// checkTarget refuses a label or namespace that cannot confine anything.
func checkTarget(label, namespace string) error {
	if !model.LegacyValidation.IsValidLabelName(label) || strings.HasPrefix(label, model.ReservedLabelPrefix) {
		return errorf("%q cannot be the namespace label: it must be a label name not starting with %q", label, model.ReservedLabelPrefix)
	}
	if namespace == "" {
		return errorf("no namespace to confine the query to")
	}
	return nil
}

// Selector confines a series selector (a seriesQuery such as
// `{__name__=~"http_.*"}` or `http_requests_total{job="x"}`) as PromQL
// confines each of its selectors, and returns it as selector text.
func Selector(selector, label, namespace string) (string, error) {
	if err := checkTarget(label, namespace); err != nil {
		return "", err
	}
	ms, err := promql.ParseMetricSelector(selector)
	if err != nil {
		return "", errorf("not a series selector: %s", firstLine(err.Error()))
	}
	ms, err = confineMatchers(ms, text(selector), label, namespace)
	if err != nil {
		return "", err
	}
	vs := &parser.VectorSelector{LabelMatchers: ms}
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual && model.LegacyValidation.IsValidMetricName(m.Value) {
			vs.Name = m.Value
		}
	}
	out := vs.String()
	back, err := promql.ParseMetricSelector(out)
	if err != nil || !confined(back, label, namespace) {
		return "", errorf("the confined selector fails its own check: %s", out)
	}
	return out, nil
}

// LogQL confines a LogQL query: every stream selector {...} outside string
// literals is read with PromQL's matcher syntax and confined as PromQL
// confines a vector selector. A query without a stream selector is
// refused, and so are single quotes and comments outside string literals,
// which this reader does not interpret as Loki does and which could hide a
// selector from it.
func LogQL(query, label, namespace string) (string, error) {
	if err := checkTarget(label, namespace); err != nil {
		return "", err
	}
	out, n, err := rewriteStreams(query, func(sel string) (string, error) {
		ms, err := promql.ParseMetricSelector(sel)
		if err != nil {
			return "", errorf("stream selector %s does not parse: %s", sel, firstLine(err.Error()))
		}
		ms, err = confineMatchers(ms, text(sel), label, namespace)
		if err != nil {
			return "", err
		}
		return streamSelector(ms, sel)
	})
	if err != nil {
		return "", err
	}
	if n == 0 {
		return "", errorf("no stream selector such as {app=\"web\"}")
	}
	// The same reader checks the result: every selector must be confined.
	if _, _, err := rewriteStreams(out, func(sel string) (string, error) {
		ms, err := promql.ParseMetricSelector(sel)
		if err != nil || !confined(ms, label, namespace) {
			return "", errorf("the confined query fails its own check at %s", sel)
		}
		return sel, nil
	}); err != nil {
		return "", err
	}
	return out, nil
}

// streamSelector prints matchers as a LogQL stream selector.
func streamSelector(ms []*labels.Matcher, what string) (string, error) {
	parts := make([]string, len(ms))
	for i, m := range ms {
		if !model.LegacyValidation.IsValidLabelName(m.Name) || strings.HasPrefix(m.Name, model.ReservedLabelPrefix) {
			return "", errorf("stream selector %s: %q is not a stream label name", what, m.Name)
		}
		parts[i] = m.Name + m.Type.String() + strconv.Quote(m.Value)
	}
	return "{" + strings.Join(parts, ", ") + "}", nil
}

// rewriteStreams replaces each stream selector {...} of a LogQL query that
// lies outside string literals by what rewrite returns for it, and counts
// them. String literals are read as Loki's lexer reads them: "..." with
// backslash escapes, `...` raw.
func rewriteStreams(q string, rewrite func(string) (string, error)) (string, int, error) {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); {
		switch c := q[i]; {
		case c == '"' || c == '`':
			j, err := stringEnd(q, i)
			if err != nil {
				return "", 0, err
			}
			b.WriteString(q[i:j])
			i = j
		case c == '\'':
			return "", 0, errorf("single quote at offset %d: LogQL strings are written in double quotes or backticks", i)
		case c == '#' || strings.HasPrefix(q[i:], "//") || strings.HasPrefix(q[i:], "/*"):
			return "", 0, errorf("comment at offset %d: comments are not allowed in a namespaced rule's LogQL", i)
		case c == '{':
			j := i + 1
			for j < len(q) && q[j] != '}' {
				switch q[j] {
				case '"', '`':
					k, err := stringEnd(q, j)
					if err != nil {
						return "", 0, err
					}
					j = k
				case '{', '\'', '#':
					return "", 0, errorf("unexpected %q at offset %d in a stream selector", q[j], j)
				default:
					j++
				}
			}
			if j >= len(q) {
				return "", 0, errorf("unclosed stream selector at offset %d", i)
			}
			sel, err := rewrite(q[i : j+1])
			if err != nil {
				return "", 0, err
			}
			b.WriteString(sel)
			n++
			i = j + 1
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), n, nil
}

// stringEnd is the offset just past the string literal starting at q[i].
func stringEnd(q string, i int) (int, error) {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		switch {
		case q[j] == quote:
			return j + 1, nil
		case quote == '"' && q[j] == '\\':
			j++
		case quote == '"' && q[j] == '\n':
			return 0, errorf("string literal at offset %d ends at a newline", i)
		}
	}
	return 0, errorf("unterminated string literal at offset %d", i)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
