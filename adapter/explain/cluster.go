package explain

import (
	"context"
	"fmt"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

// Cluster is what an explanation reads of the cluster, through the
// kube-apiserver with Gantry's own credentials. Every call honours ctx.
type Cluster interface {
	HPA(ctx context.Context, namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error)
	// ScaleSelector is the pod selector of an HPA's scale target, from its
	// scale subresource, as the HPA controller reads it.
	ScaleSelector(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (labels.Selector, error)
	// Pods lists the pods matching sel, with their status.
	Pods(ctx context.Context, namespace string, sel labels.Selector) ([]corev1.Pod, error)
	// APIService reads an APIService (apiregistration.k8s.io/v1).
	APIService(ctx context.Context, name string) (APIService, error)
	// MetricRules summarises the MetricRules (gantry.dev/v1alpha1);
	// Enabled is false when the resource is not installed.
	MetricRules(ctx context.Context) (*v1alpha1.MetricRulesStatus, error)
}

// APIService is what an explanation needs of an APIService.
type APIService struct {
	Found           bool
	Available       bool
	Reason, Message string
	Service         string // namespace/name, "" for a local one
	Group, Version  string
}

type cluster struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
	mapper  apimeta.RESTMapper
}

var _ Cluster = (*cluster)(nil)

// NewCluster reads the cluster through cfg. mapper resolves scale
// targets' kinds to resources.
func NewCluster(cfg *rest.Config, mapper apimeta.RESTMapper) (Cluster, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	return &cluster{client: client, dynamic: dyn, mapper: mapper}, nil
}

func (c *cluster) HPA(ctx context.Context, namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	return c.client.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (c *cluster) ScaleSelector(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (labels.Selector, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("scaleTargetRef.apiVersion %q: %w", ref.APIVersion, err)
	}
	mapping, err := c.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if err != nil {
		return nil, fmt.Errorf("scale target %s %q: %w", ref.Kind, ref.Name, err)
	}
	scale, err := c.dynamic.Resource(mapping.Resource).Namespace(namespace).Get(ctx, ref.Name, metav1.GetOptions{}, "scale")
	if err != nil {
		return nil, fmt.Errorf("reading the scale of %s %q: %w", ref.Kind, ref.Name, err)
	}
	sel, _, _ := unstructured.NestedString(scale.Object, "status", "selector")
	if sel == "" {
		return nil, fmt.Errorf("the scale of %s %q has no selector", ref.Kind, ref.Name)
	}
	return labels.Parse(sel)
}

func (c *cluster) Pods(ctx context.Context, namespace string, sel labels.Selector) ([]corev1.Pod, error) {
	list, err := c.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

var apiServices = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

func (c *cluster) APIService(ctx context.Context, name string) (APIService, error) {
	obj, err := c.dynamic.Resource(apiServices).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return APIService{}, nil
		}
		return APIService{}, err
	}
	out := APIService{Found: true}
	out.Group, _, _ = unstructured.NestedString(obj.Object, "spec", "group")
	out.Version, _, _ = unstructured.NestedString(obj.Object, "spec", "version")
	ns, _, _ := unstructured.NestedString(obj.Object, "spec", "service", "namespace")
	svc, _, _ := unstructured.NestedString(obj.Object, "spec", "service", "name")
	if svc != "" {
		out.Service = ns + "/" + svc
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Available" {
			continue
		}
		out.Available = m["status"] == "True"
		out.Reason, _ = m["reason"].(string)
		out.Message, _ = m["message"].(string)
	}
	return out, nil
}

var metricRules = schema.GroupVersionResource{Group: "gantry.dev", Version: "v1alpha1", Resource: "metricrules"}

func (c *cluster) MetricRules(ctx context.Context) (*v1alpha1.MetricRulesStatus, error) {
	list, err := c.dynamic.Resource(metricRules).List(ctx, metav1.ListOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return &v1alpha1.MetricRulesStatus{}, nil
		}
		return nil, err
	}
	out := &v1alpha1.MetricRulesStatus{Enabled: true, Total: len(list.Items)}
	for _, it := range list.Items {
		conds, _, _ := unstructured.NestedSlice(it.Object, "status", "conditions")
		problem := v1alpha1.MetricRuleProblem{Namespace: it.GetNamespace(), Name: it.GetName(), Reason: "NotObserved"}
		ready := false
		for _, c := range conds {
			m, ok := c.(map[string]any)
			if !ok || m["type"] != "Ready" {
				continue
			}
			ready = m["status"] == "True"
			problem.Reason, _ = m["reason"].(string)
			problem.Message, _ = m["message"].(string)
		}
		if !ready {
			out.NotReady = append(out.NotReady, problem)
		}
	}
	return out, nil
}
