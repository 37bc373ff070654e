package stack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/gantry-dev/gantry/test/stack"
)

// TestMetricRuleWebhook starts a stack with the MetricRule webhook: the CRD
// and Gantry's RBAC come from deploy/, the kube-apiserver calls Gantry on
// loopback (RegisterWebhook waits for a denial), a broken MetricRule is
// refused with Gantry's message and a valid one admitted, and after
// RemoveWebhook the broken one is admitted on the CRD's schema alone.
func TestMetricRuleWebhook(t *testing.T) {
	st := stack.StartT(t, stack.Options{MetricRuleWebhook: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := st.EnsureNamespace(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(st.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	rule := func(name, metricsQuery string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gantry.dev/v1alpha1",
			"kind":       "MetricRule",
			"metadata":   map[string]any{"name": name, "namespace": "team-a"},
			"spec": map[string]any{"rules": []any{map[string]any{
				"seriesQuery":  `http_requests_total{pod!=""}`,
				"resources":    map[string]any{"overrides": map[string]any{"namespace": map[string]any{"resource": "namespace"}, "pod": map[string]any{"resource": "pod"}}},
				"metricsQuery": metricsQuery,
			}}},
		}}
	}
	rules := dyn.Resource(stack.MetricRuleGVR).Namespace("team-a")
	_, err = rules.Create(ctx, rule("broken", "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]) by (<<.GroupBy>>)"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "metricsQuery") {
		t.Errorf("a MetricRule whose query does not parse: %v, want a denial naming metricsQuery", err)
	} else {
		t.Logf("denied: %v", err)
	}
	if _, err := rules.Create(ctx, rule("valid", "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)"), metav1.CreateOptions{}); err != nil {
		t.Errorf("a valid MetricRule: %v", err)
	}

	if err := st.RemoveWebhook(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.Create(ctx, rule("broken", "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m]) by (<<.GroupBy>>)"), metav1.CreateOptions{}); err != nil {
		t.Errorf("without the webhook, the schema alone admits a broken query: %v", err)
	}
	if err := st.RegisterWebhook(ctx); err != nil {
		t.Fatal(err)
	}
}
