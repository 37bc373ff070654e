package vpa

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GVR is the VerticalPodAutoscaler resource the CRDs define. Tests use it
// with a dynamic client, so Gantry's module does not depend on the
// autoscaler's.
var GVR = schema.GroupVersionResource{Group: "autoscaling.k8s.io", Version: "v1", Resource: "verticalpodautoscalers"}

// New is a VerticalPodAutoscaler for a Deployment with updateMode Off: the
// recommender writes recommendations, nothing evicts or resizes pods.
func New(namespace, name, deployment string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "autoscaling.k8s.io/v1",
		"kind":       "VerticalPodAutoscaler",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"targetRef":    map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
			"updatePolicy": map[string]any{"updateMode": "Off"},
		},
	}}
}

// ContainerRecommendation is one entry of a VPA's
// status.recommendation.containerRecommendations.
type ContainerRecommendation struct {
	ContainerName  string              `json:"containerName"`
	Target         corev1.ResourceList `json:"target"`
	LowerBound     corev1.ResourceList `json:"lowerBound,omitempty"`
	UpperBound     corev1.ResourceList `json:"upperBound,omitempty"`
	UncappedTarget corev1.ResourceList `json:"uncappedTarget,omitempty"`
}

// Condition is one of a VPA's status.conditions.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Status is the part of a VPA's status the tests read.
type Status struct {
	Recommendation *struct {
		ContainerRecommendations []ContainerRecommendation `json:"containerRecommendations,omitempty"`
	} `json:"recommendation,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
}

// StatusOf decodes obj's status.
func StatusOf(obj *unstructured.Unstructured) (Status, error) {
	var s Status
	raw, ok := obj.Object["status"].(map[string]any)
	if !ok {
		return s, nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s); err != nil {
		return s, fmt.Errorf("vpa: decoding status of %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return s, nil
}

// For returns the recommendation for container, if there is one.
func (s Status) For(container string) (ContainerRecommendation, bool) {
	if s.Recommendation == nil {
		return ContainerRecommendation{}, false
	}
	for _, r := range s.Recommendation.ContainerRecommendations {
		if r.ContainerName == container {
			return r, true
		}
	}
	return ContainerRecommendation{}, false
}

// String is a one-line summary for test logs.
func (s Status) String() string {
	var b strings.Builder
	if s.Recommendation == nil || len(s.Recommendation.ContainerRecommendations) == 0 {
		b.WriteString("no recommendation")
	} else {
		for i, r := range s.Recommendation.ContainerRecommendations {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: target cpu=%s memory=%s (lower %s/%s, upper %s/%s)", r.ContainerName,
				qty(r.Target, corev1.ResourceCPU), qty(r.Target, corev1.ResourceMemory),
				qty(r.LowerBound, corev1.ResourceCPU), qty(r.LowerBound, corev1.ResourceMemory),
				qty(r.UpperBound, corev1.ResourceCPU), qty(r.UpperBound, corev1.ResourceMemory))
		}
	}
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "; %s=%s", c.Type, c.Status)
		if c.Reason != "" || c.Message != "" {
			fmt.Fprintf(&b, " %s: %s", c.Reason, c.Message)
		}
	}
	return b.String()
}

func qty(l corev1.ResourceList, name corev1.ResourceName) string {
	q, ok := l[name]
	if !ok {
		return "-"
	}
	return q.String()
}

// MetricsClientResponses reads the recommender's own count of metrics
// fetches (vpa_recommender_metric_server_responses, whichever source, be it
// metrics.k8s.io or external.metrics.k8s.io), split into successes and
// failures.
func (r *Recommender) MetricsClientResponses(ctx context.Context) (ok, failed float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.MetricsURL, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("vpa: scraping the recommender: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("vpa: scraping the recommender: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("vpa: parsing the recommender's metrics: %w", err)
	}
	mf := families["vpa_recommender_metric_server_responses"]
	if mf == nil {
		return 0, 0, nil // no fetch finished yet
	}
	for _, m := range mf.GetMetric() {
		isErr := false
		for _, l := range m.GetLabel() {
			if l.GetName() == "is_error" {
				isErr = l.GetValue() == "true"
			}
		}
		if isErr {
			failed += m.GetCounter().GetValue()
		} else {
			ok += m.GetCounter().GetValue()
		}
	}
	return ok, failed, nil
}
