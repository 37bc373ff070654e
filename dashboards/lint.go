package dashboards

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The rules Lint checks. Each Finding names one.
const (
	// RuleEditable: the dashboard is read-only. It is provisioned from
	// code; an edit made in Grafana is lost on the next update.
	RuleEditable = "editable"
	// RuleDatasource: the dashboard has one data source variable, named
	// datasource, for Prometheus, and every panel, query and query variable
	// reads from it, so that one dashboard serves every cluster's Prometheus.
	RuleDatasource = "datasource"
	// RulePanelID: every panel and row has an id, unique in the dashboard
	// (panel links, viewPanel=<id>, rely on it).
	RulePanelID = "panel-id"
	// RuleTitle: every row has a title; every panel a title and a
	// description.
	RuleTitle = "title"
	// RuleUnit: every panel that shows numbers has a unit.
	RuleUnit = "unit"
	// RuleQuery: every panel has at least one Prometheus query, and each
	// parses as PromQL once Grafana's variables are filled in.
	RuleQuery = "query"
	// RuleRateInterval: rate and irate range over $__rate_interval (a
	// fixed range is empty when it is shorter than two scrape intervals and
	// blurs spikes when longer); increase over $__rate_interval or, for a
	// total over the picked time range, $__range.
	RuleRateInterval = "rate-interval"
	// RuleScopeVariable: the dashboard has a query variable for each label
	// in its scope (see scopes), listing that label's values.
	RuleScopeVariable = "scope-variable"
	// RuleScopeMatcher: every series selector of every panel query matches
	// each scope label against its variable (=~ when the variable may hold
	// several values).
	RuleScopeMatcher = "scope-matcher"
)

// Finding is one rule a dashboard breaks.
type Finding struct {
	// Dashboard is the dashboard's title.
	Dashboard string
	// PanelID and Panel identify the panel at fault; both are zero for a
	// finding about the whole dashboard or a variable.
	PanelID uint32
	Panel   string
	Rule    string
	Message string
}

func (f Finding) String() string {
	where := f.Dashboard
	if f.Panel != "" || f.PanelID != 0 {
		where += fmt.Sprintf(": panel %d %q", f.PanelID, f.Panel)
	}
	return fmt.Sprintf("%s: %s: %s", where, f.Rule, f.Message)
}

// scope is a label whose matcher must take its value from a variable.
type scope struct {
	label, variable string
}

// defaultScope is the scope of a dashboard that scopes lists no other for:
// the job and instance that exposed the series, as Grafana's dashboard
// conventions (and its dashboard linter's job and instance rules) want. The
// overview follows it: those labels pick the Gantry replicas.
//
// No dashboard is scoped by a cluster label: each data source is one
// cluster's Prometheus, picked in the datasource variable.
var defaultScope = []scope{{label: "job", variable: "job"}, {label: "instance", variable: "instance"}}

// scopes are the dashboards, by uid, that are scoped by other labels, and
// why. The Autoscaling and Workload resources dashboards read
// kube-state-metrics and cAdvisor series, whose job and instance name the
// exporter or kubelet that was scraped, not the HPA, VPA or workload shown:
// filtering by them would only hide data. They filter by namespace instead
// (and by HPA, VPA or workload where a panel is about one).
var scopes = map[string]struct {
	labels []scope
	reason string
}{
	"gantry-autoscaling": {
		labels: []scope{{label: "namespace", variable: "namespace"}},
		reason: "kube-state-metrics' job and instance name the exporter, not the HPA or VPA shown",
	},
	"gantry-workloads": {
		labels: []scope{{label: "namespace", variable: "namespace"}},
		reason: "cAdvisor's and kube-state-metrics' job and instance name the kubelet or exporter, not the workload shown",
	},
}

// unitless are the panel types that need no unit, and why.
var unitless = map[string]string{
	"state-timeline": "its values are mapped to text",
}

// Sentinel durations that stand for Grafana's interval variables while a
// query is parsed, so that a range that came from a variable can be told
// from a fixed one. Nobody writes a range of 1h2m3s and a few milliseconds.
const (
	sentinelRateInterval = time.Hour + 2*time.Minute + 3*time.Second + 1*time.Millisecond
	sentinelInterval     = time.Hour + 2*time.Minute + 3*time.Second + 2*time.Millisecond
	sentinelRange        = time.Hour + 2*time.Minute + 3*time.Second + 3*time.Millisecond
)

// builtins are Grafana's global variables that can stand outside a string
// in PromQL, with the values Lint gives them.
var builtins = map[string]string{
	"__rate_interval": model.Duration(sentinelRateInterval).String(),
	"__interval":      model.Duration(sentinelInterval).String(),
	"__range":         model.Duration(sentinelRange).String(),
	"__interval_ms":   fmt.Sprint(sentinelInterval.Milliseconds()),
	"__range_ms":      fmt.Sprint(sentinelRange.Milliseconds()),
	"__range_s":       fmt.Sprint(int64(sentinelRange.Seconds())),
}

// variableRef matches Grafana's variable syntaxes: $name, ${name},
// ${name:format} and [[name]]. "$1" in label_replace is not one: names
// start with a letter or an underscore.
var variableRef = regexp.MustCompile(`\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]`)

// Lint checks a dashboard against the rules above and returns what it
// breaks, in panel order; nil when it breaks none.
func Lint(d dashboard.Dashboard) []Finding {
	l := linter{d: d, title: deref(d.Title), vars: map[string]dashboard.VariableModel{}}
	for _, v := range d.Templating.List {
		l.vars[v.Name] = v
	}
	l.dashboard()
	l.variables()
	ids := map[uint32]string{}
	checkID := func(id *uint32, title string) {
		switch prev, dup := ids[deref(id)]; {
		case id == nil || *id == 0:
			l.add(0, title, RulePanelID, "no id")
		case dup:
			l.add(*id, title, RulePanelID, fmt.Sprintf("id %d is also panel %q's", *id, prev))
		default:
			ids[*id] = title
		}
	}
	for _, p := range d.Panels {
		switch {
		case p.RowPanel != nil:
			r := p.RowPanel
			checkID(&r.Id, deref(r.Title))
			if deref(r.Title) == "" {
				l.add(r.Id, "", RuleTitle, "row without a title")
			}
			if r.Datasource != nil {
				l.datasource(r.Id, deref(r.Title), "row", r.Datasource)
			}
			for _, c := range r.Panels {
				checkID(c.Id, deref(c.Title))
				l.panel(c)
			}
		case p.Panel != nil:
			checkID(p.Panel.Id, deref(p.Panel.Title))
			l.panel(*p.Panel)
		}
	}
	return l.findings
}

type linter struct {
	d        dashboard.Dashboard
	title    string
	vars     map[string]dashboard.VariableModel
	findings []Finding
}

func (l *linter) add(id uint32, panel, rule, msg string) {
	l.findings = append(l.findings, Finding{Dashboard: l.title, PanelID: id, Panel: panel, Rule: rule, Message: msg})
}

// scope is the labels every selector of this dashboard is matched on.
func (l *linter) scope() []scope {
	if s, ok := scopes[deref(l.d.Uid)]; ok {
		return s.labels
	}
	return defaultScope
}

func (l *linter) dashboard() {
	if l.d.Editable == nil || *l.d.Editable {
		l.add(0, "", RuleEditable, "editable (Grafana's default when unset): edits in Grafana would be lost on the next provisioning")
	}
	var ds []dashboard.VariableModel
	for _, v := range l.d.Templating.List {
		if v.Type == dashboard.VariableTypeDatasource {
			ds = append(ds, v)
		}
	}
	if len(ds) != 1 || ds[0].Name != "datasource" || ds[0].Query == nil || deref(ds[0].Query.String) != "prometheus" {
		var names []string
		for _, v := range ds {
			names = append(names, v.Name)
		}
		l.add(0, "", RuleDatasource, fmt.Sprintf("want one data source variable named datasource for prometheus, have %v", names))
	}
	for _, s := range l.scope() {
		v, ok := l.vars[s.variable]
		if !ok {
			l.add(0, "", RuleScopeVariable, fmt.Sprintf("no %s variable to scope the %s label by", s.variable, s.label))
			continue
		}
		if v.Type != dashboard.VariableTypeQuery {
			l.add(0, "", RuleScopeVariable, fmt.Sprintf("variable %s is a %s variable, not a query listing %s values", v.Name, v.Type, s.label))
			continue
		}
		var q string
		if v.Query != nil {
			q = deref(v.Query.String)
		}
		if got := labelValuesLabel(q); got != s.label {
			l.add(0, "", RuleScopeVariable, fmt.Sprintf("variable %s lists %q, want label_values(..., %s)", v.Name, q, s.label))
		}
	}
}

// labelValuesLabel is the label of a label_values(...) variable query, or
// "" for any other query.
func labelValuesLabel(q string) string {
	q = strings.TrimSpace(q)
	if !strings.HasPrefix(q, "label_values(") || !strings.HasSuffix(q, ")") {
		return ""
	}
	inner := q[len("label_values(") : len(q)-1]
	return strings.TrimSpace(inner[strings.LastIndexByte(inner, ',')+1:])
}

func (l *linter) variables() {
	for _, v := range l.d.Templating.List {
		if v.Type == dashboard.VariableTypeQuery {
			l.datasource(0, "", "variable "+v.Name, v.Datasource)
		}
	}
}

// datasource checks that ref is the datasource variable.
func (l *linter) datasource(id uint32, panel, what string, ref *common.DataSourceRef) {
	if ref == nil {
		l.add(id, panel, RuleDatasource, what+" has no data source; want the ${datasource} variable")
		return
	}
	uid, typ := deref(ref.Uid), deref(ref.Type)
	if (uid != "${datasource}" && uid != "$datasource") || typ != "prometheus" {
		l.add(id, panel, RuleDatasource, fmt.Sprintf("%s reads data source %q of type %q; want the ${datasource} variable of type prometheus", what, uid, typ))
	}
}

func (l *linter) panel(p dashboard.Panel) {
	id, title := deref(p.Id), deref(p.Title)
	if title == "" {
		l.add(id, title, RuleTitle, p.Type+" panel without a title")
	}
	if deref(p.Description) == "" {
		l.add(id, title, RuleTitle, "no description")
	}
	if _, ok := unitless[p.Type]; !ok && (p.FieldConfig == nil || deref(p.FieldConfig.Defaults.Unit) == "") {
		l.add(id, title, RuleUnit, p.Type+" panel without a unit")
	}
	l.datasource(id, title, "panel", p.Datasource)
	if len(p.Targets) == 0 {
		l.add(id, title, RuleQuery, "no queries")
	}
	for i, t := range p.Targets {
		var q prometheus.Dataquery
		switch t := t.(type) {
		case prometheus.Dataquery:
			q = t
		case *prometheus.Dataquery:
			q = *t
		default:
			l.add(id, title, RuleQuery, fmt.Sprintf("query %d is a %s query, not a Prometheus one", i, t.DataqueryType()))
			continue
		}
		what := "query " + deref(q.RefId)
		l.datasource(id, title, what, q.Datasource)
		l.expr(id, title, what, q.Expr)
	}
}

// expr checks one panel query.
func (l *linter) expr(id uint32, title, what, expr string) {
	if strings.TrimSpace(expr) == "" {
		l.add(id, title, RuleQuery, what+" is empty")
		return
	}
	// Grafana's interval variables become sentinels; other variables are
	// left as they are, which parses where they belong: inside a matcher's
	// quoted value.
	filled := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		if v, ok := builtins[m[1]+m[2]+m[3]]; ok {
			return v
		}
		return ref
	})
	e, err := parser.NewParser(parser.Options{}).ParseExpr(filled)
	if err != nil {
		l.add(id, title, RuleQuery, fmt.Sprintf("%s does not parse: %v: %s", what, err, expr))
		return
	}
	scope := l.scope()
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.Call:
			l.rateRange(id, title, what, n)
		case *parser.VectorSelector:
			for _, s := range scope {
				if msg := l.scopeMatcher(n, s); msg != "" {
					l.add(id, title, RuleScopeMatcher, fmt.Sprintf("%s: %s in %s", what, msg, n))
				}
			}
		}
		return nil
	})
}

// rateRange checks the range of a rate, irate or increase call.
func (l *linter) rateRange(id uint32, title, what string, c *parser.Call) {
	allowed := map[time.Duration]bool{sentinelRateInterval: true}
	want := "$__rate_interval"
	switch c.Func.Name {
	case "rate", "irate":
	case "increase":
		allowed[sentinelRange] = true
		want += " or $__range"
	default:
		return
	}
	if len(c.Args) == 0 {
		return
	}
	arg := c.Args[0]
	for {
		p, ok := arg.(*parser.ParenExpr)
		if !ok {
			break
		}
		arg = p.Expr
	}
	var r time.Duration
	switch a := arg.(type) {
	case *parser.MatrixSelector:
		r = a.Range
	case *parser.SubqueryExpr:
		r = a.Range
	default:
		return
	}
	if !allowed[r] {
		l.add(id, title, RuleRateInterval, fmt.Sprintf("%s: %s over %s; want %s", what, c.Func.Name, rangeName(r), want))
	}
}

// rangeName says which range a parsed duration stands for.
func rangeName(r time.Duration) string {
	switch r {
	case sentinelRateInterval:
		return "$__rate_interval"
	case sentinelInterval:
		return "$__interval"
	case sentinelRange:
		return "$__range"
	}
	return "a fixed " + model.Duration(r).String()
}

// scopeMatcher says what is wrong with sel's matcher for s, or "".
func (l *linter) scopeMatcher(sel *parser.VectorSelector, s scope) string {
	v := l.vars[s.variable]
	multi := deref(v.Multi) || deref(v.IncludeAll)
	want := fmt.Sprintf(`%s="$%s"`, s.label, s.variable)
	if multi {
		want = fmt.Sprintf(`%s=~"$%s"`, s.label, s.variable)
	}
	problem := "no " + want + " matcher"
	for _, m := range sel.LabelMatchers {
		if m.Name != s.label {
			continue
		}
		ref := variableRef.FindStringSubmatch(m.Value)
		switch {
		case ref == nil || ref[0] != m.Value || ref[1]+ref[2]+ref[3] != s.variable:
			problem = fmt.Sprintf("%s is not matched against the %s variable; want %s", m, s.variable, want)
		case m.Type == labels.MatchRegexp, m.Type == labels.MatchEqual && !multi:
			return ""
		default:
			problem = fmt.Sprintf("%s; want %s", m, want)
		}
	}
	return problem
}
