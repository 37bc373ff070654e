package migrate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/test/cluster"
)

// crdFile is the MetricRule CRD that deploy/ ships.
const crdFile = "../../deploy/manifests/metricrules-crd.yaml"

// TestManifestsPassTheCRDSchema sends every golden manifest to a real
// kube-apiserver serving the shipped MetricRule CRD, as a server-side dry
// run with strict field validation: the CRD's OpenAPI schema and CEL rules
// accept what migrate-rules writes, as `kubectl apply` would need.
func TestManifestsPassTheCRDSchema(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crds := decodeFile(t, crdFile)
	if len(crds) != 1 || crds[0].GetKind() != "CustomResourceDefinition" {
		t.Fatalf("%s: want one CustomResourceDefinition, got %d objects", crdFile, len(crds))
	}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crds[0], metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		crd, err := dyn.Resource(crdGVR).Get(ctx, crds[0].GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if established(crd) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("CRD %s not Established", crds[0].GetName())
		case <-time.After(100 * time.Millisecond):
		}
	}
	mrGVR := schema.GroupVersionResource{Group: "gantry.dev", Version: "v1alpha1", Resource: "metricrules"}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
	create := func(o *unstructured.Unstructured) error {
		ns := o.GetNamespace()
		_, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		// The discovery of a new CRD can lag its Established condition.
		for {
			_, err := dyn.Resource(mrGVR).Namespace(ns).Create(ctx, o, dryRun)
			if !apierrors.IsNotFound(err) || ctx.Err() != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	goldens, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, g := range goldens {
		for _, o := range decodeFile(t, g) {
			if err := create(o); err != nil {
				t.Errorf("%s: MetricRule %s/%s refused: %v", g, o.GetNamespace(), o.GetName(), err)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no golden manifest to check")
	}

	// The check can fail: a rule with a field the schema lacks is refused.
	bad := decodeFile(t, goldens[0])[0]
	field := "rules"
	rules, _, _ := unstructured.NestedSlice(bad.Object, "spec", field)
	if len(rules) == 0 {
		field = "externalRules"
		rules, _, _ = unstructured.NestedSlice(bad.Object, "spec", field)
	}
	rules[0].(map[string]any)["metricQuery"] = "a typo"
	if err := unstructured.SetNestedSlice(bad.Object, rules, "spec", field); err != nil {
		t.Fatal(err)
	}
	err = create(bad)
	if err == nil || !strings.Contains(err.Error(), "metricQuery") {
		t.Errorf("a rule with an unknown field: err = %v, want it refused naming the field", err)
	}
}

func decodeFile(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if obj != nil {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
