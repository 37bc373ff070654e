package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// TestLoadGoodFiles loads every testdata/*.good.yaml and compares what was
// decoded, defaults applied, with testdata/<name>.golden.
func TestLoadGoodFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.good.yaml files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("decoded config differs from %s (-want +got):\n%s", golden, diff)
			}
			// What Load returns must itself be valid, and survive a round trip.
			if err := cfg.Validate(file); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
			again, err := Parse(got, "roundtrip.yaml")
			if err != nil {
				t.Fatalf("Parse of the marshalled config: %v", err)
			}
			if diff := cmp.Diff(cfg, again, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("round trip changed the config (-loaded +reparsed):\n%s", diff)
			}
		})
	}
}

// TestLoadDefaults pins the defaults a rule file gets where it says nothing.
func TestLoadDefaults(t *testing.T) {
	t.Run("resourceRules window defaults to one minute", func(t *testing.T) {
		cfg, err := Load("testdata/resource-rules.good.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Duration(cfg.ResourceRules.Window); got != time.Minute {
			t.Errorf("window = %v, want %v", got, time.Minute)
		}
	})
	t.Run("resourceRules window as written", func(t *testing.T) {
		cfg, err := Load("testdata/resource-window.good.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Duration(cfg.ResourceRules.Window); got != 5*time.Minute {
			t.Errorf("window = %v, want 5m", got)
		}
	})
	t.Run("external rules are namespaced unless they say otherwise", func(t *testing.T) {
		cfg, err := Load("testdata/external.good.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var got []bool
		for _, r := range cfg.ExternalRules {
			got = append(got, r.Resources.NamespacedOrDefault())
		}
		if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
			t.Errorf("NamespacedOrDefault per rule (-want +got):\n%s", diff)
		}
	})
	t.Run("no window on a rule stays zero", func(t *testing.T) {
		cfg, err := Load("testdata/custom.good.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var got []time.Duration
		for _, r := range cfg.Rules {
			got = append(got, time.Duration(r.Window))
		}
		if diff := cmp.Diff([]time.Duration{0, 30 * time.Second, 0}, got); diff != "" {
			t.Errorf("windows (-want +got):\n%s", diff)
		}
	})
	t.Run("merge keys copy a rule and explicit keys override it", func(t *testing.T) {
		cfg, err := Load("testdata/anchors.good.yaml")
		if err != nil {
			t.Fatal(err)
		}
		want := DiscoveryRule{
			SeriesQuery: `{__name__=~"^app_.*_bytes_total$",namespace!="",pod!=""}`,
			Resources: ResourceMapping{Overrides: map[string]GroupResource{
				"namespace": {Resource: "namespace"},
				"pod":       {Resource: "pod"},
			}},
			Name:         NameMapping{Matches: "^app_(.*)_bytes_total$", As: "${1}_bytes_per_second"},
			MetricsQuery: "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)",
		}
		if diff := cmp.Diff(want, cfg.Rules[1]); diff != "" {
			t.Errorf("rules[1] (-want +got):\n%s", diff)
		}
	})
}

// TestLoadBadFiles checks every testdata/*.bad.yaml against the complete
// list of problems it must report, one per line.
func TestLoadBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{
			file: "unknown-field.bad.yaml",
			want: []string{
				`testdata/unknown-field.bad.yaml:6: rules[0] (http_requests_total): resources.overrides.pod: unknown field "resouce", did you mean "resource"? (known fields: group, resource)`,
				`testdata/unknown-field.bad.yaml:8: rules[0] (http_requests_total): unknown field "metricQuery", did you mean "metricsQuery"? (known fields: seriesQuery, seriesFilters, resources, name, metricsQuery, logqlQuery, source, backend, window)`,
				`testdata/unknown-field.bad.yaml:10: rules[1] (queue_depth): unknown field "seriesfilters", did you mean "seriesFilters"? (known fields: seriesQuery, seriesFilters, resources, name, metricsQuery, logqlQuery, source, backend, window)`,
				`testdata/unknown-field.bad.yaml:13: top level: unknown field "externalrules", did you mean "externalRules"? (known fields: rules, externalRules, resourceRules, backends)`,
			},
		},
		{
			file: "name.bad.yaml",
			want: []string{
				"testdata/name.bad.yaml: rules[0] (http_requests_total): name.matches: not a regular expression: error parsing regexp: missing closing ): `^(.*_total$`",
				`testdata/name.bad.yaml: rules[1] (^app_(.*)_(total|count)$): name.as: required when name.matches "^app_(.*)_(total|count)$" has 2 capture groups`,
			},
		},
		{
			file: "series-filters.bad.yaml",
			want: []string{
				`testdata/series-filters.bad.yaml: rules[0] ({__name__=~"^cache_.*",namespace!=""}): seriesFilters[0]: set either is or isNot, not both`,
				`testdata/series-filters.bad.yaml: rules[0] ({__name__=~"^cache_.*",namespace!=""}): seriesFilters[1]: expected is or isNot`,
				"testdata/series-filters.bad.yaml: rules[0] ({__name__=~\"^cache_.*\",namespace!=\"\"}): seriesFilters[2].isNot: not a regular expression: error parsing regexp: missing closing ): `(_sum|_count`",
				"testdata/series-filters.bad.yaml: rules[0] ({__name__=~\"^cache_.*\",namespace!=\"\"}): seriesFilters[3].is: not a regular expression: error parsing regexp: missing argument to repetition operator: `*`",
			},
		},
		{
			file: "template.bad.yaml",
			want: []string{
				`testdata/template.bad.yaml: rules[0] (a_total): metricsQuery: not a valid template: line 1: bad character U+007D '}'`,
				`testdata/template.bad.yaml: rules[1] (b_total): metricsQuery: template does not render: line 1, column 18: <.Labels>: can't evaluate field Labels in type config.QueryArgs (fields: Series, LabelMatchers, LabelValuesByName, GroupBy, GroupBySlice)`,
				`testdata/template.bad.yaml: rules[2] (http_requests_total): metricsQuery: rendered query does not parse: 1:61: parse error: unexpected <by> in aggregation (rendered: sum(rate(sample_metric{namespace="default",pod=~"a|b"}[2m]) by (pod))`,
				`testdata/template.bad.yaml: rules[3] (c_total): metricsQuery: required: a query template such as 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'`,
				`testdata/template.bad.yaml: rules[4] (unnamed): seriesQuery: required: a series selector such as 'http_requests_total{namespace!=""}'`,
				`testdata/template.bad.yaml: rules[5] (rate(d_total[5m])): seriesQuery: not a series selector: 1:5: parse error: unexpected "("`,
				`testdata/template.bad.yaml: externalRules[0] (e): metricsQuery: rendered query does not parse: 1:52: parse error: unexpected "," in grouping opts, expected label (rendered: sum(sample_metric{namespace="default"}) by (topic, ,))`,
			},
		},
		{
			file: "window.bad.yaml",
			want: []string{
				`testdata/window.bad.yaml:4: rules[0] (a_total): window: expected a duration such as "1m", got "2 minutes"`,
				`testdata/window.bad.yaml:7: rules[1] (b_total): window: expected a duration such as "1m", got "120"`,
				`testdata/window.bad.yaml:10: rules[2] (c_total): window: expected a duration such as "1m", got a list`,
			},
		},
		{
			file: "resources.bad.yaml",
			want: []string{
				`testdata/resources.bad.yaml:24: rules[5] (f): resources.overrides.pod: expected a mapping, got "pod"`,
				`testdata/resources.bad.yaml:25: rules[5] (f): resources.namespaced: expected true or false, got "maybe"`,
				`testdata/resources.bad.yaml: rules[0] (a): resources.template: must use <<.Resource>> once, and <<.Group>> at most once`,
				`testdata/resources.bad.yaml: rules[1] (b): resources.template: only <<.Group>> and <<.Resource>> may appear in a label template, found <<.Namespace>>`,
				`testdata/resources.bad.yaml: rules[2] (c): resources.template: renders "kube-deployment", not a valid label name`,
				`testdata/resources.bad.yaml: rules[3] (d): resources.template: not a valid template: line 1: unclosed action`,
				`testdata/resources.bad.yaml: rules[4] (e): resources.overrides.namespace.resource: required: a resource such as {resource: "pod"}`,
				`testdata/resources.bad.yaml: rules[4] (e): resources.overrides: "pod-name" is not a valid label name`,
			},
		},
		{
			file: "sources.bad.yaml",
			want: []string{
				`testdata/sources.bad.yaml: rules[0] (a): metricsQuery, logqlQuery: set one of them, not both`,
				`testdata/sources.bad.yaml: rules[1] (^(.*)$): name.as: required: the metric's fixed name, such as 'web_errors_per_second' (log streams have no series name to derive one from)`,
				`testdata/sources.bad.yaml: rules[1] (^(.*)$): name.matches: not used by logqlQuery rules (log streams have no series name); remove it`,
				`testdata/sources.bad.yaml: rules[1] (^(.*)$): seriesFilters: not used by logqlQuery rules (log streams have no series name); remove them`,
				`testdata/sources.bad.yaml: rules[2] (c): source: logqlQuery rules run on "loki", not "prometheus"`,
				`testdata/sources.bad.yaml: rules[2] (c): logqlQuery: unterminated string literal at offset 45 (rendered: sum(rate({namespace="default",pod=~"a|b"} |= "x [1m])))`,
				`testdata/sources.bad.yaml: rules[3] (http_requests_total): source: "loki" runs a logqlQuery; a metricsQuery (PromQL) runs on "prometheus" or "local"`,
				`testdata/sources.bad.yaml: rules[4] (e): logqlQuery: no stream selector such as {app="web"} (rendered: sum(rate(pod[1m])))`,
				`testdata/sources.bad.yaml: rules[5] (f): logqlQuery: unbalanced ')' at offset 47 (rendered: sum(rate({namespace="default",pod=~"a|b"}[1m]))))`,
				`testdata/sources.bad.yaml: rules[6] (g_total): source: unknown backend "graphite": expected "prometheus", "local" or "loki"`,
			},
		},
		{
			file: "resource-rules.bad.yaml",
			want: []string{
				`testdata/resource-rules.bad.yaml:2: resourceRules: window: expected a duration such as "1m", got "1 minute"`,
				`testdata/resource-rules.bad.yaml: resourceRules.cpu: containerQuery: rendered query does not parse: 1:90: parse error: unclosed left parenthesis (rendered: sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="default",pod=~"a|b"}[1m]))`,
				`testdata/resource-rules.bad.yaml: resourceRules.cpu: nodeQuery: required: a query template such as 'sum by (<<.GroupBy>>) (...{<<.LabelMatchers>>})'`,
				`testdata/resource-rules.bad.yaml: resourceRules.memory: containerLabel: "container.name" is not a valid label name`,
			},
		},
		{
			file: "kinds.bad.yaml",
			want: []string{
				`testdata/kinds.bad.yaml:3: rules[0] (a_total): seriesFilters: expected a list, got "^a_"`,
				`testdata/kinds.bad.yaml:5: rules[1] (unnamed): seriesQuery: expected a string, got a mapping`,
				`testdata/kinds.bad.yaml:7: rules[1] (unnamed): metricsQuery: defined twice (first at line 6)`,
				`testdata/kinds.bad.yaml:9: rules[2] (c_total): name: expected a mapping, got "c"`,
				`testdata/kinds.bad.yaml:12: externalRules: expected a list, got a mapping`,
			},
		},
		{
			file: "multiple.bad.yaml",
			want: []string{
				`testdata/multiple.bad.yaml:15: rules[2] (latency_seconds): unknown field "windw", did you mean "window"? (known fields: seriesQuery, seriesFilters, resources, name, metricsQuery, logqlQuery, source, backend, window)`,
				`testdata/multiple.bad.yaml: rules[0] (http_requests_total): metricsQuery: rendered query does not parse: 1:61: parse error: unexpected <by> in aggregation (rendered: sum(rate(sample_metric{namespace="default",pod=~"a|b"}[2m]) by (pod))`,
				"testdata/multiple.bad.yaml: rules[2] (latency_seconds): name.matches: not a regular expression: error parsing regexp: missing closing ): `(latency`",
				`testdata/multiple.bad.yaml: externalRules[0] (queue_depth{queue!=""): seriesQuery: not a series selector: 1:22: parse error: unexpected end of input inside braces`,
				`testdata/multiple.bad.yaml: resourceRules.cpu: containerLabel: required: the label holding the container name, such as "container"`,
			},
		},
		{
			file: "merge.bad.yaml",
			want: []string{
				`testdata/merge.bad.yaml:11: rules[1] (b_total): resources: unknown field "tempalte", did you mean "template"? (known fields: template, overrides, namespaced)`,
				`testdata/merge.bad.yaml:12: rules[2] (c_total): merge key "<<": expected a mapping or a list of mappings, got "not a mapping"`,
			},
		},
		{
			// Without a guard, the walk of these never ended (a
			// stack overflow that killed the process).
			file: "aliases.bad.yaml",
			want: []string{
				`testdata/aliases.bad.yaml:4: rules[0] (a_total): alias *self refers to a mapping or list that contains it`,
				`testdata/aliases.bad.yaml:10: rules[1] (b_total): alias *listed refers to a mapping or list that contains it`,
				`testdata/aliases.bad.yaml:15: rules[2] (c_total): resources.overrides.namespace: alias *res refers to a mapping or list that contains it`,
			},
		},
		{
			// Without a bound, the walk of this took hours; the line is
			// where the bound was reached.
			file: "alias-bomb.bad.yaml",
			want: []string{
				`testdata/alias-bomb.bad.yaml:4: rules[5]: the document expands to more than 100000 nodes through aliases and merge keys`,
			},
		},
		{
			file: "not-a-mapping.bad.yaml",
			want: []string{
				`testdata/not-a-mapping.bad.yaml:1: top level: expected a mapping with rules, externalRules or resourceRules, got a list`,
			},
		},
		{
			// The line of the stray quote, not the one yaml.v3 names
			// (where the mapping it was reading began, counted from 0).
			file: "syntax.bad.yaml",
			want: []string{
				`testdata/syntax.bad.yaml:5: did not find expected key (a double-quoted value ends at the next "; single-quote a value that holds ", writing each ' in it as '')`,
			},
		},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", tc.file))
			if err == nil {
				t.Fatalf("Load succeeded, want errors; got config %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Load returned a config along with errors")
			}
			if diff := cmp.Diff(tc.want, errLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expected errors in TestLoadBadFiles", f)
		}
	}
}

func TestParse(t *testing.T) {
	const query = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
	tests := []struct {
		name    string
		yaml    string
		want    *Config
		wantErr []string
	}{
		{
			name: "empty file",
			yaml: "",
			want: &Config{},
		},
		{
			name: "only comments",
			yaml: "# nothing yet\n",
			want: &Config{},
		},
		{
			name: "explicit null document",
			yaml: "~\n",
			want: &Config{},
		},
		{
			name: "empty lists",
			yaml: "rules: []\nexternalRules: []\n",
			want: &Config{Rules: []DiscoveryRule{}, ExternalRules: []DiscoveryRule{}},
		},
		{
			name: "YAML 1.1 booleans, as gopkg.in/yaml.v2 read them",
			yaml: "externalRules:\n- seriesQuery: 'q{a!=\"\"}'\n  metricsQuery: '" + query + "'\n  resources: {namespaced: no}\n",
			want: &Config{ExternalRules: []DiscoveryRule{{
				SeriesQuery:  `q{a!=""}`,
				MetricsQuery: query,
				Resources:    ResourceMapping{Namespaced: ptr(false)},
			}}},
		},
		{
			name: "plain scalars that look like numbers are strings",
			yaml: "rules:\n- seriesQuery: 'x{a!=\"\"}'\n  name: {as: 2024}\n  metricsQuery: '" + query + "'\n",
			want: &Config{Rules: []DiscoveryRule{{
				SeriesQuery:  `x{a!=""}`,
				Name:         NameMapping{As: "2024"},
				MetricsQuery: query,
			}}},
		},
		{
			name:    "a mapping key twice at the top level",
			yaml:    "rules: []\nrules: []\n",
			wantErr: []string{`t.yaml:2: rules: defined twice (first at line 1)`},
		},
		{
			name:    "a scalar document",
			yaml:    "rules\n",
			wantErr: []string{`t.yaml:1: top level: expected a mapping with rules, externalRules or resourceRules, got "rules"`},
		},
		{
			name:    "tab indentation",
			yaml:    "rules:\n- seriesQuery: 'a'\n\tmetricsQuery: 'x'\n",
			wantErr: []string{`t.yaml:3: found character that cannot start any token`},
		},
		{
			name:    "an unknown field far from any known one gets no suggestion",
			yaml:    "rules: []\nprometheus: {url: http://prometheus:9090}\n",
			wantErr: []string{`t.yaml:2: top level: unknown field "prometheus" (known fields: rules, externalRules, resourceRules, backends)`},
		},
		{
			name:    "a field in the wrong case is suggested in the right one",
			yaml:    "Rules: []\n",
			wantErr: []string{`t.yaml:1: top level: unknown field "Rules", did you mean "rules"? (known fields: rules, externalRules, resourceRules, backends)`},
		},
		{
			name: "a misspelt field is reported once, not again as missing",
			yaml: "rules:\n- seriesQuery: 'x{a!=\"\"}'\n  metricsquery: '" + query + "'\n",
			wantErr: []string{
				`t.yaml:3: rules[0] (x): unknown field "metricsquery", did you mean "metricsQuery"? (known fields: seriesQuery, seriesFilters, resources, name, metricsQuery, logqlQuery, source, backend, window)`,
			},
		},
		{
			name: "a missing field in another rule is still reported",
			yaml: "rules:\n- seriesQuery: 'x{a!=\"\"}'\n  metricsquery: '" + query + "'\n- seriesQuery: 'y{a!=\"\"}'\n",
			wantErr: []string{
				`t.yaml:3: rules[0] (x): unknown field "metricsquery", did you mean "metricsQuery"? (known fields: seriesQuery, seriesFilters, resources, name, metricsQuery, logqlQuery, source, backend, window)`,
				`t.yaml: rules[1] (y): metricsQuery: required: a query template such as 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'`,
			},
		},
		{
			name: "a bad value is reported where it is used, anchor and alias alike",
			yaml: "rules:\n- seriesQuery: &q [x]\n  metricsQuery: '" + query + "'\n- seriesQuery: *q\n  metricsQuery: '" + query + "'\n",
			wantErr: []string{
				`t.yaml:2: rules[0] (unnamed): seriesQuery: expected a string, got a list`,
				`t.yaml:4: rules[1] (unnamed): seriesQuery: expected a string, got a list`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.yaml), "t.yaml")
			if diff := cmp.Diff(tc.wantErr, errLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want an error wrapping os.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), "reading config: ") {
		t.Errorf("error %q does not say what failed", err)
	}
}

// TestValidate covers what cannot be written in YAML, and that Validate on
// its own (for configs built in code) reports every problem.
func TestValidate(t *testing.T) {
	good := DiscoveryRule{SeriesQuery: `x{namespace!=""}`, MetricsQuery: "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"}
	goodResource := ResourceRule{
		ContainerQuery: "sum by (<<.GroupBy>>) (c{<<.LabelMatchers>>})",
		NodeQuery:      "sum by (<<.GroupBy>>) (n{<<.LabelMatchers>>})",
		ContainerLabel: "container",
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{
			name: "nothing to check",
			cfg:  Config{},
		},
		{
			name: "good rules",
			cfg:  Config{Rules: []DiscoveryRule{good}, ExternalRules: []DiscoveryRule{good}, ResourceRules: &ResourceRules{CPU: goodResource, Memory: goodResource}},
		},
		{
			name: "negative windows",
			cfg: Config{
				Rules:         []DiscoveryRule{func() DiscoveryRule { r := good; r.Window = Duration(-time.Second); return r }()},
				ResourceRules: &ResourceRules{CPU: goodResource, Memory: goodResource, Window: Duration(-time.Minute)},
			},
			want: []string{
				`c.yaml: rules[0] (x): window: must be positive`,
				`c.yaml: resourceRules: window: must be positive`,
			},
		},
		{
			name: "an empty resourceRules reports each missing field of both resources",
			cfg:  Config{ResourceRules: &ResourceRules{}},
			want: []string{
				`c.yaml: resourceRules.cpu: containerQuery: required: a query template such as 'sum by (<<.GroupBy>>) (...{<<.LabelMatchers>>})'`,
				`c.yaml: resourceRules.cpu: nodeQuery: required: a query template such as 'sum by (<<.GroupBy>>) (...{<<.LabelMatchers>>})'`,
				`c.yaml: resourceRules.cpu: containerLabel: required: the label holding the container name, such as "container"`,
				`c.yaml: resourceRules.memory: containerQuery: required: a query template such as 'sum by (<<.GroupBy>>) (...{<<.LabelMatchers>>})'`,
				`c.yaml: resourceRules.memory: nodeQuery: required: a query template such as 'sum by (<<.GroupBy>>) (...{<<.LabelMatchers>>})'`,
				`c.yaml: resourceRules.memory: containerLabel: required: the label holding the container name, such as "container"`,
			},
		},
		{
			name: "override errors come in label order",
			cfg: Config{Rules: []DiscoveryRule{func() DiscoveryRule {
				r := good
				r.Resources.Overrides = map[string]GroupResource{"z-label": {Resource: "pod"}, "a-label": {Resource: "pod"}, "m": {}, "b.label": {Resource: "node"}}
				return r
			}()}},
			want: []string{
				`c.yaml: rules[0] (x): resources.overrides: "a-label" is not a valid label name`,
				`c.yaml: rules[0] (x): resources.overrides: "b.label" is not a valid label name`,
				`c.yaml: rules[0] (x): resources.overrides.m.resource: required: a resource such as {resource: "pod"}`,
				`c.yaml: rules[0] (x): resources.overrides: "z-label" is not a valid label name`,
			},
		},
		{
			name: "whitespace is not a query",
			cfg:  Config{ExternalRules: []DiscoveryRule{{SeriesQuery: "  ", MetricsQuery: "\n"}}},
			want: []string{
				`c.yaml: externalRules[0] (  ): seriesQuery: required: a series selector such as 'http_requests_total{namespace!=""}'`,
				`c.yaml: externalRules[0] (  ): metricsQuery: required: a query template such as 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Validate must give the same answer every time, whatever the
			// map order.
			for range 5 {
				if diff := cmp.Diff(tc.want, errLines(tc.cfg.Validate("c.yaml"))); diff != "" {
					t.Fatalf("errors (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestNameMappingCompile(t *testing.T) {
	tests := []struct {
		name      string
		mapping   NameMapping
		wantRe    string
		wantAs    string
		wantErr   string
		series    string
		wantAfter string // series expanded with the replacement
	}{
		{
			name:      "defaults keep the whole name",
			mapping:   NameMapping{},
			wantRe:    ".*",
			wantAs:    "$0",
			series:    "http_requests_total",
			wantAfter: "http_requests_total",
		},
		{
			name:      "no capture group defaults to $0",
			mapping:   NameMapping{Matches: "^http_requests_total$"},
			wantRe:    "^http_requests_total$",
			wantAs:    "$0",
			series:    "http_requests_total",
			wantAfter: "http_requests_total",
		},
		{
			name:      "one capture group defaults to $1",
			mapping:   NameMapping{Matches: "^container_(.*)_seconds_total$"},
			wantRe:    "^container_(.*)_seconds_total$",
			wantAs:    "$1",
			series:    "container_cpu_usage_seconds_total",
			wantAfter: "cpu_usage",
		},
		{
			name:      "a named group counts as a capture group",
			mapping:   NameMapping{Matches: "^(?P<base>.*)_total$"},
			wantRe:    "^(?P<base>.*)_total$",
			wantAs:    "$1",
			series:    "jobs_total",
			wantAfter: "jobs",
		},
		{
			name:      "non-capturing groups do not count",
			mapping:   NameMapping{Matches: "^(?:http|grpc)_(.*)_total$"},
			wantRe:    "^(?:http|grpc)_(.*)_total$",
			wantAs:    "$1",
			series:    "grpc_calls_total",
			wantAfter: "calls",
		},
		{
			name:      "as with braces, from config.md",
			mapping:   NameMapping{Matches: "^(.*)_total$", As: "${1}_per_second"},
			wantRe:    "^(.*)_total$",
			wantAs:    "${1}_per_second",
			series:    "http_requests_total",
			wantAfter: "http_requests_per_second",
		},
		{
			name: "as without braces names a group called 1_per_second, as in Go",
			mapping: NameMapping{
				Matches: "^(.*)_total$", As: "$1_per_second",
			},
			wantRe:    "^(.*)_total$",
			wantAs:    "$1_per_second",
			series:    "http_requests_total",
			wantAfter: "",
		},
		{
			name:      "two groups with as",
			mapping:   NameMapping{Matches: "^(.*)_(total|count)$", As: "${1}_${2}"},
			wantRe:    "^(.*)_(total|count)$",
			wantAs:    "${1}_${2}",
			series:    "jobs_count",
			wantAfter: "jobs_count",
		},
		{
			name:    "two groups without as",
			mapping: NameMapping{Matches: "^(.*)_(total|count)$"},
			wantErr: `name.as: required when name.matches "^(.*)_(total|count)$" has 2 capture groups`,
		},
		{
			name:    "not a regexp",
			mapping: NameMapping{Matches: "^(.*_total$"},
			wantErr: "name.matches: not a regular expression: error parsing regexp: missing closing ): `^(.*_total$`",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			re, as, err := tc.mapping.Compile()
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Compile error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if re.String() != tc.wantRe || as != tc.wantAs {
				t.Errorf("Compile = (%q, %q), want (%q, %q)", re, as, tc.wantRe, tc.wantAs)
			}
			idx := re.FindStringSubmatchIndex(tc.series)
			if idx == nil {
				t.Fatalf("%q does not match %q", re, tc.series)
			}
			if got := string(re.ExpandString(nil, as, tc.series, idx)); got != tc.wantAfter {
				t.Errorf("%q becomes %q, want %q", tc.series, got, tc.wantAfter)
			}
		})
	}
}

func TestCheckQueryTemplate(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		external bool
		wantErr  string
	}{
		{
			name: "the documented fields",
			text: `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`,
		},
		{
			name: "LabelValuesByName with index",
			text: `sum(<<.Series>>{pod=~"<<index .LabelValuesByName "pod">>"}) by (pod)`,
		},
		{
			name: "LabelValuesByName with a label the sample request lacks",
			text: `sum(<<.Series>>{kubernetes_pod_name=~"<<.LabelValuesByName.kubernetes_pod_name>>"}) by (kubernetes_pod_name)`,
		},
		{
			name: "GroupBySlice ranged over",
			text: `sum by (<<range $i, $l := .GroupBySlice>><<if $i>>,<<end>><<$l>><<end>>) (<<.Series>>{<<.LabelMatchers>>})`,
		},
		{
			name: "a constant query, ignoring every field",
			text: `count(cheddar{sharp="true"})`,
		},
		{
			name:     "external: no group-by labels, and by () parses",
			text:     `sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)`,
			external: true,
		},
		{
			name:    "braces are not delimiters",
			text:    `sum({{.Series}}{<<.LabelMatchers>>})`,
			wantErr: `rendered query does not parse: 1:6: parse error: unexpected left brace '{' (rendered: sum({{.Series}}{namespace="default",pod=~"a|b"}))`,
		},
		{
			name:    "unknown field",
			text:    `sum(<<.Metric>>)`,
			wantErr: `template does not render: line 1, column 6: <.Metric>: can't evaluate field Metric in type config.QueryArgs (fields: Series, LabelMatchers, LabelValuesByName, GroupBy, GroupBySlice)`,
		},
		{
			name:    "unknown function",
			text:    `sum(<<lower .Series>>)`,
			wantErr: `not a valid template: line 1: function "lower" not defined`,
		},
		{
			name:    "renders an empty query",
			text:    `<<if false>>x<<end>>`,
			wantErr: `renders an empty query`,
		},
		{
			name:    "a trailing comma in the matcher list parses",
			text:    `sum(<<.Series>>{job="x",<<.LabelMatchers>>,}) by (<<.GroupBy>>)`,
			wantErr: ``,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkQueryTemplate(tc.text, tc.external)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("checkQueryTemplate error:\n got %s\nwant %s", got, tc.wantErr)
			}
		})
	}
}

func TestParseQueryTemplateDelimiters(t *testing.T) {
	tmpl, err := ParseQueryTemplate("<<.Series>>{{.Series}}")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, QueryArgs{Series: "up"}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "up{{.Series}}"; got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
	// At request time a missing map key is an error, not "<no value>" in a
	// query.
	tmpl, err = ParseQueryTemplate(`<<.LabelValuesByName.pod>>`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Execute(&b, QueryArgs{LabelValuesByName: map[string]string{}}); err == nil {
		t.Errorf("missing LabelValuesByName key rendered without error")
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		yaml    string
		want    time.Duration
		wantErr string
		out     string
	}{
		{yaml: `30s`, want: 30 * time.Second, out: "30s\n"},
		{yaml: `2m`, want: 2 * time.Minute, out: "2m\n"},
		{yaml: `90s`, want: 90 * time.Second, out: "1m30s\n"},
		{yaml: `1h30m`, want: 90 * time.Minute, out: "1h30m\n"},
		{yaml: `1d`, want: 24 * time.Hour, out: "1d\n"},
		{yaml: `""`, want: 0, out: "0s\n"},
		{yaml: `1.5m`, wantErr: `expected a duration such as "1m", got "1.5m"`},
		{yaml: `-1m`, wantErr: `expected a duration such as "1m", got "-1m"`},
		{yaml: `{m: 1}`, wantErr: `expected a duration such as "1m", got a mapping`},
	}
	for _, tc := range tests {
		t.Run(tc.yaml, func(t *testing.T) {
			var d Duration
			err := yaml.Unmarshal([]byte(tc.yaml), &d)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(d) != tc.want {
				t.Errorf("decoded %v, want %v", time.Duration(d), tc.want)
			}
			out, err := yaml.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.out {
				t.Errorf("marshalled %q, want %q", out, tc.out)
			}
		})
	}
}

func TestDisplayName(t *testing.T) {
	tests := []struct {
		name string
		rule DiscoveryRule
		want string
	}{
		{"a fixed as wins", DiscoveryRule{SeriesQuery: `cheddar{sharp="true"}`, Name: NameMapping{As: "cheesy_goodness"}}, "cheesy_goodness"},
		{"a metric name in the selector", DiscoveryRule{SeriesQuery: `http_requests_total{namespace!=""}`, Name: NameMapping{Matches: "^(.*)_total$", As: "${1}_per_second"}}, "http_requests_total"},
		{"__name__ equality", DiscoveryRule{SeriesQuery: `{__name__="queue_depth",topic!=""}`}, "queue_depth"},
		{"a name regexp and matches", DiscoveryRule{SeriesQuery: `{__name__=~"^container_.*"}`, Name: NameMapping{Matches: "^container_(.*)_seconds_total$"}}, "^container_(.*)_seconds_total$"},
		{"only a selector", DiscoveryRule{SeriesQuery: `{__name__=~"^container_.*"}`}, `{__name__=~"^container_.*"}`},
		{"nothing", DiscoveryRule{}, "unnamed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rule.DisplayName(); got != tc.want {
				t.Errorf("DisplayName = %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
