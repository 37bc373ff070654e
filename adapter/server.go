// Package adapter is Gantry's aggregated API server: it loads the config,
// compiles the rules, starts discovery and the object cache, and serves
// custom.metrics.k8s.io, external.metrics.k8s.io and metrics.k8s.io from the
// providers, with Gantry's own /metrics and health checks.
//
// Flow: cmd/gantry → adapter.Server → provider → rules → collectors. Run
// builds in that order, backwards: config → backends (backends.go) →
// discovery and providers → APIs (install.go, resourcemetrics.go, with the
// HTTP filters of adapter/filters) → background loops (reload.go).
// check-config's logic is in adapter/checkconfig.
package adapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/utils/clock"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
	generatedcore "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/core"
	generatedcustom "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/custommetrics"
	generatedexternal "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/externalmetrics"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/filters"
	"github.com/gantry-dev/gantry/adapter/metricsapi"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/kubelet"
	"github.com/gantry-dev/gantry/collectors/kubestate"
)

// Options are Gantry's own flags; the API server's (serving, authn, authz,
// kubeconfig) come from custom-metrics-apiserver's AdapterBase.
type Options struct {
	ConfigFile     string
	PrometheusURL  string
	PrometheusHTTP backend.HTTPFlags
	RelistInterval time.Duration
	MaxAge         time.Duration
	BackendTimeout time.Duration
	// BackendMaxInFlight bounds the queries sent to each backend at once.
	BackendMaxInFlight int
	// BackendLimits bound what one answer of a query backend may hold.
	BackendLimits backend.Limits
	ObjectResync  time.Duration
	ValueCacheTTL time.Duration
	// ValueCacheMaxBytes and SelectorCacheMaxBytes bound the memory of the
	// kept query values and of each resource's kept selector answers.
	ValueCacheMaxBytes    int64
	SelectorCacheMaxBytes int64
	// ConfigReloadInterval is how often the config file is checked for
	// changes; 0 turns reloading off.
	ConfigReloadInterval time.Duration

	// LokiURL is where logqlQuery rules run; LokiHTTP and LokiTenant say
	// how to reach it.
	LokiURL    string
	LokiHTTP   backend.HTTPFlags
	LokiTenant string
	// KubeStateMetricsURL, when set, is scraped into the local store that
	// rules with source: local query.
	KubeStateMetricsURL      string
	KubeStateMetricsInterval time.Duration
	// ResourceMetrics says where metrics.k8s.io comes from: auto, rules,
	// kubelet or none.
	ResourceMetrics string
	// Kubelet configures the kubelet collector; its flags are registered by
	// NewServer (they mean nothing to check-config).
	Kubelet kubelet.Options
	// MetricRules are the admin's controls over namespaced MetricRules
	// (metricrules_wiring.go).
	MetricRules MetricRuleOptions
}

// Where metrics.k8s.io values come from (--resource-metrics).
const (
	ResourceMetricsAuto    = "auto"
	ResourceMetricsRules   = "rules"
	ResourceMetricsKubelet = "kubelet"
	ResourceMetricsNone    = "none"
)

// AddFlags registers the options on fs, with prometheus-adapter's names where
// it has the same setting.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ConfigFile, "config", o.ConfigFile, "Rules file in prometheus-adapter's format (rules, externalRules, resourceRules).")
	fs.StringVar(&o.PrometheusURL, "prometheus-url", o.PrometheusURL, "Base URL of the Prometheus API, e.g. http://prometheus.monitoring.svc:9090.")
	fs.StringVar(&o.PrometheusHTTP.AuthConfigFile, "prometheus-auth-config", "", "File with a Prometheus HTTP client config (authorization, basic_auth, tls_config, http_headers) or a kubeconfig, used to reach Prometheus.")
	fs.StringVar(&o.PrometheusHTTP.CAFile, "prometheus-ca-file", "", "CA bundle that signs Prometheus' serving certificate.")
	fs.StringVar(&o.PrometheusHTTP.TokenFile, "prometheus-token-file", "", "File holding a bearer token for Prometheus; re-read on every request.")
	fs.StringVar(&o.PrometheusHTTP.ClientCertFile, "prometheus-client-tls-cert-file", "", "Client certificate for mutual TLS with Prometheus.")
	fs.StringVar(&o.PrometheusHTTP.ClientKeyFile, "prometheus-client-tls-key-file", "", "Key of --prometheus-client-tls-cert-file.")
	fs.StringArrayVar(&o.PrometheusHTTP.Headers, "prometheus-header", nil, "Extra header for Prometheus requests as Name=Value, e.g. X-Scope-OrgID=team-a; repeatable.")
	fs.DurationVar(&o.RelistInterval, "metrics-relist-interval", time.Minute, "How often the available series are listed again.")
	fs.DurationVar(&o.MaxAge, "metrics-max-age", 0, "How far back series are looked for when listing; 0 means --metrics-relist-interval.")
	fs.DurationVar(&o.BackendTimeout, "backend-timeout", 10*time.Second, "Upper bound of one backend query when the API request has no earlier deadline.")
	fs.IntVar(&o.BackendMaxInFlight, "backend-max-in-flight", 32, "Most queries sent to each backend (Prometheus, Loki) at once (identical ones share one); more wait for a slot within their deadline, so a slow backend cannot pile up queries and connections.")
	fs.Int64Var(&o.BackendLimits.MaxResponseBytes, "backend-max-response-bytes", backend.DefaultMaxResponseBytes, "Most bytes of one Prometheus or Loki answer that are held: a longer query answer is refused (not read further); of a series listing decoded as it streams, one series' labels and all labels kept. Refused answers count in gantry_backend_answers_rejected_total.")
	fs.IntVar(&o.BackendLimits.MaxSamples, "backend-max-samples", backend.DefaultMaxSamples, "Most samples of one Prometheus or Loki query answer; a query answers with one per object of a namespace (or of a request), so more means a rule is broader than meant.")
	fs.IntVar(&o.BackendLimits.MaxSeries, "backend-max-series", backend.DefaultMaxSeries, "Most series one series listing keeps: Loki's streams, the series check-config lists, and the distinct (metric name, label names) shapes discovery keeps of Prometheus' series, however many series there are.")
	fs.DurationVar(&o.ObjectResync, "object-resync-period", 10*time.Minute, "Resync period of the metadata caches used to resolve label selectors.")
	fs.DurationVar(&o.ConfigReloadInterval, "config-reload-interval", 5*time.Second, "How often the --config file is checked for changes. A valid change is applied without a restart; a broken one is logged and counted (gantry_config_reloads_total{result=\"failure\"}) and the last good config stays in use. 0 turns reloading off.")
	fs.StringVar(&o.LokiURL, "loki-url", o.LokiURL, "Base URL of Loki's HTTP API, e.g. http://loki-gateway.monitoring.svc; required when a rule has a logqlQuery.")
	fs.StringVar(&o.LokiTenant, "loki-tenant", "", "Loki tenant, sent as X-Scope-OrgID on every Loki request (multi-tenant Loki).")
	fs.StringVar(&o.LokiHTTP.AuthConfigFile, "loki-auth-config", "", "File with an HTTP client config (authorization, basic_auth, tls_config, http_headers) or a kubeconfig, used to reach Loki.")
	fs.StringVar(&o.LokiHTTP.CAFile, "loki-ca-file", "", "CA bundle that signs Loki's serving certificate.")
	fs.StringVar(&o.LokiHTTP.TokenFile, "loki-token-file", "", "File holding a bearer token for Loki; re-read on every request.")
	fs.StringVar(&o.LokiHTTP.ClientCertFile, "loki-client-tls-cert-file", "", "Client certificate for mutual TLS with Loki.")
	fs.StringVar(&o.LokiHTTP.ClientKeyFile, "loki-client-tls-key-file", "", "Key of --loki-client-tls-cert-file.")
	fs.StringArrayVar(&o.LokiHTTP.Headers, "loki-header", nil, "Extra header for Loki requests as Name=Value; repeatable.")
	fs.StringVar(&o.KubeStateMetricsURL, "kube-state-metrics-url", "", "URL of a kube-state-metrics /metrics endpoint, e.g. http://kube-state-metrics.kube-system.svc:8080/metrics, scraped into the local store that rules with 'source: local' query (no Prometheus needed).")
	fs.DurationVar(&o.KubeStateMetricsInterval, "kube-state-metrics-scrape-interval", 15*time.Second, "How often --kube-state-metrics-url is scraped.")
	fs.StringVar(&o.ResourceMetrics, "resource-metrics", ResourceMetricsAuto, "Where metrics.k8s.io (kubectl top, VPA, HPA Resource metrics) comes from: 'rules' (the config's resourceRules, over Prometheus), 'kubelet' (Gantry scrapes every kubelet's /metrics/resource itself, no Prometheus needed), 'none' (not served), or 'auto': rules when the config has resourceRules, else kubelet.")
	fs.Int64Var(&o.ValueCacheMaxBytes, "value-cache-max-bytes", provider.DefaultValueCacheBytes, "Most bytes of query values the value cache keeps; values that do not fit answer their requests and are not kept, so requests with ever new metric selectors cannot grow Gantry's memory.")
	fs.Int64Var(&o.SelectorCacheMaxBytes, "selector-cache-max-bytes", provider.DefaultSelectorCacheBytes, "Most bytes of label selector answers kept per resource (pods, nodes, ...); beyond it older answers are dropped, so requests with ever new label selectors cannot grow Gantry's memory.")
	fs.DurationVar(&o.ValueCacheTTL, "value-cache-ttl", 5*time.Second, "How long the values of a custom metrics query are reused for requests with the same rule, namespace and metric selector (values served are at most this much older than their timestamp says); 0 disables the cache.")
	o.MetricRules.AddFlags(fs)
}

// Validate reports every flag problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.ConfigFile == "" {
		errs = append(errs, errors.New("--config is required"))
	}
	switch o.ResourceMetrics {
	case "", ResourceMetricsAuto, ResourceMetricsRules, ResourceMetricsKubelet, ResourceMetricsNone:
	default:
		errs = append(errs, fmt.Errorf("--resource-metrics: %q is not one of auto, rules, kubelet, none", o.ResourceMetrics))
	}
	if o.KubeStateMetricsInterval <= 0 {
		errs = append(errs, errors.New("--kube-state-metrics-scrape-interval must be positive"))
	}
	if o.RelistInterval <= 0 {
		errs = append(errs, errors.New("--metrics-relist-interval must be positive"))
	}
	if o.MaxAge < 0 {
		errs = append(errs, errors.New("--metrics-max-age must not be negative"))
	}
	if o.BackendTimeout <= 0 {
		errs = append(errs, errors.New("--backend-timeout must be positive"))
	}
	if o.BackendMaxInFlight < 0 {
		errs = append(errs, errors.New("--backend-max-in-flight must not be negative (0 means the default, 32)"))
	}
	if o.BackendLimits.MaxResponseBytes <= 0 || o.BackendLimits.MaxSamples <= 0 || o.BackendLimits.MaxSeries <= 0 {
		errs = append(errs, errors.New("--backend-max-response-bytes, --backend-max-samples and --backend-max-series must be positive"))
	}
	if o.ValueCacheTTL < 0 {
		errs = append(errs, errors.New("--value-cache-ttl must not be negative"))
	}
	if o.ValueCacheMaxBytes <= 0 || o.SelectorCacheMaxBytes <= 0 {
		errs = append(errs, errors.New("--value-cache-max-bytes and --selector-cache-max-bytes must be positive"))
	}
	if o.ConfigReloadInterval < 0 {
		errs = append(errs, errors.New("--config-reload-interval must not be negative"))
	}
	errs = append(errs, o.MetricRules.Validate()...)
	return errors.Join(errs...)
}

// Server is a configured, not yet running Gantry.
type Server struct {
	basecmd.AdapterBase
	Options Options
}

// NewServer returns a server whose flags, Gantry's and the API server's, are
// registered on fs.
func NewServer(fs *pflag.FlagSet) *Server {
	s := &Server{}
	s.Name = "gantry"
	s.FlagSet = fs
	s.InstallFlags()
	s.Options.AddFlags(fs)
	s.Options.Kubelet.AddFlags(fs)
	return s
}

// Run serves until ctx is cancelled. It returns an error when the server
// cannot start; a clean shutdown returns nil. Each step builds on the one
// before, in the order of the flow: config → backends → discovery and
// providers → APIs → background loops.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Options.Validate(); err != nil {
		return err
	}
	// Validate before contacting the cluster: a broken file fails at once.
	data, cfg, err := s.loadConfig()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	back, mode, err := s.buildBackends(cfg, reg)
	if err != nil {
		return err
	}
	p, err := s.buildPipeline(ctx, cfg, back, mode, reg)
	if err != nil {
		return err
	}
	mrules, err := s.prepareMetricRules(p, cfg, reg)
	if err != nil {
		return err
	}
	generic, err := s.buildAPIServer(p.provider, reg)
	if err != nil {
		return err
	}
	mrules.start(ctx, generic)
	if err := s.installResourceMetrics(ctx, generic, p, reg); err != nil {
		return err
	}
	if err := s.startKubeStateMetrics(ctx, generic, back, reg); err != nil {
		return err
	}
	if err := s.installSelfChecks(generic, p.discovery, reg); err != nil {
		return err
	}
	s.installDiagnostics(generic, p)
	s.startBackgroundLoops(ctx, p, data, reg)

	klog.InfoS("starting gantry", "config", s.Options.ConfigFile, "rules", len(p.rules.custom), "externalRules", len(p.rules.external), "resourceMetrics", mode,
		"prometheus", back.prom != nil, "loki", back.loki != nil, "localStore", back.local != nil)
	return generic.PrepareRun().RunWithContext(ctx)
}

// pipeline is what answers a metrics request, built from the options and
// the config in the order of the flow: backends → rules → discovery →
// object cache → providers.
type pipeline struct {
	back *backends
	// resourceMode is where metrics.k8s.io comes from, resolved (never
	// auto).
	resourceMode string
	mapper       apimeta.RESTMapper
	clientConfig *rest.Config
	// rules are the rules Gantry started with; a reload hands newer ones to
	// discovery and resourceSource, not here.
	rules     *compiledConfig
	discovery *discovery.Registry
	objects   *provider.ObjectCache
	provider  *provider.MetricsProvider
	// resourceSource serves metrics.k8s.io from the resource rules in use;
	// nil unless resourceMode is rules (see installResourceMetrics).
	resourceSource *resourceSource
	// config is the state of the config file, for GantryStatus: set at
	// start, on every applied reload and on every rejected one.
	config atomic.Pointer[configState]
}

// loadConfig reads and parses the config file. The bytes returned are the
// config in use: the reloader compares the file against them.
func (s *Server) loadConfig() ([]byte, *config.Config, error) {
	data, err := os.ReadFile(s.Options.ConfigFile)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := config.Parse(data, s.Options.ConfigFile)
	if err != nil {
		return nil, nil, err
	}
	return data, cfg, nil
}

// buildBackends builds the clients of the backends the flags name, resolves
// where metrics.k8s.io comes from, and checks that every rule of cfg has
// its backend. It needs no cluster.
func (s *Server) buildBackends(cfg *config.Config, reg prometheus.Registerer) (*backends, string, error) {
	back, err := newBackends(&s.Options, cfg, reg)
	if err != nil {
		return nil, "", err
	}
	mode := resourceMode(s.Options.ResourceMetrics, cfg)
	if mode == ResourceMetricsRules && cfg.ResourceRules == nil {
		return nil, "", fmt.Errorf("--resource-metrics=rules: %s has no resourceRules", s.Options.ConfigFile)
	}
	if err := back.check(s.Options.ConfigFile, cfg, mode == ResourceMetricsRules); err != nil {
		return nil, "", err
	}
	return back, mode, nil
}

// buildPipeline compiles the rules against the cluster's resources and
// builds discovery, the object cache and the custom and external metrics
// provider on the backends.
func (s *Server) buildPipeline(ctx context.Context, cfg *config.Config, back *backends, mode string, reg prometheus.Registerer) (*pipeline, error) {
	p := &pipeline{back: back, resourceMode: mode}
	var err error
	if p.mapper, err = s.RESTMapper(); err != nil {
		return nil, fmt.Errorf("building the REST mapper from the cluster's discovery: %w", err)
	}
	if p.rules, err = compileConfig(cfg, s.Options.ConfigFile, p.mapper); err != nil {
		return nil, err
	}
	p.config.Store(&configState{custom: len(p.rules.custom), external: len(p.rules.external), loaded: time.Now()})
	p.discovery = discovery.New(discovery.Options{
		Rules:         p.rules.custom,
		ExternalRules: p.rules.external,
		Listers:       back.listers(),
		Mapper:        p.mapper,
		Interval:      s.Options.RelistInterval,
		MaxAge:        s.Options.MaxAge,
		Registerer:    reg,
	})
	if p.clientConfig, err = s.ClientConfig(); err != nil {
		return nil, err
	}
	metaClient, err := metadata.NewForConfig(p.clientConfig)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	p.objects = provider.NewObjectCache(ctx, metaClient, p.mapper, s.Options.ObjectResync, s.Options.SelectorCacheMaxBytes)
	back.learnNamespaces(func() []string {
		ctx, cancel := context.WithTimeout(ctx, s.Options.BackendTimeout)
		defer cancel()
		names, err := p.objects.Names(ctx, rules.Namespaces, "", labels.Everything())
		if err != nil {
			klog.ErrorS(err, "listing namespaces for the tenants of discovery")
		}
		return names
	})
	p.provider = provider.New(provider.Options{
		Registry: p.discovery,
		Queriers: back.queriers(),
		Objects:  p.objects,
		Mapper:   p.mapper,
		Timeout:  s.Options.BackendTimeout,

		ValueCacheTTL:      s.Options.ValueCacheTTL,
		ValueCacheMaxBytes: s.Options.ValueCacheMaxBytes,
		Registerer:         reg,
	})
	return p, nil
}

// buildAPIServer builds the API server, with Gantry's filters in its
// handler chain, and installs custom.metrics.k8s.io and
// external.metrics.k8s.io on it, served by mp.
func (s *Server) buildAPIServer(mp metricsProvider, reg prometheus.Registerer) (*genericapiserver.GenericAPIServer, error) {
	// metrics.k8s.io needs OpenAPI models next to the ones custom-metrics-
	// apiserver generates, and Gantry serves /metrics from its own registry.
	defs := mergeDefinitions(generatedcore.GetOpenAPIDefinitions, generatedcustom.GetOpenAPIDefinitions, generatedexternal.GetOpenAPIDefinitions, metricsapi.OpenAPIDefinitions)
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, metricsapi.Scheme)
	s.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	s.OpenAPIConfig.Info.Title, s.OpenAPIConfig.Info.Version = "gantry", "v1"
	s.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(defs, namer)
	s.OpenAPIV3Config.Info.Title, s.OpenAPIV3Config.Info.Version = "gantry", "v1"
	s.CustomMetricsAdapterServerOptions.EnableMetrics = false

	apiCfg, err := s.Config()
	if err != nil {
		return nil, err
	}
	reqMetrics := filters.NewRequestMetrics(reg)
	apiCfg.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return genericapiserver.DefaultBuildHandlerChain(reqMetrics.Wrap(filters.CheckMetricSelectors(h)), c)
	}
	server, err := s.Server()
	if err != nil {
		return nil, err
	}
	generic := server.GenericAPIServer
	if err := installMetricAPIs(generic, mp); err != nil {
		return nil, err
	}
	return generic, nil
}

// startKubeStateMetrics starts scraping kube-state-metrics into the local
// store, when --kube-state-metrics-url is set, and makes Gantry ready only
// after its first scrape.
func (s *Server) startKubeStateMetrics(ctx context.Context, generic *genericapiserver.GenericAPIServer, back *backends, reg prometheus.Registerer) error {
	if s.Options.KubeStateMetricsURL == "" {
		return nil
	}
	ksm, err := kubestate.New(kubestate.Options{URL: s.Options.KubeStateMetricsURL, Interval: s.Options.KubeStateMetricsInterval, Timeout: s.Options.BackendTimeout}, back.local, reg)
	if err != nil {
		return fmt.Errorf("kube-state-metrics: %w", err)
	}
	go ksm.Run(ctx)
	// Ready once kube-state-metrics was scraped once, so local rules
	// have data when the APIs open; a later outage shows in
	// gantry_kubestate_* and as 404s for its metrics, and does not take
	// the other metrics down with an unready Gantry.
	var scraped atomic.Bool
	return generic.AddReadyzChecks(healthz.NamedCheck("kube-state-metrics-first-scrape", func(*http.Request) error {
		if scraped.Load() {
			return nil
		}
		if err := ksm.Ready(); err != nil {
			return err
		}
		scraped.Store(true)
		return nil
	}))
}

// installSelfChecks serves Gantry's own /metrics and makes /readyz fail
// when discovery has not succeeded for a few relist intervals.
func (s *Server) installSelfChecks(generic *genericapiserver.GenericAPIServer, registry *discovery.Registry, reg *prometheus.Registry) error {
	generic.Handler.NonGoRestfulMux.Handle("/metrics", promhttp.HandlerFor(
		prometheus.Gatherers{reg, legacyregistry.DefaultGatherer},
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError},
	))
	staleAfter := 3*s.Options.RelistInterval + time.Minute
	return generic.AddReadyzChecks(healthz.NamedCheck("metric-discovery", func(*http.Request) error {
		return registry.Ready(staleAfter)
	}))
}

// startBackgroundLoops starts discovery's relist, the config reloader
// (unless --config-reload-interval is 0) and the warming of the object
// caches; they stop when ctx is cancelled. data is the config file's
// content in use.
func (s *Server) startBackgroundLoops(ctx context.Context, p *pipeline, data []byte, reg prometheus.Registerer) {
	go p.discovery.Run(ctx)
	if s.Options.ConfigReloadInterval > 0 {
		reloader := newConfigReloader(s.Options.ConfigFile, data, s.Options.ConfigReloadInterval, clock.RealClock{}, s.reloadCompiler(p), s.reloadApplier(p), reg)
		reloader.rejected = func(err error) {
			st := *p.config.Load()
			st.rejected = err.Error()
			p.config.Store(&st)
		}
		go reloader.Run(ctx)
	}
	go func() {
		// Warm the object caches of what discovery found, so the first HPA
		// request does not wait for an initial list.
		t := time.NewTicker(s.Options.RelistInterval)
		defer t.Stop()
		for {
			p.objects.Warm(p.discovery.GroupResources()...)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// reloadCompiler parses a changed config file once, checks it against the
// backends and compiles it. A rule for a backend Gantry was not started
// with cannot be served: the file is rejected and the config in use stays.
func (s *Server) reloadCompiler(p *pipeline) func(data []byte) (*compiledConfig, error) {
	file := s.Options.ConfigFile
	return func(data []byte) (*compiledConfig, error) {
		return parseAndCompile(data, file, p.mapper, func(cfg *config.Config) error {
			return p.back.check(file, cfg, p.resourceSource != nil)
		})
	}
}

// reloadApplier hands a reloaded config's rules to discovery and to
// metrics.k8s.io, and logs what a reload cannot change.
func (s *Server) reloadApplier(p *pipeline) func(*compiledConfig) {
	file := s.Options.ConfigFile
	return func(c *compiledConfig) {
		p.discovery.SetRules(c.custom, c.external)
		p.config.Store(&configState{custom: len(c.custom), external: len(c.external), loaded: time.Now()})
		switch src := p.resourceSource; {
		case src != nil && c.resource != nil:
			src.p.Store(provider.NewResourceProvider(c.resource, p.back.prom, s.Options.BackendTimeout))
		case src == nil && c.resource != nil:
			klog.InfoS("config reload: resourceRules were added, but where metrics.k8s.io comes from is decided at start only; restart Gantry to serve them", "config", file, "resourceMetrics", p.resourceMode)
		case src != nil && c.resource == nil:
			klog.InfoS("config reload: resourceRules were removed, but metrics.k8s.io is installed at start only; it keeps serving the previous resourceRules until Gantry restarts", "config", file)
		}
		klog.InfoS("config applied", "config", file, "rules", len(c.custom), "externalRules", len(c.external), "resourceRules", c.resource != nil)
	}
}

func mergeDefinitions(getters ...common.GetOpenAPIDefinitions) common.GetOpenAPIDefinitions {
	return func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		out := map[string]common.OpenAPIDefinition{}
		for _, get := range getters {
			for k, v := range get(ref) {
				out[k] = v
			}
		}
		return out
	}
}
