package dashboards_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gantry-dev/gantry/test/toolbin"
)

// sidecarLabel is the label Grafana's dashboard sidecar selects ConfigMaps
// by (kube-prometheus-stack and the Grafana chart default to it).
const sidecarLabel = "grafana_dashboard"

// lastAppliedLimit bounds a ConfigMap applied with client-side `kubectl
// apply`, which copies the whole object into an annotation; annotations may
// total 256 KiB.
const lastAppliedLimit = 256 << 10

// TestComponent renders the base with the grafana-dashboards component
// through kubectl's kustomize and checks that there is one ConfigMap per
// dashboard, labelled for the sidecar, holding exactly the generated JSON.
func TestComponent(t *testing.T) {
	var k struct {
		APIVersion       string `json:"apiVersion"`
		Kind             string `json:"kind"`
		GeneratorOptions struct {
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			Labels                map[string]string `json:"labels"`
		} `json:"generatorOptions"`
		ConfigMapGenerator []struct {
			Name      string   `json:"name"`
			Namespace string   `json:"namespace"`
			Files     []string `json:"files"`
		} `json:"configMapGenerator"`
	}
	raw, err := os.ReadFile(filepath.Join(componentDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := utilyaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" || !k.GeneratorOptions.DisableNameSuffixHash || k.GeneratorOptions.Labels[sidecarLabel] != "1" {
		t.Errorf("kustomization.yaml: want a Component generating ConfigMaps without a name hash, labelled %s: \"1\"", sidecarLabel)
	}
	files := generated(t)
	var listed, want []string
	for _, g := range k.ConfigMapGenerator {
		listed = append(listed, g.Files...)
	}
	for _, f := range files {
		want = append(want, f.Name)
	}
	slices.Sort(listed)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("kustomization.yaml generates ConfigMaps from %v, the dashboards are %v", listed, want)
	}

	kubectl := filepath.Join(toolbin.Require(t, "kubectl"), "kubectl")
	base, err := filepath.Abs("../deploy/manifests")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	kust := "resources: [" + filepath.ToSlash(rel) + "]\ncomponents: [" + filepath.ToSlash(filepath.Join(rel, "components", "grafana-dashboards")) + "]\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", overlay)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.String())
	}

	byFile := map[string]corev1.ConfigMap{}
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var cm corev1.ConfigMap
		if err := utilyaml.Unmarshal(doc, &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Kind != "ConfigMap" || cm.Labels[sidecarLabel] == "" {
			continue
		}
		if cm.Labels[sidecarLabel] != "1" || cm.Labels["app.kubernetes.io/name"] != "gantry" || cm.Namespace != "gantry" {
			t.Errorf("ConfigMap %s/%s labels %v: want %s=1 and app.kubernetes.io/name=gantry in namespace gantry", cm.Namespace, cm.Name, cm.Labels, sidecarLabel)
		}
		if len(cm.Data) != 1 {
			t.Errorf("ConfigMap %s holds %d keys, want one dashboard", cm.Name, len(cm.Data))
		}
		for key := range cm.Data {
			byFile[key] = cm
		}
		if j, _ := json.Marshal(cm); len(j) >= lastAppliedLimit {
			t.Errorf("ConfigMap %s is %d bytes: too large for client-side kubectl apply (%d)", cm.Name, len(j), lastAppliedLimit)
		}
	}
	for _, f := range files {
		cm, ok := byFile[f.Name]
		if !ok {
			t.Errorf("no ConfigMap labelled %s holds %s", sidecarLabel, f.Name)
			continue
		}
		if cm.Data[f.Name] != string(f.JSON) {
			t.Errorf("ConfigMap %s: %s differs from the generated dashboard: run `go generate ./dashboards`", cm.Name, f.Name)
		}
	}
	if len(byFile) != len(files) {
		t.Errorf("%d dashboards in ConfigMaps, want %d", len(byFile), len(files))
	}
}
