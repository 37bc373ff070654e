package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Tenancy says which tenant a backend's request is made for, and in which
// header the tenant goes (X-Scope-OrgID for Cortex, Mimir and Loki,
// THANOS-TENANT for Thanos). The tenant is derived from the namespace of
// the API request being answered, which the provider puts on the context
// (WithNamespace), and from nothing else: the rule, its query and the
// caller's selector cannot name another tenant.
//
// A nil *Tenancy sends no tenant.
type Tenancy struct {
	// Header carries the tenant.
	Header string
	// Fixed, when set, is every request's tenant, whatever the namespace.
	Fixed string
	// ByNamespace maps a namespace to its tenant.
	ByNamespace map[string]string
	// Template, when set, is the tenant of a namespace ByNamespace does not
	// name: "$namespace" in it stands for the namespace ("team-$namespace").
	Template string
	// Cluster is the tenant of requests made for no namespace (nodes,
	// cluster-wide discovery); empty refuses them.
	Cluster string
	// Namespaces lists the cluster's namespaces for discovery under a
	// Template; nil lists none.
	Namespaces func() []string
}

// Validate reports what would make a request go out with a wrong header.
func (t *Tenancy) Validate() error {
	if t == nil {
		return nil
	}
	if !isToken(t.Header) {
		return fmt.Errorf("tenant header %q: expected a header name such as X-Scope-OrgID or THANOS-TENANT", t.Header)
	}
	check := func(what, v string) error {
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("%s %q: control characters are not allowed in a header value", what, v)
		}
		return nil
	}
	errs := []error{check("tenant", t.Fixed), check("template", t.Template), check("cluster tenant", t.Cluster)}
	for ns, tenant := range t.ByNamespace {
		if tenant == "" {
			errs = append(errs, fmt.Errorf("byNamespace %q: empty tenant", ns))
		}
		errs = append(errs, check("tenant", tenant))
	}
	if t.Fixed == "" && len(t.ByNamespace) == 0 && t.Template == "" && t.Cluster == "" {
		errs = append(errs, errors.New("set fixed, byNamespace, template or cluster"))
	}
	return errors.Join(errs...)
}

// NoTenantError is a request refused because its namespace maps to no
// tenant: it is never sent, under any tenant.
type NoTenantError struct {
	Backend, Namespace string
}

func (e *NoTenantError) Error() string {
	if e.Namespace == "" {
		return fmt.Sprintf("backend %s has no tenant for requests outside a namespace", e.Backend)
	}
	return fmt.Sprintf("backend %s has no tenant for namespace %q", e.Backend, e.Namespace)
}

// Of is the tenant of a request made for namespace ("" for none).
func (t *Tenancy) Of(namespace string) (string, bool) {
	switch {
	case t.Fixed != "":
		return t.Fixed, true
	case namespace == "":
		return t.Cluster, t.Cluster != ""
	}
	if tenant, ok := t.ByNamespace[namespace]; ok {
		return tenant, true
	}
	if t.Template != "" {
		return strings.ReplaceAll(t.Template, "$namespace", namespace), true
	}
	return "", false
}

// All are the tenants discovery lists series for: every tenant a request
// can be made for, sorted, each once.
func (t *Tenancy) All() []string {
	if t.Fixed != "" {
		return []string{t.Fixed}
	}
	var all []string
	if t.Cluster != "" {
		all = append(all, t.Cluster)
	}
	for _, tenant := range t.ByNamespace {
		all = append(all, tenant)
	}
	if t.Template != "" && t.Namespaces != nil {
		for _, ns := range t.Namespaces() {
			if tenant, ok := t.Of(ns); ok {
				all = append(all, tenant)
			}
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

type namespaceKey struct{}

// WithNamespace says that the backend calls made with ctx answer a request
// made for namespace ("" for a request outside any namespace).
func WithNamespace(ctx context.Context, namespace string) context.Context {
	return context.WithValue(ctx, namespaceKey{}, namespace)
}

// RequestNamespace is the namespace WithNamespace put on ctx, and whether
// one was put there.
func RequestNamespace(ctx context.Context) (string, bool) {
	ns, ok := ctx.Value(namespaceKey{}).(string)
	return ns, ok
}

type tenantKey struct{}

// WithTenant makes the requests sent with ctx carry tenant in the
// backend's tenant header.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// TenantOf is the tenant of ctx's request: the one WithTenant put there,
// else the one the request's namespace maps to. ok is false when the
// backend has tenants and neither names one; the request must not be sent.
func (t *Tenancy) TenantOf(ctx context.Context, backend string) (string, error) {
	if t == nil {
		return "", nil
	}
	if tenant, ok := ctx.Value(tenantKey{}).(string); ok {
		return tenant, nil
	}
	ns, _ := RequestNamespace(ctx)
	if tenant, ok := t.Of(ns); ok {
		return tenant, nil
	}
	return "", &Error{Backend: backend, Reason: "no_tenant", Err: &NoTenantError{Backend: backend, Namespace: ns}}
}

// tenantRoundTripper puts the tenant of each request's context in the
// tenant header, replacing any value, and refuses a request whose context
// names no tenant.
type tenantRoundTripper struct {
	header string
	next   http.RoundTripper
}

func (rt *tenantRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	tenant, ok := req.Context().Value(tenantKey{}).(string)
	if !ok {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("request without a tenant to a multi-tenant backend")
	}
	out := req.Clone(req.Context())
	out.Header.Set(rt.header, tenant)
	return rt.next.RoundTrip(out)
}

func (rt *tenantRoundTripper) CloseIdleConnections() { closeIdle(rt.next) }

func closeIdle(rt http.RoundTripper) {
	if ci, ok := rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// ForEach calls fn once per tenant discovery lists series for, with the
// tenant on its context; without tenancy, or when ctx names a tenant
// already, once with ctx.
func (t *Tenancy) ForEach(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, ok := ctx.Value(tenantKey{}).(string); ok || t == nil {
		return fn(ctx)
	}
	for _, tenant := range t.All() {
		if err := fn(WithTenant(ctx, tenant)); err != nil {
			return err
		}
	}
	return nil
}
