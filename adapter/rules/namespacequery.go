package rules

// Whether a namespace query may answer for named objects.
//
// A request about objects X₁…Xₙ of a resource in a namespace can be
// answered by the query that names them (the resource label L matched by
// L=~"X₁|…|Xₙ", as prometheus-adapter sends it) or by the rule's namespace
// query (L!=""), which covers every object of the resource there and is
// shared by all requests of the namespace. The two agree for object X only
// when X's value depends on no series of another object. That holds for
// sum(rate(x{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>), but not for a
// template that aggregates across the requested objects, such as one pod's
// share of the requested pods,
//
//	sum(rate(x{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)
//	  / scalar(sum(rate(x{<<.LabelMatchers>>}[2m])))
//
// which is 1 for one requested pod, and its share of the namespace under
// the namespace query.
//
// The rule's template is rendered with placeholders, parsed, and walked
// from the leaves up. Every subexpression is put in one of three classes:
//
//   - constant: no selector below it carries <<.LabelMatchers>>, so it has
//     the same value under both queries (the rest of the selector, and the
//     series name, are the same in both);
//   - perObject: each element whose resource label is X is computed only from
//     series whose resource label is X (and from constant subexpressions),
//     and keeps the label. The series with L=X are the same under both
//     queries when X is requested, so are these elements;
//   - mixed (an error saying why): anything else, including what is not
//     understood.
//
// A query whose root is constant or perObject gives every requested object
// the same value under both queries. The rules below are the engine's
// semantics (promql/engine.go: aggregation groups, vector matching
// signatures, resultMetric) restated for one label.
//
// Only values are at stake: the namespace query may fail where the named one
// succeeds, if another object's series make the query fail (say, duplicate
// series on the "one" side of a group_left). That is an error the request
// reports, not a wrong value.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/gantry-dev/gantry/adapter/config"
)

// locality is what a subexpression's value depends on; see the comment at the
// top of this file.
type locality int

const (
	constant locality = iota
	perObject
)

// Placeholders the template is rendered with for the check. objectsMarker
// is the name of the one matcher <<.LabelMatchers>> renders, so that the
// selectors restricted to the requested objects can be told apart from the
// others. Label and series names are single tokens, so the rendered query has
// the same shape as a real one.
const (
	checkSeries   = "gantry_series"
	objectsMarker = "__gantry_requested_objects__"
	checkLabel    = "gantry_resource_label"
)

// namespaceQueryBlocker says why the rule's namespace query could give a
// requested object another value than the query naming the objects, or ""
// when it cannot, for every resource label the rule may be asked about.
func namespaceQueryBlocker(r *Rule) string {
	switch {
	case r.External:
		return "external rules name no objects"
	case r.readsNames:
		return "metricsQuery uses LabelValuesByName, which needs the objects' names"
	case r.LogQL:
		// The same question arises in LogQL, but without a LogQL parser
		// there is no proof either way.
		return "logqlQuery: Gantry has no LogQL parser to prove that a namespace query keeps the objects apart"
	}
	if err := plainTemplate(r.query); err != nil {
		return "metricsQuery: " + err.Error()
	}
	names, err := checkedLabels(r.query, r.Labels)
	if err != nil {
		return "metricsQuery: " + err.Error()
	}
	for _, l := range names {
		expr, err := renderForCheck(r.query, l)
		var unparsable *unparsableError
		if errors.As(err, &unparsable) && l != checkLabel {
			// Neither query parses for a resource with this label (say,
			// it is both in on(…) and in group_left(…)): requests for it
			// fail either way.
			continue
		}
		if err == nil {
			_, err = namespaceCheck{label: l}.expr(expr)
		}
		if err != nil {
			return "metricsQuery: " + err.Error()
		}
	}
	return ""
}

// unparsableError is a rendering for the check that does not parse.
type unparsableError struct{ msg string }

func (e *unparsableError) Error() string {
	return "rendered for the namespace query check, does not parse: " + e.msg
}

// plainTemplate accepts a template made only of text and the actions
// <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>>. Any other action could
// give the query another shape for another series or request (an <<if>> on
// .LabelMatchers would even differ between the two queries), so one
// rendering would not stand for all of them.
func plainTemplate(t *template.Template) error {
	if t.Tree == nil || t.Tree.Root == nil {
		return errors.New("the template is empty")
	}
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			continue
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 && len(n.Pipe.Cmds) == 1 && len(n.Pipe.Cmds[0].Args) == 1 {
				if f, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode); ok && len(f.Ident) == 1 {
					switch f.Ident[0] {
					case "Series", "LabelMatchers", "GroupBy":
						continue
					}
				}
			}
		}
		action := strings.NewReplacer("{{", config.TemplateDelims[0], "}}", config.TemplateDelims[1]).Replace(n.String())
		return fmt.Errorf("the template has %s; only <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>> are understood by the namespace query check", action)
	}
	return nil
}

// checkedLabels lists the resource labels the check must be run for: those
// of requests that can reach NamespaceQuery. A request names a resource the
// discovery found for one of the rule's series, through the label map: an
// override label of the resource (only namespaced resources have namespace
// queries), or a label the label template renders for it. The check
// compares the resource label only with names written in the query
// (grouping, matching, label_replace destinations…) and with "le", so every
// label that is none of those gets the answer checkLabel gets; each of those
// names is checked too, if the label map takes it for a namespaced resource.
func checkedLabels(t *template.Template, lm *LabelMap) ([]string, error) {
	var out []string
	lm.mu.RLock()
	for gr, l := range lm.toLabel {
		if gr != Namespaces && Namespaced(lm.mapper, gr) {
			out = append(out, string(l))
		}
	}
	lm.mu.RUnlock()
	if lm.template != nil {
		expr, err := renderForCheck(t, checkLabel)
		if err != nil {
			return nil, err
		}
		// A second rendering tells the names the template writes from
		// the placeholder, in the unlikely case that it writes that too.
		other, err := renderForCheck(t, checkLabel+"_other")
		if err != nil {
			return nil, err
		}
		if slices.Contains(writtenLabels(other), checkLabel) {
			return nil, fmt.Errorf("the template names the label %s, which the namespace query check uses as a placeholder", checkLabel)
		}
		out = append(out, checkLabel)
		for _, l := range writtenLabels(expr) {
			if l != checkLabel && lm.namesNamespaced(l) {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// namesNamespaced reports whether the discovery can take label for a
// namespaced resource other than namespaces. It asks ResourceForLabel,
// which the discovery asks: the label map keeps its first answer for a label
// (mapped or not) for as long as the rule lives, so the answer given here is
// the one the discovery gets. A label the cluster has no resource for now
// (say, "le" with the template <<.Resource>>) stays unmapped until the rules
// are compiled again, as it would once the discovery had seen it.
func (lm *LabelMap) namesNamespaced(label string) bool {
	gr, ok := lm.ResourceForLabel(model.LabelName(label))
	return ok && gr != Namespaces && Namespaced(lm.mapper, gr)
}

// renderForCheck renders the template with the placeholders and label as
// the resource label (<<.GroupBy>>), and parses it.
func renderForCheck(t *template.Template, label string) (parser.Expr, error) {
	var b strings.Builder
	args := config.QueryArgs{
		Series:        checkSeries,
		LabelMatchers: objectsMarker + `="x"`,
		GroupBy:       label,
		GroupBySlice:  []string{label},
	}
	if err := t.Execute(&b, args); err != nil {
		return nil, fmt.Errorf("rendering for the namespace query check: %v", err)
	}
	expr, err := config.ParsePromQL(b.String())
	if err != nil {
		return nil, &unparsableError{msg: err.Error()}
	}
	return expr, nil
}

// writtenLabels lists the label names the check compares the resource label
// with: those of grouping and matching clauses, label_replace and
// label_join destinations, count_values and histogram_quantiles labels, and
// the "le" of classic histograms.
func writtenLabels(expr parser.Expr) []string {
	var out []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch e := n.(type) {
		case *parser.AggregateExpr:
			out = append(out, e.Grouping...)
			if e.Op == parser.COUNT_VALUES {
				out = append(out, stringArg(e.Param))
			}
		case *parser.BinaryExpr:
			if vm := e.VectorMatching; vm != nil {
				out = append(out, vm.MatchingLabels...)
				out = append(out, vm.Include...)
			}
		case *parser.Call:
			switch e.Func.Name {
			case "label_replace", "label_join", "histogram_quantiles":
				if len(e.Args) > 1 {
					out = append(out, stringArg(e.Args[1]))
				}
			}
			if dropsLe[e.Func.Name] {
				out = append(out, "le")
			}
		}
		return nil
	})
	slices.Sort(out)
	return slices.Compact(out)
}

func stringArg(e parser.Expr) string {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			break
		}
		e = p.Expr
	}
	if s, ok := e.(*parser.StringLiteral); ok {
		return s.Val
	}
	return ""
}

// checkNamespaceQuery renders the template with label as the resource label
// and reports why the namespace query could change a requested object's
// value, or nil when it cannot.
func checkNamespaceQuery(t *template.Template, label string) error {
	expr, err := renderForCheck(t, label)
	if err != nil {
		return err
	}
	_, err = namespaceCheck{label: label}.expr(expr)
	return err
}

// namespaceCheck classifies subexpressions for one resource label.
type namespaceCheck struct {
	label string
}

// labelName is how an error names the resource label.
func (c namespaceCheck) labelName() string {
	if c.label == checkLabel {
		return "the resource label"
	}
	return fmt.Sprintf("the resource label %q", c.label)
}

// text is an expression as an error shows it, with the placeholders written
// as the template fields they stand for.
func (c namespaceCheck) text(e parser.Node) string {
	s := strings.NewReplacer(
		objectsMarker+`="x"`, "<<.LabelMatchers>>",
		checkSeries, "<<.Series>>",
	).Replace(e.String())
	if c.label == checkLabel {
		s = strings.ReplaceAll(s, c.label, "<<.GroupBy>>")
	}
	const maxLen = 120
	if r := []rune(s); len(r) > maxLen {
		s = string(r[:maxLen-3]) + "..."
	}
	return s
}

func (c namespaceCheck) expr(e parser.Expr) (locality, error) {
	switch e := e.(type) {
	case *parser.NumberLiteral, *parser.DurationExpr:
		return constant, nil
	case *parser.StringLiteral:
		if strings.Contains(e.Val, objectsMarker) {
			return 0, fmt.Errorf("the string %s holds the request's label matchers", c.text(e))
		}
		return constant, nil
	case *parser.VectorSelector:
		carries := false
		for _, m := range e.LabelMatchers {
			if strings.Contains(m.Value, objectsMarker) {
				return 0, fmt.Errorf("a matcher of %s holds the request's label matchers as its value", c.text(e))
			}
			carries = carries || m.Name == objectsMarker
		}
		if carries {
			return perObject, nil
		}
		// Not restricted to the requested objects: the same series under
		// both queries.
		return constant, nil
	case *parser.MatrixSelector:
		return c.expr(e.VectorSelector)
	case *parser.SubqueryExpr:
		// The inner expression at each step, each step keeping objects
		// apart as the inner expression does.
		return c.expr(e.Expr)
	case *parser.ParenExpr:
		return c.expr(e.Expr)
	case *parser.StepInvariantExpr:
		return c.expr(e.Expr)
	case *parser.UnaryExpr:
		// Negation keeps every label but the metric name.
		return c.expr(e.Expr)
	case *parser.Call:
		return c.call(e)
	case *parser.AggregateExpr:
		return c.aggregate(e)
	case *parser.BinaryExpr:
		return c.binary(e)
	}
	return 0, fmt.Errorf("%s is not understood by the namespace query check", c.text(e))
}

// perElement are the functions whose result element for a series depends
// only on that series (over its range, for range vectors) and on scalar
// arguments, and keeps its labels but the metric name; sort* only reorder.
var perElement = map[string]bool{
	"abs": true, "acos": true, "acosh": true, "asin": true, "asinh": true, "atan": true, "atanh": true,
	"ceil": true, "clamp": true, "clamp_max": true, "clamp_min": true, "cos": true, "cosh": true,
	"deg": true, "exp": true, "floor": true, "ln": true, "log10": true, "log2": true, "rad": true,
	"round": true, "sgn": true, "sin": true, "sinh": true, "sqrt": true, "tan": true, "tanh": true,
	"timestamp": true, "start_timestamp": true,
	"day_of_month": true, "day_of_week": true, "day_of_year": true, "days_in_month": true,
	"hour": true, "minute": true, "month": true, "year": true,
	"histogram_avg": true, "histogram_count": true, "histogram_sum": true,
	"histogram_stddev": true, "histogram_stdvar": true,
	"sort": true, "sort_desc": true, "sort_by_label": true, "sort_by_label_desc": true,
	"rate": true, "irate": true, "increase": true, "delta": true, "idelta": true, "deriv": true,
	"predict_linear": true, "resets": true, "changes": true, "integral": true, "double_exponential_smoothing": true,
	"avg_over_time": true, "count_over_time": true, "first_over_time": true, "last_over_time": true,
	"mad_over_time": true, "max_over_time": true, "min_over_time": true, "present_over_time": true,
	"quantile_over_time": true, "stddev_over_time": true, "stdvar_over_time": true, "sum_over_time": true,
	"ts_of_first_over_time": true, "ts_of_last_over_time": true, "ts_of_max_over_time": true,
	"ts_of_min_over_time": true,
}

// dropsLe are the functions that merge a classic histogram's bucket series,
// grouping by every label but "le".
var dropsLe = map[string]bool{
	"histogram_quantile": true, "histogram_fraction": true, "histogram_quantiles": true,
}

func (c namespaceCheck) call(e *parser.Call) (locality, error) {
	worst := constant
	for _, a := range e.Args {
		l, err := c.expr(a)
		if err != nil {
			return 0, err
		}
		worst = max(worst, l)
	}
	// A function of values that are the same under both queries is too.
	// Scalar arguments are never perObject (a scalar has no labels), so
	// below, perObject is the vector argument.
	if worst == constant {
		return constant, nil
	}
	name := e.Func.Name
	switch {
	case perElement[name]:
		return perObject, nil
	case name == "label_replace" || name == "label_join":
		if stringArg(e.Args[1]) == c.label {
			return 0, fmt.Errorf("%s writes %s, so an object's value can come from another object's series: %s", name, c.labelName(), c.text(e))
		}
		return perObject, nil
	case dropsLe[name]:
		// Buckets are merged by every label but le: the resource label
		// keeps them apart unless it is le. histogram_quantiles also
		// writes the label its second argument names.
		if c.label == "le" || (name == "histogram_quantiles" && stringArg(e.Args[1]) == c.label) {
			return 0, fmt.Errorf("%s drops or writes %s: %s", name, c.labelName(), c.text(e))
		}
		return perObject, nil
	case name == "scalar":
		return 0, fmt.Errorf("scalar() folds the series of all requested objects into one number: %s", c.text(e))
	case name == "absent" || name == "absent_over_time":
		return 0, fmt.Errorf("%s() answers for the requested objects together: %s", name, c.text(e))
	}
	return 0, fmt.Errorf("%s() is not known to keep objects apart: %s", name, c.text(e))
}

// keepsObjects are the aggregations whose result for a group depends only
// on the group's elements. (Among equal values, which series topk and
// bottomk keep may depend on their order; the values kept do not.) limitk
// is not one: which k series of a group it keeps depends on their order,
// which the other objects' series can change; limit_ratio picks by a hash
// of each series' labels.
var keepsObjects = map[parser.ItemType]bool{
	parser.SUM: true, parser.AVG: true, parser.COUNT: true, parser.MIN: true, parser.MAX: true,
	parser.GROUP: true, parser.STDDEV: true, parser.STDVAR: true, parser.QUANTILE: true,
	parser.TOPK: true, parser.BOTTOMK: true, parser.COUNT_VALUES: true, parser.LIMIT_RATIO: true,
}

func (c namespaceCheck) aggregate(e *parser.AggregateExpr) (locality, error) {
	inner, err := c.expr(e.Expr)
	if err != nil {
		return 0, err
	}
	if e.Param != nil {
		p, err := c.expr(e.Param)
		if err != nil {
			return 0, err
		}
		if p != constant {
			return 0, fmt.Errorf("the parameter of %s depends on the requested objects: %s", e.Op, c.text(e))
		}
	}
	if inner == constant {
		return constant, nil
	}
	// A group's elements share the grouping labels; when the resource
	// label is one of them, a group is one object's.
	if e.Without == slices.Contains(e.Grouping, c.label) {
		return 0, fmt.Errorf("%s groups without %s, so it combines the series of different objects: %s", e.Op, c.labelName(), c.text(e))
	}
	if !keepsObjects[e.Op] {
		return 0, fmt.Errorf("%s depends on the order of the series of other objects: %s", e.Op, c.text(e))
	}
	if e.Op == parser.COUNT_VALUES && stringArg(e.Param) == c.label {
		return 0, fmt.Errorf("count_values writes %s: %s", c.labelName(), c.text(e))
	}
	return perObject, nil
}

func (c namespaceCheck) binary(e *parser.BinaryExpr) (locality, error) {
	lhs, err := c.expr(e.LHS)
	if err != nil {
		return 0, err
	}
	rhs, err := c.expr(e.RHS)
	if err != nil {
		return 0, err
	}
	if lhs == constant && rhs == constant {
		return constant, nil
	}
	vm := e.VectorMatching
	if e.LHS.Type() != parser.ValueTypeVector || e.RHS.Type() != parser.ValueTypeVector || vm == nil {
		// A vector and a scalar (constant: scalars have no labels), element
		// by element; a comparison filters element by element.
		return perObject, nil
	}
	// Elements are paired when their signatures are equal: the matching
	// labels with on(…), all but the ignored ones (and the metric name)
	// otherwise. With the resource label in the signature, an element of
	// object X pairs only with elements of X, and the result keeps the
	// label (a group_x include of it copies the same value); fill values
	// stand in for missing partners of X's elements only.
	if vm.On == slices.Contains(vm.MatchingLabels, c.label) {
		return perObject, nil
	}
	unpaired := fmt.Errorf("%s pairs series without %s, so it combines different objects: %s", e.Op, c.labelName(), c.text(e))
	if vm.FillValues.LHS != nil || vm.FillValues.RHS != nil {
		return 0, unpaired
	}
	// Without the label in the signature, only a perObject side matched
	// against a constant one is safe, and only where the result is made of
	// the perObject side's elements, as they were.
	switch {
	case e.Op == parser.LAND || e.Op == parser.LUNLESS:
		// The left side, filtered by what the right has.
		if lhs == perObject && rhs == constant {
			return perObject, nil
		}
	case e.Op == parser.LOR:
		// The left side, and the right one's elements the left lacks.
		if lhs == constant && rhs == perObject {
			return perObject, nil
		}
	case vm.Card == parser.CardManyToOne:
		// The left side's elements, with the one matching right element.
		if lhs == perObject && rhs == constant && !slices.Contains(vm.Include, c.label) {
			return perObject, nil
		}
	case vm.Card == parser.CardOneToMany:
		if rhs == perObject && lhs == constant && !slices.Contains(vm.Include, c.label) {
			return perObject, nil
		}
	case vm.Card == parser.CardOneToOne:
		// The result keeps only the on(…) labels, or drops the ignored
		// ones: the resource label is gone.
		return 0, fmt.Errorf("%s drops %s from its result: %s", e.Op, c.labelName(), c.text(e))
	}
	return 0, unpaired
}
