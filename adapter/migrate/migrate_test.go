package migrate

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/metricrules"
	"github.com/gantry-dev/gantry/adapter/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenCase is one real config split with one set of options; its
// manifests go to testdata/golden/<name>.yaml (when any rule moves) and its
// report to testdata/golden/<name>.report.
type goldenCase struct {
	name string
	file string
	opts Options
}

// goldenCases are the config examples of the repository: the shipped
// ConfigMap, every good file of adapter/config's tests, and a central
// config of a cluster shared by teams.
func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	cases := []goldenCase{
		{name: "teams", file: "testdata/teams.yaml"},
		{name: "teams-allowed-backends", file: "testdata/teams.yaml", opts: Options{AllowedBackends: []string{"local", "loki"}, Name: "from-central"}},
		{name: "teams-max-rules", file: "testdata/teams.yaml", opts: Options{MaxRulesPerNamespace: 1}},
		{name: "teams-kubernetes-namespace", file: "testdata/teams.yaml", opts: Options{NamespaceLabel: "kubernetes_namespace"}},
		{name: "configmap", file: "../../deploy/manifests/configmap.yaml"},
	}
	goods, err := filepath.Glob("../config/testdata/*.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(goods) == 0 {
		t.Fatal("no config examples in ../config/testdata")
	}
	for _, f := range goods {
		cases = append(cases, goldenCase{name: "config-" + strings.TrimSuffix(filepath.Base(f), ".good.yaml"), file: f})
	}
	return cases
}

func split(t *testing.T, tc goldenCase) (*Plan, []byte, string) {
	t.Helper()
	cfg, name, err := Load(tc.file)
	if err != nil {
		t.Fatal(err)
	}
	plan := Split(cfg, name, tc.opts)
	var manifests, report bytes.Buffer
	if err := plan.WriteManifests(&manifests); err != nil {
		t.Fatal(err)
	}
	plan.Report(&report)
	return plan, manifests.Bytes(), report.String()
}

// TestGolden splits each example and compares manifests and report with
// the reviewed ones.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, manifests, report := split(t, tc)
			checkGolden(t, filepath.Join("testdata", "golden", tc.name+".report"), []byte(report))
			checkGolden(t, filepath.Join("testdata", "golden", tc.name+".yaml"), manifests)
		})
	}
}

// checkGolden compares got with the golden file; an empty got means the
// file must not exist.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if len(got) == 0 {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && len(got) == 0 {
		return
	}
	if err != nil {
		t.Fatalf("%v (run go test ./adapter/migrate -run TestGolden -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it after review):\n%s", path, diff)
	}
}

// TestManifestsAreTheRules reads every emitted manifest back: its spec,
// given to the config loader as a rule file, loads strictly (the spec's
// rules are the config file's rule format, nothing added or renamed) and
// gives back the very rules that moved; each compiles and passes the
// namespace enforcement of its MetricRule's namespace, and Gantry's own
// MetricRule compiler (its webhook's and controller's) accepts the
// resource, so a team can apply the output as it is.
func TestManifestsAreTheRules(t *testing.T) {
	moved := 0
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Load(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			plan, manifests, _ := split(t, tc)
			label := tc.opts.withDefaults().NamespaceLabel
			original := map[string]config.DiscoveryRule{}
			for i, r := range cfg.Rules {
				original[fmt.Sprintf("rules[%d] (%s)", i, r.DisplayName())] = r
			}
			for i, r := range cfg.ExternalRules {
				original[fmt.Sprintf("externalRules[%d] (%s)", i, r.DisplayName())] = r
			}
			var want []config.DiscoveryRule
			for _, d := range plan.Decisions {
				if d.Moves() {
					r := original[d.Rule]
					r.Resources.Namespaced = nil // written as the default
					want = append(want, r)
				}
			}
			moved += len(want)
			var got []config.DiscoveryRule
			dec := yaml.NewDecoder(bytes.NewReader(manifests))
			for doc := 0; ; doc++ {
				var m struct {
					APIVersion string `yaml:"apiVersion"`
					Kind       string `yaml:"kind"`
					Metadata   struct {
						Name      string `yaml:"name"`
						Namespace string `yaml:"namespace"`
					} `yaml:"metadata"`
					Spec yaml.Node `yaml:"spec"`
				}
				if err := dec.Decode(&m); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatalf("document %d: %v", doc, err)
				}
				if m.APIVersion != APIVersion || m.Kind != Kind || m.Metadata.Namespace == "" || m.Metadata.Name == "" {
					t.Fatalf("document %d: %s %s %s/%s, want a MetricRule with a namespace and a name", doc, m.APIVersion, m.Kind, m.Metadata.Namespace, m.Metadata.Name)
				}
				spec, err := yaml.Marshal(&m.Spec)
				if err != nil {
					t.Fatal(err)
				}
				file := fmt.Sprintf("MetricRule %s/%s", m.Metadata.Namespace, m.Metadata.Name)
				specCfg, err := config.Parse(spec, file)
				if err != nil {
					t.Fatalf("the spec does not load as a rule file: %v", err)
				}
				if specCfg.ResourceRules != nil || len(specCfg.Backends) > 0 {
					t.Errorf("%s: spec has resourceRules or backends", file)
				}
				for _, external := range []bool{false, true} {
					list := specCfg.Rules
					if external {
						list = specCfg.ExternalRules
					}
					for i, r := range list {
						rule, err := rules.Compile(fmt.Sprintf("%s spec.rules[%d]", file, i), r, external, newOfflineMapper())
						if err != nil {
							t.Fatal(err)
						}
						if err := rule.Confine(label, m.Metadata.Namespace); err != nil {
							t.Errorf("%s: not confined to its namespace: %v", rule.ID, err)
						}
					}
				}
				// And as Gantry's webhook and controller compile a
				// MetricRule, with every source allowed but the ones the
				// split was told to refuse.
				var specMap map[string]any
				if err := m.Spec.Decode(&specMap); err != nil {
					t.Fatal(err)
				}
				env := &metricrules.Env{
					Mapper:          newOfflineMapper(),
					Sources:         []string{config.SourcePrometheus, config.SourceLoki, config.SourceLocal},
					AllowedBackends: append([]string{config.SourcePrometheus}, tc.opts.AllowedBackends...),
					NamespaceLabel:  label,
				}
				if _, refusal := metricrules.Compile(m.Metadata.Namespace, m.Metadata.Name, specMap, env); refusal != nil {
					t.Errorf("%s: Gantry would refuse it: %s: %s", file, refusal.Reason, refusal.Full())
				}
				got = append(got, specCfg.Rules...)
				got = append(got, specCfg.ExternalRules...)
			}
			// Rules come out grouped by namespace; compare as sets.
			key := func(r config.DiscoveryRule) string { return fmt.Sprintf("%#v", r) }
			if diff := cmp.Diff(sorted(want, key), sorted(got, key)); diff != "" {
				t.Errorf("the manifests' rules are not the moved ones (-moved +manifests):\n%s", diff)
			}
		})
	}
	if moved == 0 {
		t.Fatal("no example moves any rule: the test checks nothing")
	}
}

func sorted(rs []config.DiscoveryRule, key func(config.DiscoveryRule) string) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = key(r)
	}
	slices.Sort(out)
	return out
}

// TestSeriesNamespace covers each way a seriesQuery names its namespace.
func TestSeriesNamespace(t *testing.T) {
	cases := []struct {
		name, query, wantNS, wantReason string
	}{
		{name: "one equality matcher", query: `http_requests_total{namespace="shop",pod!=""}`, wantNS: "shop"},
		{name: "in braces with a name matcher", query: `{__name__=~"http_.*",namespace="shop"}`, wantNS: "shop"},
		{name: "no namespace matcher", query: `http_requests_total{pod!=""}`, wantReason: `seriesQuery: no namespace matcher: the rule serves every namespace`},
		{name: "not empty", query: `x{namespace!=""}`, wantReason: `seriesQuery: namespace!="" selects every namespace`},
		{name: "not one", query: `x{namespace!="kube-system"}`, wantReason: `seriesQuery: namespace!="kube-system" selects every namespace but one`},
		{name: "regexp of one name", query: `x{namespace=~"shop"}`, wantReason: `seriesQuery: namespace=~"shop" is a regular expression, which may select several namespaces`},
		{name: "negative regexp", query: `x{namespace!~"kube-.*"}`, wantReason: `seriesQuery: namespace!~"kube-.*" is a regular expression, which may select several namespaces`},
		{name: "empty", query: `x{namespace=""}`, wantReason: `seriesQuery: namespace="" selects series without a namespace`},
		{name: "the same namespace twice", query: `x{namespace="shop",namespace="shop"}`, wantReason: `seriesQuery: 2 matchers on namespace (namespace="shop", namespace="shop"); a rule moves only with one namespace="<namespace>"`},
		{name: "equality and regexp", query: `x{namespace="shop",namespace=~"s.*"}`, wantReason: `seriesQuery: 2 matchers on namespace (namespace="shop", namespace=~"s.*"); a rule moves only with one namespace="<namespace>"`},
		{name: "not a namespace name", query: `x{namespace="Shop_1"}`, wantReason: `seriesQuery: namespace="Shop_1": "Shop_1" is not a namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{name: "another label", query: `x{kubernetes_namespace="shop"}`, wantReason: `seriesQuery: no namespace matcher: the rule serves every namespace`},
		{name: "LogQL stream selector", query: `{app="web",namespace="shop"}`, wantNS: "shop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns, reason := seriesNamespace(tc.query, "namespace")
			if ns != tc.wantNS || reason != tc.wantReason {
				t.Errorf("seriesNamespace(%s) = %q, %q; want %q, %q", tc.query, ns, reason, tc.wantNS, tc.wantReason)
			}
		})
	}
}

// TestLoadConfigMap reads the rule file out of a ConfigMap, and says which
// key it cannot choose.
func TestLoadConfigMap(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	one := write("one.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  rules.yaml: |\n    rules:\n    - seriesQuery: 'x{namespace=\"a\"}'\n      metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})\n")
	cfg, name, err := Load(one)
	if err != nil {
		t.Fatal(err)
	}
	if name != one+" data.rules.yaml" || len(cfg.Rules) != 1 {
		t.Errorf("Load(%s) = %d rules named %q", one, len(cfg.Rules), name)
	}
	two := write("two.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a.yaml: ''\n  b.yaml: ''\n")
	_, _, err = Load(two)
	want := two + ": a ConfigMap without a data key config.yaml, and 2 other keys (a.yaml, b.yaml): which one is the rule file?"
	if err == nil || err.Error() != want {
		t.Errorf("Load(%s) error = %v, want %s", two, err, want)
	}
	bad := write("bad.yaml", "apiVersion: v1\nkind: ConfigMap\ndata:\n  config.yaml: |\n    rules:\n    - seriesQuery: 'x{'\n")
	_, _, err = Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad+" data.config.yaml: rules[0]") {
		t.Errorf("Load(%s) error = %v, want the rule named in the ConfigMap's key", bad, err)
	}
}
