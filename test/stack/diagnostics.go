package stack

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/deploy"
)

// DiagnosticsAPIService is Gantry's diagnostics API (diagnostics.gantry.dev,
// issue 17). Its manifest is a file of its own in deploy/manifests, outside
// the base, so that a cluster can leave it out; the stack registers it with
// the metrics APIServices and waits for it as for them.
const DiagnosticsAPIService = "v1alpha1.diagnostics.gantry.dev"

// diagnosticsFile is the diagnostics APIService's manifest.
const diagnosticsFile = "apiservice-diagnostics.yaml"

// diagnosticsObjects are the objects of diagnosticsFile.
func diagnosticsObjects() ([]*unstructured.Unstructured, error) {
	data, err := deploy.File(diagnosticsFile)
	if err != nil {
		return nil, fmt.Errorf("stack: %s: %w", diagnosticsFile, err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("stack: %s: %w", diagnosticsFile, err)
	}
	return []*unstructured.Unstructured{{Object: obj}}, nil
}
