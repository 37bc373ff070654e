package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestReleaseReferences: the kustomize base and the chart name the same
// image, repository and tag (the chart's appVersion, its default tag), so
// a release that pushes one tag sets both in step.
func TestReleaseReferences(t *testing.T) {
	var chart struct {
		AppVersion string `yaml:"appVersion"`
	}
	readYAML(t, "helm/gantry/Chart.yaml", &chart)
	var values struct {
		Image struct{ Repository, Tag string }
	}
	readYAML(t, "helm/gantry/values.yaml", &values)
	var deploy struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct{ Name, Image string }
				}
			}
		}
	}
	readYAML(t, "manifests/deployment.yaml", &deploy)
	var ref string
	for _, c := range deploy.Spec.Template.Spec.Containers {
		if c.Name == "gantry" {
			ref = c.Image
		}
	}
	repo, tag, ok := strings.Cut(ref, ":")
	if !ok {
		t.Fatalf("deployment.yaml image %q has no tag", ref)
	}
	if repo != values.Image.Repository {
		t.Errorf("deployment.yaml runs %s, the chart %s", repo, values.Image.Repository)
	}
	if values.Image.Tag != "" {
		t.Errorf("chart values set image.tag %q: the default must be appVersion", values.Image.Tag)
	}
	if tag != chart.AppVersion {
		t.Errorf("deployment.yaml tag %q, chart appVersion %q", tag, chart.AppVersion)
	}
}
