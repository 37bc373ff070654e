package main

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// permission is one request the plugin makes, named the way RBAC names it,
// so that a 403 can say exactly what to grant.
type permission struct {
	verb      string
	resource  string // plural, e.g. "horizontalpodautoscalers"
	group     string // "" for the core group
	namespace string // "" for cluster-wide
	// role is the shipped or built-in ClusterRole that grants it.
	role string
}

func (p permission) String() string {
	res := p.resource
	if p.group != "" {
		res += "." + p.group
	}
	if p.namespace == "" {
		return fmt.Sprintf("%s %s (cluster-wide)", p.verb, res)
	}
	return fmt.Sprintf("%s %s in namespace %q", p.verb, res, p.namespace)
}

// hint says who grants the permission.
func (p permission) hint() string {
	if p.role == "" {
		return "ask a cluster administrator to grant " + p.String()
	}
	if p.namespace == "" {
		return fmt.Sprintf("ask for a ClusterRoleBinding to the ClusterRole %s", p.role)
	}
	return fmt.Sprintf("ask for a RoleBinding to the ClusterRole %s in namespace %s", p.role, p.namespace)
}

// The requests the plugin makes.
func permHPAList(ns string) permission {
	return permission{verb: "list", resource: "horizontalpodautoscalers", group: "autoscaling", namespace: ns, role: "view"}
}

func permHPAExplanation(ns string) permission {
	return permission{verb: "get", resource: "hpaexplanations", group: diagnosticsGroup, namespace: ns, role: "gantry-diagnostics-view"}
}

func permMetricExplanation(ns string) permission {
	return permission{verb: "get", resource: "metricexplanations", group: diagnosticsGroup, namespace: ns, role: "gantry-diagnostics-view"}
}

func permStatus() permission {
	return permission{verb: "get", resource: "statuses", group: diagnosticsGroup, role: "gantry-diagnostics-status"}
}

func permAPIServices() permission {
	return permission{verb: "list", resource: "apiservices", group: "apiregistration.k8s.io"}
}

func permMetricRules(ns string) permission {
	return permission{verb: "list", resource: "metricrules", group: "gantry.dev", namespace: ns, role: "gantry-metricrules-view"}
}

func permService(ns string) permission {
	return permission{verb: "get", resource: "services", namespace: ns, role: "view"}
}

func permDeployments(ns string) permission {
	return permission{verb: "list", resource: "deployments", group: "apps", namespace: ns, role: "view"}
}

func permEndpointSlices(ns string) permission {
	return permission{verb: "list", resource: "endpointslices", group: "discovery.k8s.io", namespace: ns, role: "view"}
}

// deniedError is a 403 on one of the plugin's requests.
type deniedError struct {
	perm permission
	err  error
}

func (e *deniedError) Error() string {
	return fmt.Sprintf("missing permission: %s (%s)", e.perm, e.perm.hint())
}

func (e *deniedError) Unwrap() error { return e.err }

// classify turns a 403 into a deniedError naming the permission; other
// errors pass through.
func classify(err error, p permission) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		return &deniedError{perm: p, err: err}
	}
	return err
}

func asDenied(err error) (*deniedError, bool) {
	var d *deniedError
	ok := errors.As(err, &d)
	return d, ok
}
