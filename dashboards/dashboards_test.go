package dashboards_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/gantry-dev/gantry/dashboards"
)

// TestCommittedFilesAreGenerated: the JSON in dashboards/ and its copy in
// the kustomize component are exactly what the code renders, with no file
// missing or left over.
func TestCommittedFilesAreGenerated(t *testing.T) {
	files := generated(t)
	var want []string
	for _, f := range files {
		want = append(want, f.Name)
	}
	for _, dir := range []string{".", componentDir} {
		present, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range present {
			present[i] = filepath.Base(present[i])
		}
		slices.Sort(present)
		sorted := slices.Sorted(slices.Values(want))
		if !slices.Equal(present, sorted) {
			t.Errorf("%s holds %v, the code renders %v: run `go generate ./dashboards` (and delete stale files)", dir, present, sorted)
		}
		for _, f := range files {
			got, err := os.ReadFile(filepath.Join(dir, f.Name))
			if err != nil {
				continue // reported above
			}
			if !bytes.Equal(got, f.JSON) {
				t.Errorf("%s is not what the code renders: run `go generate ./dashboards`; diff (-committed +generated):\n%s",
					filepath.Join(dir, f.Name), cmp.Diff(string(got), string(f.JSON)))
			}
		}
	}
}

// TestSDKRoundTrip decodes each file with the SDK's strict decoder (unknown
// or missing required fields fail), validates it, and encodes it again to
// the same bytes: nothing in the files is outside the dashboard schema.
func TestSDKRoundTrip(t *testing.T) {
	// Panels and queries decode to their plugin types only when the
	// plugins are registered.
	plugins.RegisterDefaultPlugins()
	for _, c := range loadCommitted(t) {
		t.Run(c.name, func(t *testing.T) {
			var d dashboard.Dashboard
			if err := d.UnmarshalJSONStrict(c.raw); err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			if err := d.Validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			// The decoder leaves an empty row's "panels": [] as a nil slice,
			// which encodes as null; the builder (and Grafana) write [].
			for _, p := range d.Panels {
				if p.RowPanel != nil && p.RowPanel.Panels == nil {
					p.RowPanel.Panels = []dashboard.Panel{}
				}
			}
			again, err := dashboards.Render(d)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(c.raw), string(again)); diff != "" {
				t.Errorf("decode+encode changes the file (-file +re-encoded):\n%s", diff)
			}
		})
	}
}

// TestStructure checks what Grafana and the users of several dashboards
// rely on: unique uids and panel ids, one Prometheus data source variable
// that every panel, query and variable uses, variables that exist for every
// repeat, and descriptions and units on every panel.
func TestStructure(t *testing.T) {
	uids := map[string]string{}
	for _, c := range loadCommitted(t) {
		t.Run(c.name, func(t *testing.T) {
			b := c.b
			if other, dup := uids[b.UID]; dup {
				t.Errorf("uid %q is also %s's", b.UID, other)
			}
			uids[b.UID] = c.name
			if c.name != b.UID+".json" {
				t.Errorf("file %s holds uid %q; name files <uid>.json", c.name, b.UID)
			}
			if !slices.Contains(b.Tags, dashboards.Tag) {
				t.Errorf("tags %v lack %q, which the dashboard links use", b.Tags, dashboards.Tag)
			}
			if b.Editable {
				t.Error("editable: edits in Grafana would be lost on the next provisioning")
			}

			var dsVars []variable
			for _, v := range b.Templating.List {
				switch v.Type {
				case "datasource":
					dsVars = append(dsVars, v)
				case "query":
					checkDatasource(t, "variable "+v.Name, v.Datasource)
					if v.Refresh != int(dashboard.VariableRefreshOnTimeRangeChanged) {
						t.Errorf("variable %s: refresh %d, want on time range change", v.Name, v.Refresh)
					}
					if v.Multi && (!v.IncludeAll || v.AllValue != ".+") {
						t.Errorf("variable %s: multi-value variables offer All as .+", v.Name)
					}
				default:
					t.Errorf("variable %s has type %q", v.Name, v.Type)
				}
			}
			if len(dsVars) != 1 || dsVars[0].Name != "datasource" || dsVars[0].Query != "prometheus" {
				t.Errorf("want one datasource variable named datasource for prometheus, got %+v", dsVars)
			}

			ids := map[int]bool{}
			var walk func([]panel)
			walk = func(ps []panel) {
				for _, p := range ps {
					if p.ID == 0 || ids[p.ID] {
						t.Errorf("panel %q: id %d is missing or not unique", p.Title, p.ID)
					}
					ids[p.ID] = true
					if p.Repeat != "" {
						if v, ok := b.variable(p.Repeat); !ok || !v.Multi {
							t.Errorf("%s %q repeats over %q, which is not a multi-value variable", p.Type, p.Title, p.Repeat)
						}
					}
					walk(p.Panels)
				}
			}
			walk(b.Panels)

			for _, p := range b.allPanels() {
				if p.Title == "" || p.Description == "" {
					t.Errorf("panel %q (%s): title and description are required", p.Title, p.Type)
				}
				checkDatasource(t, "panel "+p.Title, p.Datasource)
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no queries", p.Title)
				}
				if p.Type != "state-timeline" && p.FieldConfig.Defaults.Unit == "" {
					t.Errorf("panel %q has no unit", p.Title)
				}
				for _, tg := range p.Targets {
					checkDatasource(t, "panel "+p.Title+" query "+tg.RefID, tg.Datasource)
				}
			}
		})
	}
}

func checkDatasource(t *testing.T, what string, ds *datasource) {
	t.Helper()
	if ds == nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
		t.Errorf("%s: datasource %+v, want the ${datasource} variable", what, ds)
	}
}

// scopedLabels are the labels that identify what a dashboard shows. A
// matcher on one of them must take its value from the variable named here
// (or test for absence with ""), never a hard-coded name.
var scopedLabels = map[string]string{
	"job":                     "job",
	"instance":                "instance",
	"namespace":               "namespace",
	"horizontalpodautoscaler": "hpa",
	"verticalpodautoscaler":   "vpa",
	"owner_name":              "workload",
	"pod":                     "",
	"node":                    "",
	"cluster":                 "",
}

// TestQueriesParse parses every panel query, and the selector or expression
// of every query variable, as PromQL once variables have sample values, and
// checks that identifying labels are only ever matched against variables.
// In dashboards with a namespace variable every selector is scoped by it.
func TestQueriesParse(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, c := range loadCommitted(t) {
		t.Run(c.name, func(t *testing.T) {
			_, hasNS := c.b.variable("namespace")
			checkSelectors := func(where, expr string, e parser.Expr, needNS bool) {
				for _, sel := range parser.ExtractSelectors(e) {
					scoped := false
					for _, m := range sel {
						v, ok := scopedLabels[m.Name]
						if !ok || m.Value == "" {
							continue
						}
						if v == "" || m.Value != samples[v] {
							t.Errorf("%s: %s matches %s against a fixed value; use a variable: %s", where, m.Name, m.String(), expr)
						}
						if m.Name == "namespace" && (m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp) {
							scoped = true
						}
					}
					if needNS && !scoped {
						t.Errorf("%s: a selector without a $namespace matcher (%v): %s", where, sel, expr)
					}
				}
			}

			for _, v := range c.b.Templating.List {
				if v.Type != "query" {
					continue
				}
				where := "variable " + v.Name
				q, err := substitute(v.Query)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				fn, args, err := variableQuery(q)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				switch {
				case fn == "query_result":
					e, err := p.ParseExpr(args[0])
					if err != nil {
						t.Errorf("%s: %v\n%s", where, err, args[0])
						continue
					}
					checkSelectors(where, v.Query, e, hasNS && v.Name != "namespace")
					if v.Regex == "" {
						t.Errorf("%s: query_result without a regex yields whole series lines", where)
					}
				case len(args) == 2:
					ms, err := p.ParseMetricSelector(args[0])
					if err != nil {
						t.Errorf("%s: selector %q: %v", where, args[0], err)
						continue
					}
					// The namespace variable lists namespaces: it is the one
					// query not scoped by $namespace.
					checkSelectors(where, v.Query, &parser.VectorSelector{LabelMatchers: ms}, hasNS && v.Name != "namespace")
					fallthrough
				default:
					label := args[len(args)-1]
					if !model.LabelName(label).IsValidLegacy() {
						t.Errorf("%s: %q is not a label name", where, label)
					}
				}
			}

			for _, pn := range c.b.allPanels() {
				for _, tg := range pn.Targets {
					where := "panel " + pn.Title + " query " + tg.RefID
					expr, err := substitute(tg.Expr)
					if err != nil {
						t.Errorf("%s: %v", where, err)
						continue
					}
					e, err := p.ParseExpr(expr)
					if err != nil {
						t.Errorf("%s: %v\n%s", where, err, expr)
						continue
					}
					checkSelectors(where, tg.Expr, e, hasNS)
					parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
						var r time.Duration
						switch n := n.(type) {
						case *parser.MatrixSelector:
							r = n.Range
						case *parser.SubqueryExpr:
							r = n.Range
						default:
							return nil
						}
						if !variableRanges[r] {
							t.Errorf("%s: fixed range %s; use $__rate_interval (or $__range): %s", where, model.Duration(r), tg.Expr)
						}
						return nil
					})
				}
			}
		})
	}
}
