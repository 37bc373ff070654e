package main

import (
	"context"
	"fmt"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// The diagnostics API Gantry serves through the kube-apiserver.
const (
	diagnosticsGroup      = "diagnostics.gantry.dev"
	diagnosticsVersion    = "v1alpha1"
	diagnosticsAPIService = diagnosticsVersion + "." + diagnosticsGroup
	diagnosticsPrefix     = "/apis/" + diagnosticsGroup + "/" + diagnosticsVersion
)

var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// getHPAExplanation returns the HPAExplanation of one HPA as Gantry serves it.
func (c *clients) getHPAExplanation(ctx context.Context, ns, name string) ([]byte, error) {
	path := diagnosticsPrefix + "/namespaces/" + url.PathEscape(ns) + "/hpaexplanations/" + url.PathEscape(name)
	body, err := raw(c.raw.Get().AbsPath(path).Do(ctx))
	return body, c.diagnosticsError(ctx, err, permHPAExplanation(ns))
}

// metricRequest is one raw metrics request to explain.
type metricRequest struct {
	metric         string
	metricType     string // pods, object or external
	resource       string // group-resource, e.g. "deployments.apps"; "pods" for pods
	name           string
	labelSelector  string
	metricSelector string
	// namespace is "" for an object metric on a cluster-scoped resource.
	namespace string
}

func (r metricRequest) path() string {
	p := diagnosticsPrefix
	if r.namespace != "" {
		p += "/namespaces/" + url.PathEscape(r.namespace)
	}
	return p + "/metricexplanations/" + url.PathEscape(r.metric)
}

func (r metricRequest) params() map[string]string {
	m := map[string]string{"type": r.metricType}
	for k, v := range map[string]string{
		"resource":       r.resource,
		"name":           r.name,
		"labelSelector":  r.labelSelector,
		"metricSelector": r.metricSelector,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

// getMetricExplanation returns the MetricExplanation of a raw request.
func (c *clients) getMetricExplanation(ctx context.Context, r metricRequest) ([]byte, error) {
	req := c.raw.Get().AbsPath(r.path())
	for k, v := range r.params() {
		req = req.Param(k, v)
	}
	body, err := raw(req.Do(ctx))
	return body, c.diagnosticsError(ctx, err, permMetricExplanation(r.namespace))
}

// getStatus returns Gantry's GantryStatus.
func (c *clients) getStatus(ctx context.Context) ([]byte, error) {
	body, err := raw(c.raw.Get().AbsPath(diagnosticsPrefix + "/statuses/gantry").Do(ctx))
	return body, c.diagnosticsError(ctx, err, permStatus())
}

// raw is a result's body, or its error decoded from the server's Status
// (Result.Raw would keep only the status code).
func raw(res rest.Result) ([]byte, error) {
	if err := res.Error(); err != nil {
		return nil, err
	}
	return res.Raw()
}

// unavailableError says the diagnostics API cannot answer, and why.
type unavailableError struct {
	reason string
	hint   string
	err    error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("Gantry's diagnostics API is unavailable: %s (%s)", e.reason, e.hint)
}

func (e *unavailableError) Unwrap() error { return e.err }

// diagnosticsError explains a failed request to the diagnostics API: a 403
// names the permission; a 503, or a 404 because the group is not served at
// all, is looked up in the APIService, which says why Gantry cannot answer.
func (c *clients) diagnosticsError(ctx context.Context, err error, p permission) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		// A refusal of something else than the user's request is Gantry's
		// own: its service account may not read what the answer needs.
		if st, ok := err.(apierrors.APIStatus); ok && st.Status().Details != nil &&
			st.Status().Details.Kind != "" && st.Status().Details.Kind != p.resource {
			return fmt.Errorf("gantry may not read what the answer needs (%s): check Gantry's ClusterRole gantry-diagnostics-reader (deploy/manifests/rbac-diagnostics.yaml)", st.Status().Message)
		}
		return &deniedError{perm: p, err: err}
	}
	groupMissing := apierrors.IsNotFound(err) && !isResourceNotFound(err)
	if !apierrors.IsServiceUnavailable(err) && !groupMissing && !isBadGateway(err) {
		return err
	}
	svc, getErr := c.dynamic.Resource(apiServicesGVR).Get(ctx, diagnosticsAPIService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(getErr):
		return &unavailableError{
			reason: fmt.Sprintf("APIService %s is not registered", diagnosticsAPIService),
			hint:   "apply deploy/manifests/apiservice-diagnostics.yaml, or install the Helm chart",
			err:    err,
		}
	case getErr != nil:
		// The user may not read APIServices: say what the server said.
		return &unavailableError{
			reason: err.Error(),
			hint:   fmt.Sprintf("check APIService %s: kubectl get apiservice %s", diagnosticsAPIService, diagnosticsAPIService),
			err:    err,
		}
	}
	st := apiServiceFromUnstructured(svc)
	if !st.available {
		return &unavailableError{
			reason: fmt.Sprintf("APIService %s is not Available (%s)", diagnosticsAPIService, st.condition()),
			hint:   fmt.Sprintf("is Gantry running? kubectl -n %s get pods; kubectl describe apiservice %s", orDefault(st.serviceNamespace, "gantry"), diagnosticsAPIService),
			err:    err,
		}
	}
	return err
}

// isResourceNotFound tells a 404 for a named object (the HPA does not
// exist) from a 404 for the path (the group is not served).
func isResourceNotFound(err error) bool {
	st, ok := err.(apierrors.APIStatus)
	if !ok || st.Status().Details == nil {
		return false
	}
	return st.Status().Details.Name != ""
}

func isBadGateway(err error) bool {
	st, ok := err.(apierrors.APIStatus)
	return ok && st.Status().Code == 502
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// apiService is what the plugin reads of an APIService.
type apiService struct {
	name             string
	group            string
	serviceNamespace string // "" when served by the kube-apiserver itself
	serviceName      string
	available        bool
	reason           string
	message          string
}

func (s apiService) condition() string {
	switch {
	case s.reason != "" && s.message != "":
		return s.reason + ": " + s.message
	case s.reason != "":
		return s.reason
	case s.message != "":
		return s.message
	}
	return "no Available condition yet"
}

func apiServiceFromUnstructured(u *unstructured.Unstructured) apiService {
	s := apiService{name: u.GetName()}
	s.group, _, _ = unstructured.NestedString(u.Object, "spec", "group")
	s.serviceNamespace, _, _ = unstructured.NestedString(u.Object, "spec", "service", "namespace")
	s.serviceName, _, _ = unstructured.NestedString(u.Object, "spec", "service", "name")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Available" {
			continue
		}
		s.available = m["status"] == "True"
		s.reason, _ = m["reason"].(string)
		s.message, _ = m["message"].(string)
	}
	return s
}
