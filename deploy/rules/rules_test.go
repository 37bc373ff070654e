package rules_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/prometheus/model/rulefmt"
	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/deploy/rules"
	"github.com/gantry-dev/gantry/test/toolbin"
)

var update = flag.Bool("update", false, "rewrite "+prometheusRuleFile+" from the rule files")

const (
	// prometheusRuleFile is the kustomize component's copy of the groups.
	prometheusRuleFile = "../manifests/components/prometheusrule/prometheusrule.yaml"
	runbooksFile       = "runbooks.md"
	// promtoolTimeout bounds one promtool run; they take well under a second.
	promtoolTimeout = 2 * time.Minute
)

// ruleFiles are the shipped rule files, in the order the PrometheusRule
// lists their groups.
var ruleFiles = []string{"gantry.rules.yaml", "autoscaling.rules.yaml"}

var severities = []string{"critical", "warning", "info"}

func TestRuleFilesAreEmbedded(t *testing.T) {
	files, err := rules.Files()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for name, data := range files {
		got = append(got, name)
		disk, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, disk) {
			t.Errorf("embedded %s differs from the file", name)
		}
	}
	sort.Strings(got)
	want := slices.Sorted(slices.Values(ruleFiles))
	if !slices.Equal(got, want) {
		t.Errorf("rules.Files() = %v, this test knows %v: add new files to ruleFiles", got, want)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := promtool(t, append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, ruleFiles...)...)
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestPromtoolUnitTests runs tests/*.test.yaml: for every alert, a case where
// it fires with the expected labels and annotations, and one where it does
// not (TestEveryAlertIsUnitTested enforces that).
func TestPromtoolUnitTests(t *testing.T) {
	files, err := filepath.Glob("tests/*.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no tests/*.test.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := promtool(t, "test", "rules", f)
			if err != nil {
				t.Fatalf("promtool test rules %s: %v\n%s", f, err, out)
			}
		})
	}
}

// unitTestFile is the part of a promtool test file this package checks.
type unitTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func TestEveryAlertIsUnitTested(t *testing.T) {
	files, err := filepath.Glob("tests/*.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf unitTestFile
		if err := yaml.Unmarshal(data, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname]++
				} else {
					quiet[a.Alertname]++
				}
			}
		}
	}
	known := map[string]bool{}
	for _, r := range allRules(t) {
		if r.rule.Alert == "" {
			continue
		}
		known[r.rule.Alert] = true
		if fires[r.rule.Alert] == 0 {
			t.Errorf("%s: alert %s has no unit test in which it fires", r.file, r.rule.Alert)
		}
		if quiet[r.rule.Alert] == 0 {
			t.Errorf("%s: alert %s has no unit test in which it stays quiet", r.file, r.rule.Alert)
		}
	}
	for name := range fires {
		if !known[name] {
			t.Errorf("tests/: alert %s is tested but not defined", name)
		}
	}
	for name := range quiet {
		if !known[name] {
			t.Errorf("tests/: alert %s is tested but not defined", name)
		}
	}
}

// TestAlertConventions: what an on-call reader needs on every alert, and a
// runbook section behind every runbook_url.
func TestAlertConventions(t *testing.T) {
	headings := runbookHeadings(t)
	seen := map[string]string{}
	for _, r := range allRules(t) {
		rl := r.rule
		if rl.Record != "" {
			if !strings.Contains(rl.Record, ":") {
				t.Errorf("%s: recording rule %s: name it level:metric:operations", r.file, rl.Record)
			}
			continue
		}
		where := r.file + ": alert " + rl.Alert
		if prev, ok := seen[rl.Alert]; ok {
			t.Errorf("%s: name also used in %s", where, prev)
		}
		seen[rl.Alert] = r.file
		if s := rl.Labels["severity"]; !slices.Contains(severities, s) {
			t.Errorf("%s: severity %q, want one of %v", where, s, severities)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(rl.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", where, a)
			}
		}
		if got, want := rl.Annotations["runbook_url"], rules.RunbookURL(rl.Alert); got != want {
			t.Errorf("%s: runbook_url %q, want %q", where, got, want)
		}
		if !headings[rl.Alert] {
			t.Errorf("%s: %s has no section \"## %s\"", where, runbooksFile, rl.Alert)
		}
		if rl.For == 0 {
			t.Errorf("%s: no for: a single bad evaluation would page", where)
		}
	}
	for h := range headings {
		if _, ok := seen[h]; !ok && !strings.Contains(h, " ") {
			t.Errorf("%s: section %q names no alert", runbooksFile, h)
		}
	}
}

// TestPrometheusRuleMatchesRuleFiles: the kustomize component carries
// exactly the groups of the plain files. -update rewrites it from them.
func TestPrometheusRuleMatchesRuleFiles(t *testing.T) {
	if *update {
		out, err := renderPrometheusRule()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(prometheusRuleFile, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var want []rulefmt.RuleGroup
	for _, f := range ruleFiles {
		want = append(want, loadGroups(t, f)...)
	}

	data, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string            `yaml:"name"`
			Namespace string            `yaml:"namespace"`
			Labels    map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Groups []rulefmt.RuleGroup `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := decodeStrict(data, &pr); err != nil {
		t.Fatalf("%s: %v", prometheusRuleFile, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s: %s %s, want monitoring.coreos.com/v1 PrometheusRule", prometheusRuleFile, pr.APIVersion, pr.Kind)
	}
	if pr.Metadata.Name == "" || pr.Metadata.Namespace == "" {
		t.Errorf("%s: metadata.name and metadata.namespace must be set", prometheusRuleFile)
	}
	if diff := cmp.Diff(want, pr.Spec.Groups); diff != "" {
		t.Errorf("%s differs from %v (-files +PrometheusRule):\n%s\nrun `go test ./deploy/rules -update` to regenerate it", prometheusRuleFile, ruleFiles, diff)
	}
}

// prometheusRuleHeader is the skeleton renderPrometheusRule fills with the
// groups of the rule files.
const prometheusRuleHeader = `# Generated from deploy/rules/*.rules.yaml by ` + "`go test ./deploy/rules -update`" + `:
# change those files, then regenerate; deploy/rules' tests fail while the two
# differ. Runbooks: deploy/rules/runbooks.md.
#
# The Prometheus Operator loads a PrometheusRule that its Prometheus' ruleSelector
# and ruleNamespaceSelector select: add the labels yours wants (kube-prometheus-stack
# selects release: <its release name> by default) with a kustomize patch.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: gantry
  namespace: gantry
  labels:
    app.kubernetes.io/name: gantry
spec:
  groups: []
`

// renderPrometheusRule copies the groups of the rule files, comments and
// block scalars included, into the PrometheusRule skeleton.
func renderPrometheusRule() ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(prometheusRuleHeader), &doc); err != nil {
		return nil, err
	}
	spec := mappingValue(doc.Content[0], "spec")
	groups := mappingValue(spec, "groups")
	groups.Style = 0 // block, not the skeleton's []
	for _, f := range ruleFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var fd yaml.Node
		if err := yaml.Unmarshal(data, &fd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		g := mappingValue(fd.Content[0], "groups")
		if g == nil || g.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("%s: no groups list", f)
		}
		groups.Content = append(groups.Content, g.Content...)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

type fileRule struct {
	file  string
	group string
	rule  rulefmt.Rule
}

func allRules(t *testing.T) []fileRule {
	t.Helper()
	var out []fileRule
	for _, f := range ruleFiles {
		for _, g := range loadGroups(t, f) {
			for _, r := range g.Rules {
				out = append(out, fileRule{file: f, group: g.Name, rule: r})
			}
		}
	}
	return out
}

func loadGroups(t *testing.T, file string) []rulefmt.RuleGroup {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rgs rulefmt.RuleGroups
	if err := decodeStrict(data, &rgs); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(rgs.Groups) == 0 {
		t.Fatalf("%s: no groups", file)
	}
	return rgs.Groups
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// runbookHeadings returns the text of every "## " heading of runbooks.md.
func runbookHeadings(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(runbooksFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if h, ok := strings.CutPrefix(sc.Text(), "## "); ok {
			out[strings.TrimSpace(h)] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// promtool runs bin/promtool (from `make tools`); a missing binary fails the
// test with that hint.
func promtool(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := filepath.Join(toolbin.Require(t, "promtool"), "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), promtoolTimeout)
	defer cancel()
	return exec.CommandContext(ctx, bin, args...).CombinedOutput()
}

// TestKubeStateMetricsVPAConfig: the custom resource state config documented
// for the VPA alert yields the series and labels the rules join on. (It is
// not run through a real kube-state-metrics here.)
func TestKubeStateMetricsVPAConfig(t *testing.T) {
	const file = "kube-state-metrics-vpa.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type labels map[string][]string
	var cfg struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Resources []struct {
				GroupVersionKind struct {
					Group   string `yaml:"group"`
					Version string `yaml:"version"`
					Kind    string `yaml:"kind"`
				} `yaml:"groupVersionKind"`
				MetricNamePrefix *string `yaml:"metricNamePrefix"`
				LabelsFromPath   labels  `yaml:"labelsFromPath"`
				Metrics          []struct {
					Name         string            `yaml:"name"`
					Help         string            `yaml:"help"`
					CommonLabels map[string]string `yaml:"commonLabels"`
					Each         struct {
						Type  string `yaml:"type"`
						Gauge struct {
							Path           []string `yaml:"path"`
							LabelsFromPath labels   `yaml:"labelsFromPath"`
							ValueFrom      []string `yaml:"valueFrom"`
						} `yaml:"gauge"`
					} `yaml:"each"`
				} `yaml:"metrics"`
			} `yaml:"resources"`
		} `yaml:"spec"`
	}
	if err := decodeStrict(data, &cfg); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if cfg.Kind != "CustomResourceStateMetrics" || len(cfg.Spec.Resources) != 1 {
		t.Fatalf("%s: want one resource of a CustomResourceStateMetrics", file)
	}
	res := cfg.Spec.Resources[0]
	if gvk := res.GroupVersionKind; gvk.Group != "autoscaling.k8s.io" || gvk.Kind != "VerticalPodAutoscaler" {
		t.Errorf("%s: resource %v, want autoscaling.k8s.io VerticalPodAutoscaler", file, gvk)
	}
	if res.MetricNamePrefix != nil {
		t.Errorf("%s: metricNamePrefix set; the rules expect the default kube_customresource", file)
	}
	var vpaExpr string
	for _, r := range allRules(t) {
		if r.rule.Record == "namespace_workload_container_resource:vpa_target_over_requests:ratio" {
			vpaExpr = r.rule.Expr
		}
	}
	if vpaExpr == "" {
		t.Fatal("no VPA ratio recording rule")
	}
	resources := map[string]bool{}
	for _, m := range res.Metrics {
		name := "kube_customresource_" + m.Name
		if !strings.Contains(vpaExpr, name) {
			t.Errorf("%s: metric %s is not what the rules read", file, name)
		}
		if m.Each.Type != "Gauge" || len(m.Each.Gauge.ValueFrom) != 2 || m.Each.Gauge.ValueFrom[0] != "target" {
			t.Errorf("%s: metric %s: want a gauge from target.<resource>", file, m.Name)
		}
		got := map[string]bool{}
		for k := range res.LabelsFromPath {
			got[k] = true
		}
		for k := range m.CommonLabels {
			got[k] = true
		}
		for k := range m.Each.Gauge.LabelsFromPath {
			got[k] = true
		}
		// The labels the recording rule groups by and joins on.
		for _, l := range []string{"namespace", "verticalpodautoscaler", "target_kind", "target_name", "container", "resource"} {
			if !got[l] {
				t.Errorf("%s: metric %s (%s) has no label %s", file, m.Name, m.CommonLabels["resource"], l)
			}
		}
		if r := m.CommonLabels["resource"]; r != m.Each.Gauge.ValueFrom[len(m.Each.Gauge.ValueFrom)-1] {
			t.Errorf("%s: metric %s: resource label %q, value from %v", file, m.Name, r, m.Each.Gauge.ValueFrom)
		}
		resources[m.CommonLabels["resource"]] = true
	}
	if !resources["cpu"] || !resources["memory"] {
		t.Errorf("%s: want cpu and memory targets, got %v", file, resources)
	}
}
