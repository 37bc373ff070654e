// Package rules holds the semantics of a rule file: which series a rule
// selects, which Kubernetes resources their labels name, what the metric is
// called in the API, and the PromQL query that answers a request.
//
// It sits between adapter/config (the schema) and adapter/discovery and
// adapter/provider (which use compiled rules). Values that come from a
// request never reach a query as text: they become label matchers whose
// values are quoted and regexp-escaped, and every rendered query is parsed
// before it is sent.
package rules

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"

	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/enforce"
)

// Rule is a compiled discovery rule.
type Rule struct {
	// ID names the rule in logs and errors: "rules[3] (http_requests)".
	ID string
	// External is true for externalRules.
	External bool
	// SeriesQuery is the selector used for discovery.
	SeriesQuery string
	// Window is reported as windowSeconds; zero when unknown.
	Window time.Duration
	// Namespaced says whether an external request's namespace is matched.
	Namespaced bool
	// Labels maps series labels to resources.
	Labels *LabelMap
	// Source is the backend that lists the rule's series and runs its
	// query: config.SourcePrometheus, SourceLoki or SourceLocal.
	Source string
	// LogQL is true when the query is LogQL (Source is then Loki).
	LogQL bool
	// Namespace is the namespace a rule from a MetricRule is confined to,
	// and NamespaceLabel the series label that names it (see Confine);
	// both are "" for the cluster config's rules.
	Namespace      string
	NamespaceLabel string

	filters []seriesFilter
	nameRe  *regexp.Regexp
	nameAs  string
	query   *template.Template
	// readsNames is true when the query template uses LabelValuesByName,
	// whose values are the requested objects' names.
	readsNames bool
	// notNamespaceQueryable says why NamespaceQuery cannot answer for the
	// rule; "" when it can (see namespacequery.go).
	notNamespaceQueryable string
	// confined keeps the confined text of queries the rule rendered
	// (confinecache.go); nil until Confine.
	confined *confineCache
}

type seriesFilter struct {
	re     *regexp.Regexp
	negate bool
}

// Compile turns a validated config rule into a Rule. id names it in errors.
func Compile(id string, r config.DiscoveryRule, external bool, mapper apimeta.RESTMapper) (*Rule, error) {
	out := &Rule{ID: id, External: external, SeriesQuery: r.SeriesQuery, Namespaced: r.Resources.NamespacedOrDefault()}
	var errs []error
	for i, f := range r.SeriesFilters {
		if f.Is != "" {
			re, err := regexp.Compile(f.Is)
			errs = append(errs, wrapField(fmt.Sprintf("seriesFilters[%d].is", i), err))
			out.filters = append(out.filters, seriesFilter{re: re})
		} else {
			re, err := regexp.Compile(f.IsNot)
			errs = append(errs, wrapField(fmt.Sprintf("seriesFilters[%d].isNot", i), err))
			out.filters = append(out.filters, seriesFilter{re: re, negate: true})
		}
	}
	var err error
	out.nameRe, out.nameAs, err = r.Name.Compile()
	errs = append(errs, err)
	out.Labels, err = NewLabelMap(r.Resources, mapper)
	errs = append(errs, wrapField("resources", err))
	out.Source, out.LogQL = r.SourceOrDefault(), r.LogQLQuery != ""
	if out.LogQL {
		out.query, err = config.ParseQueryTemplate(r.LogQLQuery)
		errs = append(errs, wrapField("logqlQuery", err))
	} else {
		out.query, err = config.ParseQueryTemplate(r.MetricsQuery)
		errs = append(errs, wrapField("metricsQuery", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	out.readsNames = readsLabelValues(out.query)
	out.notNamespaceQueryable = namespaceQueryBlocker(out)
	out.Window = time.Duration(r.Window)
	if out.Window == 0 {
		if out.LogQL {
			out.Window = logqlWindow(out.query)
		} else {
			out.Window = templateWindow(out.query)
		}
	}
	return out, nil
}

// Confine restricts the rule to the series of one namespace, those whose
// label is namespace: its seriesQuery is rewritten to select only them, and
// from now on every query it renders passes through adapter/enforce before
// it is returned, which forces label="namespace" into each of its selectors
// and refuses any that names another namespace or reads series without a
// selector. The query template is rendered once with sample arguments and
// checked the same way, so that a template that can never be confined is
// refused here, with the field in the error, rather than at each request.
// Rules from a MetricRule are confined; the cluster config's are not.
//
// A rule Confine fails for must not be served. It is left confined all the
// same (Namespace and NamespaceLabel are set first), so that its queries
// are enforced even if the error is overlooked.
func (r *Rule) Confine(label, namespace string) error {
	r.NamespaceLabel, r.Namespace = label, namespace
	var (
		sq  string
		err error
	)
	if r.Source == config.SourceLoki {
		sq, err = enforce.LogQL(r.SeriesQuery, label, namespace)
	} else {
		sq, err = enforce.Selector(r.SeriesQuery, label, namespace)
	}
	if err != nil {
		return fmt.Errorf("seriesQuery: %w", err)
	}
	field := "metricsQuery"
	if r.LogQL {
		field = "logqlQuery"
	}
	sample, err := r.renderSample(label, namespace)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if _, err := confineQuery(sample, r.LogQL, label, namespace); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	r.SeriesQuery = sq
	r.confined = newConfineCache(label, namespace)
	return nil
}

// renderSample renders the query template for Confine's check, with a
// request for two pods of the namespace (an external request for the rule's
// namespace), as adapter/config checks templates; a LabelValuesByName
// lookup of a label the sample lacks renders empty.
func (r *Rule) renderSample(label, namespace string) (string, error) {
	t, err := r.query.Clone()
	if err != nil {
		return "", err
	}
	t.Option("missingkey=zero")
	ms := []Matcher{{Label: model.LabelName(label), Type: labels.MatchEqual, Values: []string{namespace}}}
	var groupBy []string
	if !r.External {
		ms = append(ms, Matcher{Label: "pod", Type: labels.MatchRegexp, Values: []string{"a", "b"}})
		groupBy = []string{"pod"}
	}
	var b strings.Builder
	if err := t.Execute(&b, queryArgs("sample_metric", ms, groupBy)); err != nil {
		return "", fmt.Errorf("template does not render: %v", err)
	}
	return b.String(), nil
}

// confineQuery passes a rendered query through adapter/enforce.
func confineQuery(q string, logql bool, label, namespace string) (string, error) {
	if logql {
		return enforce.LogQL(q, label, namespace)
	}
	return enforce.PromQL(q, label, namespace)
}

func wrapField(field string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", field, err)
}

// templateWindow is the longest range (of a range selector or subquery) in the
// query template rendered with sample arguments; zero when there is none.
func templateWindow(t *template.Template) time.Duration {
	var b strings.Builder
	if err := t.Execute(&b, windowArgs()); err != nil {
		return 0
	}
	expr, err := config.ParsePromQL(b.String())
	if err != nil {
		return 0
	}
	var longest time.Duration
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch e := n.(type) {
		case *parser.MatrixSelector:
			longest = max(longest, e.Range)
		case *parser.SubqueryExpr:
			longest = max(longest, e.Range)
		}
		return nil
	})
	return longest
}

// windowArgs are the sample arguments templateWindow and logqlWindow render
// a template with to find its ranges.
func windowArgs() config.QueryArgs {
	return config.QueryArgs{Series: "x", LabelMatchers: `a="b"`, GroupBy: "a", GroupBySlice: []string{"a"}, LabelValuesByName: map[string]string{"a": "b"}}
}

// readsLabelValues reports whether any template of t uses LabelValuesByName.
func readsLabelValues(t *template.Template) bool {
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil && strings.Contains(tt.Tree.Root.String(), "LabelValuesByName") {
			return true
		}
	}
	return false
}

// MetricName returns the API name of a series, and false when the rule's
// filters or name pattern reject it.
func (r *Rule) MetricName(series string) (string, bool) {
	for _, f := range r.filters {
		if f.re.MatchString(series) == f.negate {
			return "", false
		}
	}
	idx := r.nameRe.FindStringSubmatchIndex(series)
	if idx == nil {
		return "", false
	}
	name := string(r.nameRe.ExpandString(nil, r.nameAs, series, idx))
	if name == "" {
		return "", false
	}
	return name, true
}

// Matcher is one label constraint of a query, built from request values.
type Matcher struct {
	Label  model.LabelName
	Type   labels.MatchType
	Values []string // alternatives; more than one only for =~ and !~
}

// String renders the matcher as PromQL: the value is a quoted string literal,
// and for regexp matchers each alternative is escaped, so no value can change
// the query's shape.
func (m Matcher) String() string {
	var v string
	switch m.Type {
	case labels.MatchRegexp, labels.MatchNotRegexp:
		// Prometheus anchors the whole regexp, so a top-level alternation
		// needs no group: "a|b" as prometheus-adapter writes it.
		v = alternation(m.Values, false)
	default:
		if len(m.Values) > 0 {
			v = m.Values[0]
		}
	}
	return string(m.Label) + m.Type.String() + strconv.Quote(v)
}

// neverMatches is the regexp for an empty list of values.
const neverMatches = `[^\x00-\x{10FFFF}]`

// maxNesting bounds how deeply alternation nests groups, far below the limit
// of Go's and Prometheus' regexp parsers (1000).
const maxNesting = 24

// alternation is a compact, escaped regexp matching exactly the given values
// (as Prometheus anchors it), and no other string. Shared prefixes are
// factored out, level by level where that makes the regexp shorter, which
// keeps matchers for the pods of a few ReplicaSets short. With embeddable,
// a top-level alternation is put in a group, so that the result can be part
// of a larger regexp.
func alternation(values []string, embeddable bool) string {
	switch len(values) {
	case 0:
		return neverMatches
	case 1:
		return regexp.QuoteMeta(values[0])
	}
	vs := slices.Clone(values)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	if len(vs) == 1 {
		return regexp.QuoteMeta(vs[0])
	}
	re, single := factor(vs, 0)
	if single || !embeddable {
		return re
	}
	return "(?:" + re + ")"
}

// factor returns a regexp matching exactly vs (sorted, distinct), and whether
// it is a single term (no top-level |). Values are grouped by their first
// character; each group is written either flat or as its common prefix
// followed by a group of the rest, whichever is shorter.
func factor(vs []string, depth int) (string, bool) {
	var terms []string
	single := true
	for i := 0; i < len(vs); {
		_, n := utf8.DecodeRuneInString(vs[i])
		head := vs[i][:n] // "" for the empty value, which is a group of its own
		j := i + 1
		for head != "" && j < len(vs) && strings.HasPrefix(vs[j], head) {
			j++
		}
		t, s := term(vs[i:j], head, depth)
		terms = append(terms, t)
		single = single && s
		i = j
	}
	if len(terms) > 1 {
		single = false
	}
	return strings.Join(terms, "|"), single
}

func term(group []string, head string, depth int) (string, bool) {
	if len(group) == 1 {
		return regexp.QuoteMeta(group[0]), true
	}
	quoted := make([]string, len(group))
	for i, v := range group {
		quoted[i] = regexp.QuoteMeta(v)
	}
	flat := strings.Join(quoted, "|")
	if depth >= maxNesting {
		return flat, false
	}
	prefix := commonPrefix(group[0], group[len(group)-1])
	if len(prefix) < len(head) { // only with invalid UTF-8
		prefix = head
	}
	rest := make([]string, len(group))
	for i, v := range group {
		rest[i] = v[len(prefix):]
	}
	inner, _ := factor(rest, depth+1)
	if nested := regexp.QuoteMeta(prefix) + "(?:" + inner + ")"; len(nested) < len(flat) {
		return nested, true
	}
	return flat, false
}

func commonPrefix(a, b string) string {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	// Do not split a UTF-8 sequence.
	for i > 0 && i < len(a) && a[i]&0xC0 == 0x80 {
		i--
	}
	return a[:i]
}

// Query is a rendered, parsed query and what is needed to read its answer.
type Query struct {
	Text string
	// ResourceLabel names the objects in the result (empty for external).
	ResourceLabel model.LabelName
	// Matchers are the constraints built from the request.
	Matchers []Matcher
}

// ObjectQuery is the query for metric series about the named objects of gr in
// namespace ("" for cluster-scoped objects or all namespaces), restricted
// further by a metric label selector.
func (r *Rule) ObjectQuery(series string, gr schema.GroupResource, namespace string, names []string, metricSelector k8slabels.Selector, extraGroupBy ...model.LabelName) (Query, error) {
	if err := checkNames(names); err != nil {
		return Query{}, fmt.Errorf("%s: %w", r.ID, err)
	}
	return r.objectQuery(series, gr, namespace, func(l model.LabelName) Matcher { return nameMatcher(l, names) }, metricSelector, extraGroupBy)
}

// NamespaceQuery is the query for metric series about every object of gr in
// namespace: instead of a list of names, the resource label only has to be
// set (label!=""). One such query answers requests about any objects of the
// namespace, and its text does not grow with their number. It needs a
// namespace and a namespaced resource, and a rule for which it gives each
// object the value ObjectQuery would (see NamespaceQueryable).
func (r *Rule) NamespaceQuery(series string, gr schema.GroupResource, namespace string, metricSelector k8slabels.Selector) (Query, error) {
	if namespace == "" || gr == Namespaces {
		return Query{}, fmt.Errorf("%s: a namespace query needs a namespace and a namespaced resource", r.ID)
	}
	if r.notNamespaceQueryable != "" {
		return Query{}, fmt.Errorf("%s: %s", r.ID, r.notNamespaceQueryable)
	}
	return r.objectQuery(series, gr, namespace, func(l model.LabelName) Matcher {
		return Matcher{Label: l, Type: labels.MatchNotEqual, Values: []string{""}}
	}, metricSelector, nil)
}

// NamespaceQueryable reports whether NamespaceQuery can serve the rule: it
// must give every requested object the value ObjectQuery gives it, for any
// resource the rule may be asked about. That is decided from the parsed
// template (namespacequery.go): each object's value must depend only on
// series of that object, so a template that aggregates across the requested
// objects (a pod's share of them, through scalar(sum(...))) is answered by
// ObjectQuery, as are templates that use LabelValuesByName and LogQL rules.
func (r *Rule) NamespaceQueryable() bool { return r.notNamespaceQueryable == "" }

func (r *Rule) objectQuery(series string, gr schema.GroupResource, namespace string, objects func(model.LabelName) Matcher, metricSelector k8slabels.Selector, extraGroupBy []model.LabelName) (Query, error) {
	if err := r.checkNamespace(namespace); err != nil {
		return Query{}, err
	}
	// Matchers come in prometheus-adapter's order: the metric selector's,
	// then the namespace, then the objects.
	ms, err := SelectorMatchers(metricSelector)
	if err != nil {
		return Query{}, err
	}
	if namespace != "" && gr != Namespaces {
		nsLabel, err := r.Labels.LabelFor(Namespaces)
		if err != nil {
			return Query{}, fmt.Errorf("%s: namespace: %w", r.ID, err)
		}
		ms = append(ms, Matcher{Label: nsLabel, Type: labels.MatchEqual, Values: []string{namespace}})
	}
	resLabel, err := r.Labels.LabelFor(gr)
	if err != nil {
		return Query{}, fmt.Errorf("%s: %w", r.ID, err)
	}
	ms = append(ms, objects(resLabel))
	groupBy := []string{string(resLabel)}
	for _, l := range extraGroupBy {
		groupBy = append(groupBy, string(l))
	}
	text, err := r.render(series, ms, groupBy)
	if err != nil {
		return Query{}, err
	}
	return Query{Text: text, ResourceLabel: resLabel, Matchers: ms}, nil
}

// ExternalQuery is the query for an external metric: the namespace (when the
// rule is namespaced) and the metric selector become matchers.
func (r *Rule) ExternalQuery(series, namespace string, metricSelector k8slabels.Selector) (Query, error) {
	if err := r.checkNamespace(namespace); err != nil {
		return Query{}, err
	}
	ms, err := SelectorMatchers(metricSelector)
	if err != nil {
		return Query{}, err
	}
	if r.Namespaced && namespace != "" {
		nsLabel, err := r.Labels.LabelFor(Namespaces)
		if err != nil {
			// prometheus-adapter requires a namespace override here; the
			// conventional label is the sensible default.
			nsLabel = "namespace"
		}
		ms = append(ms, Matcher{Label: nsLabel, Type: labels.MatchEqual, Values: []string{namespace}})
	}
	text, err := r.render(series, ms, nil)
	if err != nil {
		return Query{}, err
	}
	return Query{Text: text, Matchers: ms}, nil
}

// checkNamespace refuses a request in another namespace than the one a
// confined rule serves. The enforcement would keep the query in the rule's
// namespace anyway; this says why the answer would be empty.
func (r *Rule) checkNamespace(namespace string) error {
	if r.Namespace != "" && namespace != "" && namespace != r.Namespace {
		return &InvalidSelectorError{Reason: fmt.Sprintf("%s: serves only namespace %q, not %q", r.ID, r.Namespace, namespace)}
	}
	return nil
}

// SelectorMatchers translates a Kubernetes label selector into label
// matchers. Selector keys must be valid Prometheus label names.
func SelectorMatchers(sel k8slabels.Selector) ([]Matcher, error) {
	if sel == nil || sel.Empty() {
		return nil, nil
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return nil, nil
	}
	var out []Matcher
	for _, req := range reqs {
		label := model.LabelName(req.Key())
		if !label.IsValidLegacy() {
			return nil, &InvalidSelectorError{Reason: fmt.Sprintf("label %q in the metric selector is not a valid Prometheus label name", req.Key())}
		}
		if strings.HasPrefix(req.Key(), model.ReservedLabelPrefix) {
			// __name__ would pick another metric than the one asked
			// (and authorized) for. labels.Parse, which reads the API's
			// metric selectors, refuses such keys already.
			return nil, &InvalidSelectorError{Reason: fmt.Sprintf("label %q in the metric selector is reserved for Prometheus' internal use", req.Key())}
		}
		values := req.Values().List() // sorted
		m := Matcher{Label: label, Values: values}
		switch req.Operator() {
		case selection.Equals, selection.DoubleEquals:
			m.Type = labels.MatchEqual
		case selection.NotEquals:
			m.Type = labels.MatchNotEqual
		case selection.In:
			m.Type = labels.MatchRegexp
			if len(values) == 1 {
				m.Type = labels.MatchEqual
			}
		case selection.NotIn:
			m.Type = labels.MatchNotRegexp
			if len(values) == 1 {
				m.Type = labels.MatchNotEqual
			}
		case selection.Exists:
			m.Type, m.Values = labels.MatchNotEqual, []string{""}
		case selection.DoesNotExist:
			m.Type, m.Values = labels.MatchEqual, []string{""}
		default:
			return nil, &InvalidSelectorError{Reason: fmt.Sprintf("operator %q in the metric selector is not supported", req.Operator())}
		}
		out = append(out, m)
	}
	return out, nil
}

// InvalidSelectorError is a metric selector Gantry cannot turn into a query:
// the request is at fault, not the backend.
type InvalidSelectorError struct{ Reason string }

func (e *InvalidSelectorError) Error() string { return e.Reason }

// render executes the query template and checks the result. A confined
// rule's query is then confined to its namespace; when that fails, the
// request is at fault (its metric selector or namespace names another
// namespace), since the template itself passed the check in Confine.
//
// A text the rule rendered and confined before is answered from its cache
// (confinecache.go) with the query the enforcement produced for it then.
func (r *Rule) render(series string, ms []Matcher, groupBy []string) (string, error) {
	q, err := executeQuery(r.query, r.ID, series, ms, groupBy, r.LogQL)
	if err != nil {
		return "", err
	}
	if r.Namespace != "" {
		if confined, ok := r.confined.get(q, r.NamespaceLabel, r.Namespace); ok {
			return confined, nil
		}
	}
	if err := checkQuery(q, r.ID, r.LogQL); err != nil {
		return "", err
	}
	if r.Namespace == "" {
		return q, nil
	}
	confined, err := confineQuery(q, r.LogQL, r.NamespaceLabel, r.Namespace)
	if err != nil {
		return "", &InvalidSelectorError{Reason: fmt.Sprintf("%s: %v", r.ID, err)}
	}
	r.confined.put(q, confined, r.NamespaceLabel, r.Namespace)
	return confined, nil
}

// queryArgs are the template values for a request: the matchers rendered
// as escaped selector text. LogQL stream selectors read label matchers and
// string literals exactly as PromQL does (Go string syntax), so the same
// escaping keeps request values from changing either language's query.
func queryArgs(series string, ms []Matcher, groupBy []string) config.QueryArgs {
	parts := make([]string, len(ms))
	byName := make(map[string]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
		byName[string(m.Label)] = stringBody(alternation(m.Values, true))
	}
	return config.QueryArgs{
		Series:            series,
		LabelMatchers:     strings.Join(parts, ","),
		LabelValuesByName: byName,
		GroupBy:           strings.Join(groupBy, ","),
		GroupBySlice:      groupBy,
	}
}

// renderLogQL executes a logqlQuery template and checks the result's
// structure (Gantry has no LogQL parser; Loki judges the rest).
func renderLogQL(t *template.Template, id, series string, ms []Matcher, groupBy []string) (string, error) {
	q, err := executeQuery(t, id, series, ms, groupBy, true)
	if err != nil {
		return "", err
	}
	if err := checkQuery(q, id, true); err != nil {
		return "", err
	}
	return q, nil
}

// executeQuery executes a metricsQuery (or, with logql, a logqlQuery)
// template with a request's values, and does not check the result.
func executeQuery(t *template.Template, id, series string, ms []Matcher, groupBy []string, logql bool) (string, error) {
	field, literalStrings := "metricsQuery", promqlLiteralStrings
	if logql {
		field, literalStrings = "logqlQuery", logqlLiteralStrings
	}
	q, err := execute(t, series, ms, groupBy, literalStrings)
	if err != nil {
		return "", fmt.Errorf("%s: %s: rendering: %v", id, field, err)
	}
	return q, nil
}

// checkQuery requires a rendered query to parse as PromQL (with logql, to
// have LogQL's structure).
func checkQuery(q, id string, logql bool) error {
	if logql {
		if err := config.CheckLogQL(q); err != nil {
			return fmt.Errorf("%s: logqlQuery: %v", id, err)
		}
		return nil
	}
	if err := config.CheckPromQL(q); err != nil {
		return fmt.Errorf("%s: metricsQuery: %v", id, err)
	}
	return nil
}

// logqlRange finds LogQL range durations such as [1m] or [30s].
var logqlRange = regexp.MustCompile(`\[([0-9][0-9a-z]*)\]`)

// logqlWindow is the longest range of the logqlQuery template rendered with
// sample arguments; zero when there is none.
func logqlWindow(t *template.Template) time.Duration {
	var b strings.Builder
	if err := t.Execute(&b, windowArgs()); err != nil {
		return 0
	}
	var longest time.Duration
	for _, m := range logqlRange.FindAllStringSubmatch(b.String(), -1) {
		if d, err := model.ParseDuration(m[1]); err == nil && time.Duration(d) > longest {
			longest = time.Duration(d)
		}
	}
	return longest
}

// Render executes a query template with the given matchers and group-by
// labels, and requires the result to parse as PromQL.
func Render(t *template.Template, id, series string, ms []Matcher, groupBy []string) (string, error) {
	q, err := executeQuery(t, id, series, ms, groupBy, false)
	if err != nil {
		return "", err
	}
	if err := checkQuery(q, id, false); err != nil {
		return "", err
	}
	return q, nil
}

// stringBody escapes s for use inside a PromQL string literal: it is what
// strconv.Quote writes between the quotes, except that every kind of quote is
// written as a hex escape, which both double- and single-quoted literals
// read back, so that no value can end the literal whichever quotes a template
// puts around it. (In a backtick literal escapes are not read, so the value
// comes out garbled, but it still cannot end the literal.)
func stringBody(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexAny(s, "\"'`")
		if i < 0 {
			break
		}
		q := strconv.Quote(s[:i])
		b.WriteString(q[1 : len(q)-1])
		fmt.Fprintf(&b, `\x%02x`, s[i])
		s = s[i+1:]
	}
	q := strconv.Quote(s)
	b.WriteString(q[1 : len(q)-1])
	return b.String()
}

// checkNames rejects an empty list of objects, and empty names, which would
// match the series that lack the label.
func checkNames(names []string) error {
	if len(names) == 0 {
		return errors.New("no objects to query")
	}
	if slices.Contains(names, "") {
		return errors.New("an object name is empty")
	}
	return nil
}
