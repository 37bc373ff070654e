package vpa

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestStatusOf(t *testing.T) {
	obj := New("shop", "web", "web-deploy")
	if got := obj.Object["spec"].(map[string]any)["updatePolicy"].(map[string]any)["updateMode"]; got != "Off" {
		t.Errorf("updateMode %v, want Off", got)
	}
	// As the recommender writes it (v1.8.1, memory in bytes).
	obj.Object["status"] = map[string]any{
		"recommendation": map[string]any{"containerRecommendations": []any{map[string]any{
			"containerName":  "app",
			"target":         map[string]any{"cpu": "247m", "memory": "380258472"},
			"lowerBound":     map[string]any{"cpu": "25m", "memory": "262144k"},
			"upperBound":     map[string]any{"cpu": "100G", "memory": "97656250000Ki"},
			"uncappedTarget": map[string]any{"cpu": "247m", "memory": "380258472"},
		}}},
		"conditions": []any{map[string]any{"type": "RecommendationProvided", "status": "True", "lastTransitionTime": "2026-11-23T22:00:00Z"}},
	}
	s, err := StatusOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s.For("app")
	if !ok {
		t.Fatalf("no recommendation for app in %s", s)
	}
	want := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("247m"), corev1.ResourceMemory: resource.MustParse("380258472")}
	if diff := cmp.Diff(want, r.Target, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("target (-want +got):\n%s", diff)
	}
	if _, ok := s.For("sidecar"); ok {
		t.Errorf("a recommendation for a container the status does not name")
	}
	if got := s.String(); !strings.Contains(got, "app: target cpu=247m memory=380258472") || !strings.Contains(got, "RecommendationProvided=True") {
		t.Errorf("String() = %q", got)
	}

	empty, err := StatusOf(&unstructured.Unstructured{Object: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := empty.For("app"); ok || empty.String() != "no recommendation" {
		t.Errorf("a VPA without status: %q", empty.String())
	}
}

func TestStartWithoutBinary(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir(), WorkDir: t.TempDir(), Kubeconfig: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("Start without vpa-recommender: %v, want an error that says to run make tools", err)
	}
}
