// Package metricrules serves MetricRules: namespaced resources in which an
// app team defines metrics for its own namespace, in the config file's rule
// format. Each MetricRule is compiled like the config file (the same
// messages, prefixed "spec."), confined to its namespace (rules.Rule.Confine
// forces the namespace matcher into every selector it sends), discovered in
// a registry of its own, and served only for requests made in its
// namespace (adapter/provider's NamespacedRegistry). What Gantry makes of
// each resource is written to its status; a validating webhook refuses, at
// apply time, what does not compile.
//
// Flow: MetricRule (informer) → Compile (config, rules) → discovery.Registry
// per resource → Controller (NamespacedRegistry) → adapter/provider.
package metricrules

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// The resource, as the CRD defines it.
const (
	Group    = "gantry.dev"
	Version  = "v1alpha1"
	Kind     = "MetricRule"
	Resource = "metricrules"
)

// GVR is the MetricRule resource for the dynamic client.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// Condition types and reasons of a MetricRule's status.
const (
	ConditionAccepted = "Accepted"
	ConditionReady    = "Ready"

	ReasonCompiled            = "Compiled"
	ReasonInvalid             = "Invalid"
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	ReasonTooManyRules        = "TooManyRules"
	ReasonBackendNotAllowed   = "BackendNotAllowed"

	ReasonDiscovered      = "Discovered"
	ReasonNoSeries        = "NoSeries"
	ReasonDiscoveryFailed = "DiscoveryFailed"
	ReasonNameConflict    = "NameConflict"
	ReasonNotAccepted     = "NotAccepted"
)

// MetricRule is what Gantry reads of a MetricRule object. Its spec stays
// as the object holds it: Compile feeds it to the config parser, which
// reports every field it does not know.
type MetricRule struct {
	Namespace, Name string
	UID             types.UID
	Generation      int64
	Created         metav1.Time
	Spec            map[string]any
	Status          Status
}

// Status is a MetricRule's status subresource.
type Status struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	// Message is the first problem, or "" when Ready.
	Message     string `json:"message,omitempty"`
	MetricCount int32  `json:"metricCount"`
	// Metrics are the metrics served now.
	Metrics []MetricStatus `json:"metrics,omitempty"`
	// LastDiscoveryTime is when the resource's series were last listed.
	LastDiscoveryTime *metav1.Time `json:"lastDiscoveryTime,omitempty"`
}

// MetricStatus is one metric a MetricRule serves.
type MetricStatus struct {
	Name string `json:"name"`
	// Resource is what the metric is about: "pods", "deployments.apps",
	// or "external".
	Resource string `json:"resource"`
	// Objects is how many objects of the resource had series at the last
	// discovery (within --metrics-max-age); 0 for external metrics.
	Objects int32 `json:"objects"`
}

// FromUnstructured reads a MetricRule object.
func FromUnstructured(u *unstructured.Unstructured) (*MetricRule, error) {
	mr := &MetricRule{
		Namespace:  u.GetNamespace(),
		Name:       u.GetName(),
		UID:        u.GetUID(),
		Generation: u.GetGeneration(),
		Created:    u.GetCreationTimestamp(),
	}
	if spec, ok := u.Object["spec"]; ok && spec != nil {
		m, ok := spec.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("MetricRule %s/%s: spec: expected an object", mr.Namespace, mr.Name)
		}
		mr.Spec = m
	}
	if st, ok := u.Object["status"].(map[string]any); ok {
		// A status Gantry cannot read is one it will overwrite.
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(st, &mr.Status)
	}
	return mr, nil
}

// String names the resource as rule IDs and logs do: "team-a/web".
func (mr *MetricRule) String() string { return mr.Namespace + "/" + mr.Name }

// statusToUnstructured renders a status for the status subresource.
func statusToUnstructured(s Status) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(&s)
}
