package adapter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"
	genericapiserver "k8s.io/apiserver/pkg/server"
	k8sdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/metricrules"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// MetricRuleOptions are the admin's controls over MetricRules, the
// namespaced rules app teams define (adapter/metricrules).
type MetricRuleOptions struct {
	// Enabled serves MetricRules (--metricrules).
	Enabled bool
	// NamespaceSelector selects the namespaces that may define them.
	NamespaceSelector string
	// AllowedBackends are the backends (sources) their rules may use;
	// empty allows every one Gantry has.
	AllowedBackends []string
	// NamespaceLabel is the series label every selector is confined with.
	NamespaceLabel string
	// MaxRulesPerNamespace bounds the rule entries of a namespace.
	MaxRulesPerNamespace int
	// MaxSeries bounds the series one rule's discovery may list.
	MaxSeries int
	// NamespaceMaxInFlight bounds a namespace's backend queries at once.
	NamespaceMaxInFlight int
}

// AddFlags registers the MetricRule flags on fs.
func (o *MetricRuleOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "metricrules", true, "Serve MetricRules (gantry.dev/v1alpha1), the rules app teams define in their own namespace, each confined to it, with the validating webhook at "+metricrules.WebhookPath+". Without the CRD installed, Gantry logs it once and checks again every minute.")
	fs.StringVar(&o.NamespaceSelector, "metricrule-namespace-selector", "", "Label selector of the namespaces whose MetricRules are served, e.g. 'gantry.dev/metricrules=enabled'; empty selects every namespace. A MetricRule elsewhere gets Accepted=False (NamespaceNotAllowed) and serves nothing.")
	fs.StringSliceVar(&o.AllowedBackends, "metricrule-allowed-backends", nil, "Comma-separated backends MetricRules may use: prometheus, loki, local, or names from the config's backends section; empty allows every backend Gantry has. A rule naming another gets Accepted=False (BackendNotAllowed).")
	fs.StringVar(&o.NamespaceLabel, "metricrule-namespace-label", "namespace", "Series label that holds the namespace: every selector of a MetricRule is forced to <label>=\"<its namespace>\".")
	fs.IntVar(&o.MaxRulesPerNamespace, "metricrule-max-rules-per-namespace", 20, "Most rule entries (rules and externalRules) all MetricRules of one namespace may have; the resources created last are refused (Accepted=False, TooManyRules). 0: no bound.")
	fs.IntVar(&o.MaxSeries, "metricrule-max-series", 10000, "Most series one series query of a MetricRule may list; a rule listing more fails its discovery (Ready=False, DiscoveryFailed) and affects no other rule. 0: no bound but --backend-max-series.")
	fs.IntVar(&o.NamespaceMaxInFlight, "metricrule-namespace-max-in-flight", 4, "Most backend queries of one namespace's MetricRules in flight at once; more wait for a slot within their deadline. 0: no bound but --backend-max-in-flight.")
}

// Validate reports every problem of the MetricRule flags.
func (o *MetricRuleOptions) Validate() []error {
	if !o.Enabled {
		return nil
	}
	var errs []error
	if _, err := labels.Parse(o.NamespaceSelector); err != nil {
		errs = append(errs, fmt.Errorf("--metricrule-namespace-selector: %w", err))
	}
	if !model.LabelName(o.NamespaceLabel).IsValidLegacy() {
		errs = append(errs, fmt.Errorf("--metricrule-namespace-label: %q is not a valid Prometheus label name", o.NamespaceLabel))
	}
	if o.MaxRulesPerNamespace < 0 || o.MaxSeries < 0 || o.NamespaceMaxInFlight < 0 {
		errs = append(errs, errors.New("--metricrule-max-rules-per-namespace, --metricrule-max-series and --metricrule-namespace-max-in-flight must not be negative"))
	}
	return errs
}

// metricRules is the MetricRule controller and its webhook; nil when
// --metricrules=false.
type metricRules struct {
	controller *metricrules.Controller
	env        *metricrules.Env
}

// prepareMetricRules builds the MetricRule controller on the pipeline and
// makes the provider serve its namespaced metrics. It runs before the API
// server is built: the webhook's path leaves delegated authorization
// here (the kube-apiserver calls webhooks without credentials, as the
// anonymous user, and the webhook reads nothing and reveals only whether
// the object it was sent compiles).
func (s *Server) prepareMetricRules(p *pipeline, cfg *config.Config, reg prometheus.Registerer) (*metricRules, error) {
	o := s.Options.MetricRules
	if !o.Enabled {
		return nil, nil
	}
	if s.Authorization != nil && !slices.Contains(s.Authorization.AlwaysAllowPaths, metricrules.WebhookPath) {
		s.Authorization.AlwaysAllowPaths = append(s.Authorization.AlwaysAllowPaths, metricrules.WebhookPath)
	}
	selector, err := labels.Parse(o.NamespaceSelector)
	if err != nil {
		return nil, fmt.Errorf("--metricrule-namespace-selector: %w", err)
	}
	client, err := dynamic.NewForConfig(s.busyClientConfig(p.clientConfig))
	if err != nil {
		return nil, fmt.Errorf("MetricRules: dynamic client: %w", err)
	}
	disc, err := k8sdiscovery.NewDiscoveryClientForConfig(p.clientConfig)
	if err != nil {
		return nil, fmt.Errorf("MetricRules: discovery client: %w", err)
	}
	listers := p.back.listers()
	sources := make([]string, 0, len(listers))
	for name := range listers {
		sources = append(sources, name)
	}
	sort.Strings(sources)
	env := &metricrules.Env{
		Mapper:         p.mapper,
		Sources:        sources,
		Backends:       cfg.Backends,
		NamespaceLabel: o.NamespaceLabel,
	}
	if len(o.AllowedBackends) > 0 {
		env.AllowedBackends = slices.Clone(o.AllowedBackends)
		for _, b := range o.AllowedBackends {
			if !slices.Contains(sources, b) {
				klog.InfoS("--metricrule-allowed-backends names a backend Gantry does not have", "backend", b, "backends", sources)
			}
		}
	}
	tenancies := map[string]*backend.Tenancy{}
	for _, bc := range cfg.Backends {
		if t := bc.Tenancy(); t != nil {
			tenancies[bc.Name] = t
		}
	}
	ctrl := metricrules.New(metricrules.Options{
		Client:    client,
		Discovery: disc,
		Env:       env,
		Cluster:   p.discovery,
		ListersFor: func(namespace string) map[string]discovery.SeriesLister {
			return namespaceListers(listers, tenancies, namespace)
		},
		NamespaceSelector:    selector,
		MaxRulesPerNamespace: o.MaxRulesPerNamespace,
		MaxSeries:            o.MaxSeries,
		Interval:             s.Options.RelistInterval,
		MaxAge:               s.Options.MaxAge,
		Registerer:           reg,
	})
	p.provider.ServeNamespaced(ctrl, o.NamespaceMaxInFlight)
	return &metricRules{controller: ctrl, env: env}, nil
}

// start serves the webhook and starts the controller; it stops with ctx.
func (m *metricRules) start(ctx context.Context, generic *genericapiserver.GenericAPIServer) {
	if m == nil {
		return
	}
	generic.Handler.NonGoRestfulMux.Handle(metricrules.WebhookPath, metricrules.Webhook(m.env))
	go m.controller.Run(ctx)
}

// namespaceListers are the series listers of namespace's MetricRules: a
// backend with tenants lists the namespace's tenant only (a cluster rule's
// discovery lists every tenant), and one that has no tenant for the
// namespace lists nothing.
func namespaceListers(listers map[string]discovery.SeriesLister, tenancies map[string]*backend.Tenancy, namespace string) map[string]discovery.SeriesLister {
	out := make(map[string]discovery.SeriesLister, len(listers))
	for name, l := range listers {
		if t := tenancies[name]; t != nil {
			tenant, ok := t.Of(namespace)
			out[name] = &tenantLister{next: l, backend: name, namespace: namespace, tenant: tenant, ok: ok}
			continue
		}
		out[name] = l
	}
	return out
}

// tenantLister lists series as one tenant.
type tenantLister struct {
	next               discovery.SeriesLister
	backend, namespace string
	tenant             string
	ok                 bool
}

func (l *tenantLister) Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error) {
	if !l.ok {
		return nil, &backend.NoTenantError{Backend: l.backend, Namespace: l.namespace}
	}
	return l.next.Series(backend.WithTenant(ctx, l.tenant), matchers, start, end)
}

// Gantry's own rate of requests to the kube-apiserver for the clients
// whose work grows with the teams' objects: MetricRule status writes (one
// per resource when a thousand are applied at once) and explanations
// (an HPA, its scale and its pods per explanation, for every HPA of a
// doctor -A). At client-go's default of 5 a second, a thousand status
// writes take over three minutes and each explanation waits for the
// others'.
const (
	busyClientQPS   = 50
	busyClientBurst = 100
)

// busyClientConfig is a copy of cfg for such a client: at busyClientQPS
// unless the admin set --client-qps, which then holds for it too.
func (s *Server) busyClientConfig(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	if s.FlagSet != nil {
		if f := s.FlagSet.Lookup("client-qps"); f != nil && f.Changed {
			return out
		}
	}
	out.QPS, out.Burst = busyClientQPS, busyClientBurst
	return out
}
