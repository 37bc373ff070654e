package dashboards_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/dashboards"
)

// componentDir is the kustomize component that packs the dashboards into
// ConfigMaps; it holds copies of the JSON files.
const componentDir = "../deploy/manifests/components/grafana-dashboards"

// samples are the values the tests give the dashboards' variables (and
// Grafana's built-in ones) before parsing or running a query. The
// Prometheus fixture (fixture_test.go) has series carrying each of them.
var samples = map[string]string{
	"datasource": "prometheus",
	"job":        "gantry",
	"instance":   "10.0.0.1:6443",
	"namespace":  "shop",
	"hpa":        "web",
	"vpa":        "api",
	"workload":   "web",

	// Odd durations, so that TestQueriesParse can tell a range that came
	// from a variable from a fixed one.
	"__rate_interval": "61s",
	"__interval":      "17s",
	"__interval_ms":   "17000",
	"__range":         "3601s",
	"__range_s":       "3601",
	"__range_ms":      "3601000",
}

// variableRanges are the durations of the range variables' samples.
var variableRanges = map[time.Duration]bool{61 * time.Second: true, 17 * time.Second: true, 3601 * time.Second: true}

// varRef matches Grafana's variable syntaxes: $name, ${name}, ${name:format}
// and [[name]]. "$1" in label_replace is not one: names start with a letter
// or an underscore.
var varRef = regexp.MustCompile(`\$\{([A-Za-z_]\w*)(?::[\w]+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]`)

// substitute replaces every variable reference in expr by its sample value;
// a variable without one is an error (a typo, or a variable the dashboard
// lacks).
func substitute(expr string) (string, error) { return substituteWith(expr, samples) }

// substituteWith is substitute with other values.
func substituteWith(expr string, values map[string]string) (string, error) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		v, ok := values[name]
		if !ok {
			unknown = append(unknown, name)
			return ref
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("no sample value for variable(s) %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// board is the part of a dashboard's JSON the tests walk.
type board struct {
	UID        string   `json:"uid"`
	Title      string   `json:"title"`
	Tags       []string `json:"tags"`
	Editable   bool     `json:"editable"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Query      string      `json:"query"`
	Regex      string      `json:"regex"`
	Multi      bool        `json:"multi"`
	IncludeAll bool        `json:"includeAll"`
	AllValue   string      `json:"allValue"`
	Refresh    int         `json:"refresh"`
	Datasource *datasource `json:"datasource"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Repeat      string      `json:"repeat"`
	Datasource  *datasource `json:"datasource"`
	Targets     []target    `json:"targets"`
	Panels      []panel     `json:"panels"` // of a collapsed row
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type target struct {
	Expr       string      `json:"expr"`
	RefID      string      `json:"refId"`
	Instant    bool        `json:"instant"`
	Datasource *datasource `json:"datasource"`
}

// committed is one dashboard file of the repository.
type committed struct {
	name string
	raw  []byte
	b    board
}

// loadCommitted reads dashboards/*.json.
func loadCommitted(t *testing.T) []committed {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards/*.json: run `go generate ./dashboards`")
	}
	var out []committed
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := committed{name: f, raw: raw}
		if err := json.Unmarshal(raw, &c.b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, c)
	}
	return out
}

// allPanels lists the panels of a dashboard, those inside collapsed rows
// included, rows excluded.
func (b board) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(b.Panels)
	return out
}

func (b board) variable(name string) (variable, bool) {
	i := slices.IndexFunc(b.Templating.List, func(v variable) bool { return v.Name == name })
	if i < 0 {
		return variable{}, false
	}
	return b.Templating.List[i], true
}

// generated renders the dashboards from code, once per test binary.
func generated(t *testing.T) []dashboards.File {
	t.Helper()
	files, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// variableQuery splits a Prometheus query variable's query into Grafana's
// function and its arguments: label_values(selector, label),
// label_values(label) or query_result(expr).
func variableQuery(q string) (fn string, args []string, err error) {
	open := strings.IndexByte(q, '(')
	if open < 0 || !strings.HasSuffix(q, ")") {
		return "", nil, fmt.Errorf("%q is not a function call", q)
	}
	fn, inner := q[:open], q[open+1:len(q)-1]
	switch fn {
	case "query_result":
		return fn, []string{inner}, nil
	case "label_values":
		// The label is after the last comma outside braces and quotes.
		depth, quoted, split := 0, false, -1
		for i, r := range inner {
			switch {
			case r == '"' && (i == 0 || inner[i-1] != '\\'):
				quoted = !quoted
			case quoted:
			case r == '{' || r == '(':
				depth++
			case r == '}' || r == ')':
				depth--
			case r == ',' && depth == 0:
				split = i
			}
		}
		if split < 0 {
			return fn, []string{strings.TrimSpace(inner)}, nil
		}
		return fn, []string{strings.TrimSpace(inner[:split]), strings.TrimSpace(inner[split+1:])}, nil
	default:
		return "", nil, fmt.Errorf("%q: unsupported variable function %q", q, fn)
	}
}
