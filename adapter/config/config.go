// Package config is Gantry's rule file: the prometheus-adapter schema (rules,
// externalRules, resourceRules) read strictly, with defaults applied and every
// problem reported at once as file, rule, field and what was expected.
//
// It sits at the very start of the flow: adapter/rules compiles a Config into
// naming, association and query templates; nothing here talks to a backend or
// to Kubernetes.
//
// Query templates have their one home here (templates.go): how a template is
// parsed, the arguments it sees, and the checks of a rendered query
// (CheckPromQL, CheckLogQL), which Load runs with sample arguments and
// adapter/rules runs again on every query it renders.
package config

import (
	"time"
)

// Config is a whole rule file. A prometheus-adapter config file loads
// unchanged.
type Config struct {
	// Rules expose Prometheus series as custom metrics about Kubernetes
	// objects (custom.metrics.k8s.io).
	Rules []DiscoveryRule `yaml:"rules"`
	// ExternalRules expose series as external metrics (external.metrics.k8s.io).
	ExternalRules []DiscoveryRule `yaml:"externalRules"`
	// ResourceRules serve metrics.k8s.io (pod and node CPU and memory).
	ResourceRules *ResourceRules `yaml:"resourceRules"`
	// Backends, a Gantry extension, are named query backends beside the
	// ones the flags define (prometheus, loki, local): a rule names its
	// backend with backend: <name>.
	Backends []Backend `yaml:"backends"`
}

// Backend is a named query backend: a Prometheus-compatible API
// (Prometheus, Thanos Query, Cortex, Mimir) or a Loki.
type Backend struct {
	// Name is what rules call it (backend: <name>).
	Name string `yaml:"name"`
	// Type is "prometheus" (any Prometheus-compatible query API) or "loki".
	Type string `yaml:"type"`
	// URL is the backend's base URL; URLs, instead, are the members of an
	// HA set that hold the same data (a Prometheus HA pair): a query goes
	// to one and fails over to the others.
	URL  string   `yaml:"url"`
	URLs []string `yaml:"urls"`
	// HTTP is the HTTP client configuration, in Prometheus' format
	// (authorization, basic_auth, oauth2, tls_config, http_headers,
	// proxy_url, ...). Secrets come from files (credentials_file,
	// password_file, client_secret_file, key_file), never inline.
	HTTP *HTTPConfig `yaml:"http"`
	// Tenant sends a tenant header with every request.
	Tenant *Tenant `yaml:"tenant"`
	// Timeout bounds each query; default --backend-timeout.
	Timeout Duration `yaml:"timeout"`
}

// Tenant says which tenant a backend's requests are made for: fixed, or
// derived from the namespace of the API request being answered, never from
// the rule or the request's selector.
type Tenant struct {
	// Header carries the tenant: X-Scope-OrgID (Cortex, Mimir, Loki; the
	// default) or THANOS-TENANT.
	Header string `yaml:"header"`
	// Fixed is every request's tenant.
	Fixed string `yaml:"fixed"`
	// ByNamespace maps namespaces to tenants.
	ByNamespace map[string]string `yaml:"byNamespace"`
	// Template is the tenant of a namespace that ByNamespace does not
	// name: $namespace stands for the namespace ("team-$namespace").
	Template string `yaml:"template"`
	// Cluster is the tenant of requests outside a namespace (nodes);
	// without it they are refused.
	Cluster string `yaml:"cluster"`
}

// DefaultTenantHeader is the tenant header of Cortex, Mimir and Loki.
const DefaultTenantHeader = "X-Scope-OrgID"

// The types of named backends.
const (
	BackendPrometheus = "prometheus"
	BackendLoki       = "loki"
)

// DiscoveryRule finds series, associates them with Kubernetes resources,
// names them for the API and says how to query them.
type DiscoveryRule struct {
	// SeriesQuery is a series selector passed to /api/v1/series.
	SeriesQuery string `yaml:"seriesQuery"`
	// SeriesFilters further filter the names of the series found.
	SeriesFilters []RegexFilter `yaml:"seriesFilters"`
	// Resources maps series labels to Kubernetes group-resources.
	Resources ResourceMapping `yaml:"resources"`
	// Name turns a series name into the API's metric name.
	Name NameMapping `yaml:"name"`
	// MetricsQuery is a Go template (delimiters << >>) rendering the PromQL
	// query for a request.
	MetricsQuery string `yaml:"metricsQuery"`
	// LogQLQuery, a Gantry extension, is a Go template rendering a LogQL
	// metric query, run on Loki (--loki-url) instead of a PromQL query.
	// SeriesQuery is then a LogQL stream selector, and Name.As the metric's
	// fixed name. Set either MetricsQuery or LogQLQuery.
	LogQLQuery string `yaml:"logqlQuery"`
	// Source, a Gantry extension, says which backend runs MetricsQuery:
	// "prometheus" (the default) or "local", the series Gantry scrapes
	// itself (kube-state-metrics, kubelet cAdvisor). LogQL rules run on
	// "loki", which may be written out.
	Source string `yaml:"source"`
	// Backend, a Gantry extension, names the backend (from backends:) that
	// lists the rule's series and runs its query; its type must match the
	// query's language. Unset, the rule runs on its source's backend.
	Backend string `yaml:"backend"`
	// Window is a Gantry extension: the windowSeconds reported with each value.
	// When unset, the longest range selector of the rendered query is used.
	Window Duration `yaml:"window"`
}

// RegexFilter keeps series whose name matches Is, or does not match IsNot.
// Exactly one of the two is set.
type RegexFilter struct {
	Is    string `yaml:"is"`
	IsNot string `yaml:"isNot"`
}

// ResourceMapping associates labels with group-resources, either through a
// label template or explicit overrides.
type ResourceMapping struct {
	// Template renders a label name from .Group and .Resource (<< >>).
	Template string `yaml:"template"`
	// Overrides maps a label name to a group-resource.
	Overrides map[string]GroupResource `yaml:"overrides"`
	// Namespaced, for external rules, says whether the request's namespace is
	// added as a matcher. It defaults to true.
	Namespaced *bool `yaml:"namespaced"`
}

// GroupResource names a Kubernetes resource; the resource may be singular or
// plural, as with kubectl.
type GroupResource struct {
	Group    string `yaml:"group"`
	Resource string `yaml:"resource"`
}

// NameMapping turns a series name into a metric name: Matches is a regular
// expression (default ".*"), As its replacement (default "$0" with no capture
// group, "$1" with one).
type NameMapping struct {
	Matches string `yaml:"matches"`
	As      string `yaml:"as"`
}

// ResourceRules say how to compute pod and node CPU and memory.
type ResourceRules struct {
	CPU    ResourceRule `yaml:"cpu"`
	Memory ResourceRule `yaml:"memory"`
	// Window is the window reported by metrics.k8s.io; it should match the
	// range used by rate() in the queries. Default 1m.
	Window Duration `yaml:"window"`
}

// ResourceRule is one resource (cpu or memory) of ResourceRules.
type ResourceRule struct {
	ContainerQuery string          `yaml:"containerQuery"`
	NodeQuery      string          `yaml:"nodeQuery"`
	Resources      ResourceMapping `yaml:"resources"`
	ContainerLabel string          `yaml:"containerLabel"`
}

// NamespacedOrDefault reports whether an external rule adds the request's
// namespace to its query.
func (m ResourceMapping) NamespacedOrDefault() bool {
	return m.Namespaced == nil || *m.Namespaced
}

// The backends a rule's query runs on.
const (
	SourcePrometheus = "prometheus"
	SourceLoki       = "loki"
	SourceLocal      = "local"
)

// SourceOrDefault is the backend the rule's query runs on: a named
// backend, or one of the sources the flags configure.
func (r DiscoveryRule) SourceOrDefault() string {
	switch {
	case r.Backend != "":
		return r.Backend
	case r.Source != "":
		return r.Source
	case r.LogQLQuery != "":
		return SourceLoki
	}
	return SourcePrometheus
}

// DefaultResourceWindow is the window of metrics.k8s.io values when a config
// does not set one.
const DefaultResourceWindow = time.Minute
