package adapter

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/collectors/backend"
	lokicollector "github.com/gantry-dev/gantry/collectors/loki"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/collectors/store"
)

// backends are the collectors the rules' queries run on, by source. A
// backend whose flags were not given is nil.
type backends struct {
	prom  *promcollector.Client
	loki  *lokicollector.Client
	local *store.Store
	// localFed says whether anything feeds the local store (kube-state-
	// metrics or kubelet cAdvisor scrapes).
	localFed bool
	// named are the backends of the config file's backends section, by
	// name, and config the section they were built from: a reload must
	// leave it as it is.
	named  map[string]source
	config []config.Backend
	// tenancies are the named backends' tenant configurations, which learn
	// the cluster's namespaces once the object cache exists.
	tenancies []*backend.Tenancy
}

// newBackends builds the clients for the backends the flags name and for
// those of cfg's backends section (cfg may be nil).
func newBackends(o *Options, cfg *config.Config, reg prometheus.Registerer) (*backends, error) {
	b := &backends{named: map[string]source{}}
	if o.PrometheusURL != "" {
		httpCfg, redirects, err := o.PrometheusHTTP.HTTPConfig()
		if err != nil {
			return nil, err
		}
		if b.prom, err = promcollector.New(promcollector.Options{URL: o.PrometheusURL, HTTP: httpCfg, Redirects: redirects, Limits: o.BackendLimits, Timeout: o.BackendTimeout, MaxInFlight: o.BackendMaxInFlight}, reg); err != nil {
			return nil, err
		}
	}
	if o.LokiURL != "" {
		httpCfg, redirects, err := o.LokiHTTP.HTTPConfig()
		if err != nil {
			return nil, fmt.Errorf("loki: %w", err)
		}
		if b.loki, err = lokicollector.New(lokicollector.Options{URL: o.LokiURL, HTTP: httpCfg, Redirects: redirects, Limits: o.BackendLimits, Tenant: o.LokiTenant, Timeout: o.BackendTimeout, MaxInFlight: o.BackendMaxInFlight}, reg); err != nil {
			return nil, err
		}
	}
	b.localFed = o.KubeStateMetricsURL != "" || o.Kubelet.Cadvisor
	if b.localFed {
		b.local = store.New(store.Options{Registerer: reg})
	}
	if cfg != nil {
		b.config = cfg.Backends
		for _, bc := range cfg.Backends {
			src, tenancy, err := newNamedBackend(o, bc, reg)
			if err != nil {
				return nil, fmt.Errorf("%s: backends: %s: %w", o.ConfigFile, bc.Name, err)
			}
			b.named[bc.Name] = src
			if tenancy != nil {
				b.tenancies = append(b.tenancies, tenancy)
			}
		}
	}
	return b, nil
}

// newNamedBackend builds the client of one backend of the config file.
// Its timeout, unless it sets one, and its answer limits and in-flight
// bound are the flags'.
func newNamedBackend(o *Options, bc config.Backend, reg prometheus.Registerer) (source, *backend.Tenancy, error) {
	timeout := o.BackendTimeout
	if bc.Timeout > 0 {
		timeout = time.Duration(bc.Timeout)
	}
	tenancy := bc.Tenancy()
	switch bc.Type {
	case config.BackendLoki:
		c, err := lokicollector.New(lokicollector.Options{Name: bc.Name, URLs: bc.Members(), HTTP: bc.HTTP.Client(), Redirects: bc.HTTP.Redirects(), Limits: o.BackendLimits, Tenancy: tenancy, Timeout: timeout, MaxInFlight: o.BackendMaxInFlight}, reg)
		return c, tenancy, err
	default:
		c, err := promcollector.New(promcollector.Options{Name: bc.Name, URLs: bc.Members(), HTTP: bc.HTTP.Client(), Redirects: bc.HTTP.Redirects(), Limits: o.BackendLimits, Tenancy: tenancy, Timeout: timeout, MaxInFlight: o.BackendMaxInFlight}, reg)
		return c, tenancy, err
	}
}

// learnNamespaces gives the tenant templates the cluster's namespaces, for
// discovery to list each namespace's tenant.
func (b *backends) learnNamespaces(list func() []string) {
	for _, t := range b.tenancies {
		t.Namespaces = list
	}
}

// queriers and listers map each configured source to its backend.
// source is what every backend is to the rules that name it: queried per
// request, and listed for discovery.
type source interface {
	provider.Querier
	discovery.SeriesLister
}

// sources are the configured backends by the rule source they serve.
func (b *backends) sources() map[string]source {
	m := map[string]source{}
	if b.prom != nil {
		m[config.SourcePrometheus] = b.prom
	}
	if b.loki != nil {
		m[config.SourceLoki] = b.loki
	}
	if b.local != nil {
		m[config.SourceLocal] = b.local
	}
	for name, s := range b.named {
		m[name] = s
	}
	return m
}

func (b *backends) queriers() map[string]provider.Querier { return bySource[provider.Querier](b) }

func (b *backends) listers() map[string]discovery.SeriesLister {
	return bySource[discovery.SeriesLister](b)
}

// bySource is b.sources() as T, one of the interfaces a source is.
func bySource[T any](b *backends) map[string]T {
	m := map[string]T{}
	for name, s := range b.sources() {
		m[name] = any(s).(T)
	}
	return m
}

// check reports every rule of cfg whose backend is not configured, naming
// the flag that would configure it; resourceRules need Prometheus only when
// they serve metrics.k8s.io. It needs no cluster, so a server checks before
// contacting one.
func (b *backends) check(file string, cfg *config.Config, resourceFromRules bool) error {
	var errs []error
	if !slices.EqualFunc(cfg.Backends, b.config, backendsEqual) {
		errs = append(errs, fmt.Errorf("%s: backends: changed since Gantry started; backends are built at start: restart Gantry to use the new backends section", file))
	}
	need := func(id string, r config.DiscoveryRule) {
		if r.Backend != "" {
			// Validated against cfg's backends section.
			return
		}
		switch src := r.SourceOrDefault(); {
		case src == config.SourcePrometheus && b.prom == nil:
			errs = append(errs, fmt.Errorf("%s: %s: metricsQuery: needs --prometheus-url (or source: local)", file, id))
		case src == config.SourceLoki && b.loki == nil:
			errs = append(errs, fmt.Errorf("%s: %s: logqlQuery: needs --loki-url", file, id))
		case src == config.SourceLocal && b.local == nil:
			errs = append(errs, fmt.Errorf("%s: %s: source local: nothing feeds the local store: set --kube-state-metrics-url or --kubelet-cadvisor", file, id))
		}
	}
	for i, r := range cfg.Rules {
		need(fmt.Sprintf("rules[%d] (%s)", i, r.DisplayName()), r)
	}
	for i, r := range cfg.ExternalRules {
		need(fmt.Sprintf("externalRules[%d] (%s)", i, r.DisplayName()), r)
	}
	if cfg.ResourceRules != nil && resourceFromRules && b.prom == nil {
		errs = append(errs, fmt.Errorf("%s: resourceRules: need --prometheus-url (or serve metrics.k8s.io from the kubelets: --resource-metrics=kubelet)", file))
	}
	return errors.Join(errs...)
}

// backendsEqual compares two backends sections' entries.
func backendsEqual(a, b config.Backend) bool {
	return reflect.DeepEqual(a, b)
}

// CheckListers are the backends check-config lists series on: those whose
// URL flags were given, and those of cfg's backends section (the local
// store exists only in a running Gantry).
func CheckListers(o *Options, cfg *config.Config) (map[string]discovery.SeriesLister, error) {
	local := *o
	local.KubeStateMetricsURL, local.Kubelet.Cadvisor = "", false
	b, err := newBackends(&local, cfg, nil)
	if err != nil {
		return nil, err
	}
	return b.listers(), nil
}
