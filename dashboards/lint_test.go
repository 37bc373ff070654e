package dashboards_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/gantry-dev/gantry/dashboards"
)

// decode reads a committed dashboard into the SDK's model, as Lint takes it.
func decode(t *testing.T, file string) dashboard.Dashboard {
	t.Helper()
	plugins.RegisterDefaultPlugins()
	for _, c := range loadCommitted(t) {
		if c.name != file {
			continue
		}
		var d dashboard.Dashboard
		if err := d.UnmarshalJSONStrict(c.raw); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return d
	}
	t.Fatalf("no dashboard %s", file)
	return dashboard.Dashboard{}
}

// TestLintCommitted: every committed dashboard passes every rule.
func TestLintCommitted(t *testing.T) {
	for _, c := range loadCommitted(t) {
		t.Run(c.name, func(t *testing.T) {
			for _, f := range dashboards.Lint(decode(t, c.name)) {
				t.Error(f)
			}
		})
	}
}

// panelNamed finds a panel (not a row) by title, in rows too.
func panelNamed(t *testing.T, d *dashboard.Dashboard, title string) *dashboard.Panel {
	t.Helper()
	for _, p := range d.Panels {
		if p.Panel != nil && deref(p.Panel.Title) == title {
			return p.Panel
		}
		if p.RowPanel != nil {
			for i := range p.RowPanel.Panels {
				if deref(p.RowPanel.Panels[i].Title) == title {
					return &p.RowPanel.Panels[i]
				}
			}
		}
	}
	t.Fatalf("%s has no panel %q", deref(d.Title), title)
	return nil
}

// query is a panel's first Prometheus query.
func query(t *testing.T, d *dashboard.Dashboard, panel string) *prometheus.Dataquery {
	t.Helper()
	p := panelNamed(t, d, panel)
	q, ok := p.Targets[0].(*prometheus.Dataquery)
	if !ok {
		t.Fatalf("panel %q: query is a %T", panel, p.Targets[0])
	}
	return q
}

// edit replaces the first from in a panel's first query by to.
func edit(panel, from, to string) func(*testing.T, *dashboard.Dashboard) {
	return func(t *testing.T, d *dashboard.Dashboard) {
		q := query(t, d, panel)
		if !strings.Contains(q.Expr, from) {
			t.Fatalf("panel %q: %s lacks %s", panel, q.Expr, from)
		}
		q.Expr = strings.Replace(q.Expr, from, to, 1)
	}
}

func variableNamed(t *testing.T, d *dashboard.Dashboard, name string) *dashboard.VariableModel {
	t.Helper()
	for i := range d.Templating.List {
		if d.Templating.List[i].Name == name {
			return &d.Templating.List[i]
		}
	}
	t.Fatalf("%s has no variable %s", deref(d.Title), name)
	return nil
}

func firstRow(t *testing.T, d *dashboard.Dashboard) *dashboard.RowPanel {
	t.Helper()
	for _, p := range d.Panels {
		if p.RowPanel != nil {
			return p.RowPanel
		}
	}
	t.Fatalf("%s has no row", deref(d.Title))
	return nil
}

const (
	overview    = "gantry-overview.json"
	autoscaling = "gantry-autoscaling.json"
	workloads   = "gantry-workloads.json"
)

// TestLintRules breaks one committed dashboard in one way per case and
// checks that Lint reports it under the rule that covers it, naming the
// dashboard, the panel and what is wrong, and under no rule but those
// listed (each rule passes on every committed dashboard:
// TestLintCommitted).
func TestLintRules(t *testing.T) {
	otherDatasource := &common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("P1809F7CD0C75ACF3")}
	for _, tc := range []struct {
		name   string
		file   string
		mutate func(*testing.T, *dashboard.Dashboard)
		rules  []string // the first must be reported; the others may be
		want   string   // in a finding's String()
	}{
		{
			name: "editable dashboard", file: overview, rules: []string{dashboards.RuleEditable},
			mutate: func(_ *testing.T, d *dashboard.Dashboard) { d.Editable = ptr(true) },
			want:   "Gantry / Overview: editable: editable",
		},
		{
			name: "editable left to Grafana's default", file: autoscaling, rules: []string{dashboards.RuleEditable},
			mutate: func(_ *testing.T, d *dashboard.Dashboard) { d.Editable = nil },
			want:   "Gantry / Autoscaling: editable",
		},
		{
			name: "panel names a data source", file: overview, rules: []string{dashboards.RuleDatasource},
			mutate: func(t *testing.T, d *dashboard.Dashboard) {
				panelNamed(t, d, "Request rate").Datasource = otherDatasource
			},
			want: `panel 2 "Request rate": datasource: panel reads data source "P1809F7CD0C75ACF3"`,
		},
		{
			name: "query names a data source", file: autoscaling, rules: []string{dashboards.RuleDatasource},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { query(t, d, "Replicas").Datasource = otherDatasource },
			want:   `"Replicas": datasource: query A reads data source "P1809F7CD0C75ACF3"`,
		},
		{
			name: "query without a data source", file: workloads, rules: []string{dashboards.RuleDatasource},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { query(t, d, "CPU usage by pod").Datasource = nil },
			want:   `"CPU usage by pod": datasource: query A has no data source`,
		},
		{
			name: "variable names a data source", file: overview, rules: []string{dashboards.RuleDatasource},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { variableNamed(t, d, "job").Datasource = otherDatasource },
			want:   `Gantry / Overview: datasource: variable job reads data source "P1809F7CD0C75ACF3"`,
		},
		{
			name: "a second data source variable", file: workloads, rules: []string{dashboards.RuleDatasource},
			mutate: func(_ *testing.T, d *dashboard.Dashboard) {
				d.Templating.List = append(d.Templating.List, dashboard.VariableModel{
					Type: dashboard.VariableTypeDatasource, Name: "loki", Query: &dashboard.StringOrMap{String: ptr("loki")},
				})
			},
			want: "want one data source variable named datasource for prometheus, have [datasource loki]",
		},
		{
			name: "duplicate panel id", file: overview, rules: []string{dashboards.RulePanelID},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { panelNamed(t, d, "Goroutines").Id = ptr(uint32(2)) },
			want:   `panel 2 "Goroutines": panel-id: id 2 is also panel "Request rate"'s`,
		},
		{
			name: "duplicate row id", file: workloads, rules: []string{dashboards.RulePanelID},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { panelNamed(t, d, "CPU usage").Id = ptr(firstRow(t, d).Id) },
			want:   `"CPU usage": panel-id: id 1 is also panel "Totals"'s`,
		},
		{
			name: "panel without an id", file: autoscaling, rules: []string{dashboards.RulePanelID},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { panelNamed(t, d, "Conditions").Id = nil },
			want:   `panel 0 "Conditions": panel-id: no id`,
		},
		{
			name: "panel without a title", file: overview, rules: []string{dashboards.RuleTitle},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { panelNamed(t, d, "CPU").Title = nil },
			want:   `panel 33 "": title: timeseries panel without a title`,
		},
		{
			name: "panel without a description", file: autoscaling, rules: []string{dashboards.RuleTitle},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { panelNamed(t, d, "HPAs").Description = ptr("") },
			want:   `"HPAs": title: no description`,
		},
		{
			name: "row without a title", file: workloads, rules: []string{dashboards.RuleTitle},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { firstRow(t, d).Title = nil },
			want:   "panel 1 \"\": title: row without a title",
		},
		{
			name: "time series without a unit", file: overview, rules: []string{dashboards.RuleUnit},
			mutate: func(t *testing.T, d *dashboard.Dashboard) {
				panelNamed(t, d, "Request latency").FieldConfig.Defaults.Unit = nil
			},
			want: `"Request latency": unit: timeseries panel without a unit`,
		},
		{
			name: "stat without a unit", file: workloads, rules: []string{dashboards.RuleUnit},
			mutate: func(t *testing.T, d *dashboard.Dashboard) {
				panelNamed(t, d, "Memory usage").FieldConfig.Defaults.Unit = ptr("")
			},
			want: `"Memory usage": unit: stat panel without a unit`,
		},
		{
			name: "panel without queries", file: autoscaling, rules: []string{dashboards.RuleQuery},
			mutate: func(t *testing.T, d *dashboard.Dashboard) { panelNamed(t, d, "Replicas").Targets = nil },
			want:   `"Replicas": query: no queries`,
		},
		{
			name: "query that does not parse", file: overview, rules: []string{dashboards.RuleQuery},
			mutate: edit("Request rate", "sum(", "sum(("),
			want:   `"Request rate": query: query A does not parse`,
		},
		{
			name: "rate over a fixed range", file: overview, rules: []string{dashboards.RuleRateInterval},
			mutate: edit("Request rate", "[$__rate_interval]", "[5m]"),
			want:   `"Request rate": rate-interval: query A: rate over a fixed 5m; want $__rate_interval`,
		},
		{
			name: "rate over $__interval", file: workloads, rules: []string{dashboards.RuleRateInterval},
			mutate: edit("CPU usage by pod", "[$__rate_interval]", "[${__interval}]"),
			want:   "rate over $__interval; want $__rate_interval",
		},
		{
			name: "rate over $__range", file: overview, rules: []string{dashboards.RuleRateInterval},
			mutate: edit("CPU", "[$__rate_interval]", "[$__range]"),
			want:   "rate over $__range; want $__rate_interval",
		},
		{
			name: "irate over a fixed range", file: overview, rules: []string{dashboards.RuleRateInterval},
			mutate: edit("CPU", "rate(process_cpu_seconds_total{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval])", "irate(process_cpu_seconds_total{job=~\"$job\", instance=~\"$instance\"}[1m])"),
			want:   "irate over a fixed 1m",
		},
		{
			name: "increase over a fixed range", file: overview, rules: []string{dashboards.RuleRateInterval},
			mutate: edit("Relist failures", "[$__range]", "[1h]"),
			want:   `"Relist failures": rate-interval: query A: increase over a fixed 1h; want $__rate_interval or $__range`,
		},
		{
			name: "rate of a subquery over a fixed range", file: overview, rules: []string{dashboards.RuleRateInterval},
			mutate: edit("CPU", "[$__rate_interval]", "[$__rate_interval:]) + rate(process_cpu_seconds_total{job=~\"$job\", instance=~\"$instance\"}[10m:1m]"),
			want:   "rate over a fixed 10m",
		},
		{
			name: "selector without the job matcher", file: overview, rules: []string{dashboards.RuleScopeMatcher},
			mutate: edit("Request rate", `job=~"$job", `, ""),
			want:   `"Request rate": scope-matcher: query A: no job=~"$job" matcher in gantry_requests_total{instance=~"$instance"}`,
		},
		{
			name: "multi-value variable matched with =", file: overview, rules: []string{dashboards.RuleScopeMatcher},
			mutate: edit("Goroutines", `instance=~"$instance"`, `instance="$instance"`),
			want:   `instance="$instance"; want instance=~"$instance"`,
		},
		{
			name: "matcher on another variable", file: overview, rules: []string{dashboards.RuleScopeMatcher},
			mutate: edit("Memory", `job=~"$job"`, `job=~"$instance"`),
			want:   `job=~"$instance" is not matched against the job variable`,
		},
		{
			name: "matcher on a fixed value", file: overview, rules: []string{dashboards.RuleScopeMatcher},
			mutate: edit("Memory", `job=~"$job"`, `job="gantry"`),
			want:   `job="gantry" is not matched against the job variable`,
		},
		{
			name: "selector without the namespace matcher", file: workloads, rules: []string{dashboards.RuleScopeMatcher},
			mutate: edit("Memory usage by pod", `namespace="$namespace", `, ""),
			want:   `"Memory usage by pod": scope-matcher: query A: no namespace="$namespace" matcher in container_memory_working_set_bytes{container!=""}`,
		},
		{
			name: "scope variable missing", file: overview, rules: []string{dashboards.RuleScopeVariable},
			mutate: func(_ *testing.T, d *dashboard.Dashboard) {
				d.Templating.List = slices.DeleteFunc(d.Templating.List, func(v dashboard.VariableModel) bool { return v.Name == "instance" })
			},
			want: "Gantry / Overview: scope-variable: no instance variable to scope the instance label by",
		},
		{
			name: "scope variable lists another label", file: overview, rules: []string{dashboards.RuleScopeVariable},
			mutate: func(t *testing.T, d *dashboard.Dashboard) {
				variableNamed(t, d, "job").Query = &dashboard.StringOrMap{String: ptr("label_values(up, pod)")}
			},
			want: `variable job lists "label_values(up, pod)", want label_values(..., job)`,
		},
		{
			// The scopes table names its dashboards by uid: under another
			// uid the autoscaling dashboard falls under the job and
			// instance scope, which it does not follow.
			name: "scope exceptions name their dashboards", file: autoscaling,
			rules:  []string{dashboards.RuleScopeVariable, dashboards.RuleScopeMatcher},
			mutate: func(_ *testing.T, d *dashboard.Dashboard) { d.Uid = ptr("gantry-something-else") },
			want:   "Gantry / Autoscaling: scope-variable: no job variable to scope the job label by",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decode(t, tc.file)
			tc.mutate(t, &d)
			fs := dashboards.Lint(d)
			if len(fs) == 0 {
				t.Fatalf("no finding; want %s", tc.rules[0])
			}
			found := false
			for _, f := range fs {
				if !slices.Contains(tc.rules, f.Rule) {
					t.Errorf("unexpected rule %s: %s", f.Rule, f)
				}
				if f.Rule == tc.rules[0] && strings.Contains(f.String(), tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s finding saying %q in:\n%s", tc.rules[0], tc.want, findings(fs))
			}
		})
	}
}

func findings(fs []dashboards.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
