// Package kubelet is Gantry's zero-dependency source for metrics.k8s.io: it
// scrapes every node's kubelet (/metrics/resource, and /metrics/cadvisor
// when asked) on a ticker and keeps a small window per container and node,
// from which PodMetrics and NodeMetrics are served without I/O.
//
// Flow: Node informer → scrape round (bounded concurrency, a deadline per
// node) → parse (a line scanner for the five series used) → store (last two
// CPU samples, last memory) → adapter/metricsapi.Source.
package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/gantry-dev/gantry/collectors/internal/scrape"
)

// Ingester takes whole expositions scraped from a target, e.g. a kubelet's
// /metrics/cadvisor, into an in-memory store. Ingest must not keep r after
// it returns. Forget drops everything of a target that is gone.
type Ingester interface {
	Ingest(target string, r io.Reader, contentType string, scrapeTime time.Time) error
	Forget(target string)
}

// staleRounds is how many intervals a node's data outlives its last
// successful scrape: one failed scrape does not make its pods vanish from
// the HPA, a dead node's do after this.
const staleRounds = 3

// maxResourceBody bounds a /metrics/resource response (a node with 250
// pods answers about 150 KB).
const maxResourceBody = 16 << 20

const resourcePath, cadvisorPath = "/metrics/resource", "/metrics/cadvisor"

// Collector scrapes kubelets and serves their CPU and memory usage.
type Collector struct {
	opts      Options
	factory   informers.SharedInformerFactory
	nodes     listersv1.NodeLister
	synced    cache.InformerSynced
	client    *http.Client
	endpoints *endpoints
	ingester  Ingester
	clock     clock.WithTicker
	store     *store
	metrics   *collectorMetrics

	mu        sync.Mutex
	lastRound time.Time       // end of the last complete round, by clock
	failing   map[string]bool // nodes whose last scrape failed
	scraped   map[string]bool // the nodes of the last round
}

// New builds a collector from the options and the rest.Config Gantry uses
// for the kube-apiserver (in-cluster or kubeconfig). ing may be nil; it is
// only used with Options.Cadvisor. Metrics register with reg when not nil.
func New(opts Options, cfg *rest.Config, ing Ingester, reg prometheus.Registerer) (*Collector, error) {
	if cfg == nil {
		return nil, errors.New("kubelet collector: no kube-apiserver configuration")
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Cadvisor && ing == nil {
		return nil, errors.New("--kubelet-cadvisor: no store to ingest into")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet collector: kube-apiserver client: %w", err)
	}
	rt, err := kubeletTransport(opts, cfg)
	if err != nil {
		return nil, err
	}
	apiServer, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet collector: kube-apiserver URL: %w", err)
	}
	return newCollector(opts, cs, &http.Client{Transport: rt}, apiServer, ing, reg, clock.RealClock{})
}

// kubeletTransport is the apiserver's transport in proxy mode. In direct
// mode it has the same credentials (token, client certificate, exec plugin)
// with the kubelet's TLS settings, on a transport sized for one idle
// connection per kubelet: HTTP/1.1 (one goroutine pair, nothing to
// multiplex), small buffers (a request is a few hundred bytes), and idle
// connections kept across rounds but not for nodes gone for good.
// Reusing connections matters: a TLS handshake per scrape costs about
// four times the CPU of the scrape itself (BenchmarkRound).
func kubeletTransport(o Options, cfg *rest.Config) (http.RoundTripper, error) {
	kc := rest.CopyConfig(cfg)
	if o.ViaAPIServerProxy {
		rt, err := rest.TransportFor(kc)
		if err != nil {
			return nil, fmt.Errorf("kubelet collector: kube-apiserver transport: %w", err)
		}
		return rt, nil
	}
	kc.TLSClientConfig.ServerName = ""
	kc.TLSClientConfig.NextProtos = []string{"http/1.1"}
	switch {
	case o.InsecureTLS:
		kc.TLSClientConfig.Insecure = true
		kc.TLSClientConfig.CAFile, kc.TLSClientConfig.CAData = "", nil
	case o.CAFile != "":
		kc.TLSClientConfig.CAFile, kc.TLSClientConfig.CAData = o.CAFile, nil
	}
	tlsConfig, err := rest.TLSConfigFor(kc)
	if err != nil {
		return nil, fmt.Errorf("kubelet collector: kubelet TLS: %w", err)
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	t := utilnet.SetTransportDefaults(&http.Transport{
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     max(90*time.Second, staleRounds*o.Interval+o.Timeout),
		ReadBufferSize:      2 << 10,
		WriteBufferSize:     1 << 10,
	})
	rt, err := rest.HTTPWrappersForConfig(kc, t)
	if err != nil {
		return nil, fmt.Errorf("kubelet collector: kubelet credentials: %w", err)
	}
	return rt, nil
}

func newCollector(opts Options, cs kubernetes.Interface, client *http.Client, apiServer *url.URL, ing Ingester, reg prometheus.Registerer, clk clock.WithTicker) (*Collector, error) {
	m, err := newCollectorMetrics(reg)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(trimNode))
	inf := factory.Core().V1().Nodes()
	c := &Collector{
		opts:      opts,
		factory:   factory,
		nodes:     inf.Lister(),
		synced:    inf.Informer().HasSynced,
		client:    client,
		endpoints: newEndpoints(opts, apiServer),
		ingester:  ing,
		clock:     clk,
		store:     newStore(opts.Interval),
		metrics:   m,
		failing:   map[string]bool{},
	}
	if !opts.Cadvisor {
		c.ingester = nil
	}
	return c, nil
}

// Run starts the node informer and scrapes every Interval until ctx is
// canceled; it returns when every scrape it started has ended.
func (c *Collector) Run(ctx context.Context) {
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return
	}
	klog.InfoS("scraping kubelets", "interval", c.opts.Interval, "timeout", c.opts.Timeout,
		"viaAPIServerProxy", c.opts.ViaAPIServerProxy, "cadvisor", c.opts.Cadvisor)
	scrape.Every(ctx, c.clock, c.opts.Interval, c.round)
}

// Ready is nil once a scrape round has completed, and fails when the last
// one ended long ago (the loop is stuck).
func (c *Collector) Ready() error {
	c.mu.Lock()
	last := c.lastRound
	c.mu.Unlock()
	if last.IsZero() {
		return errors.New("kubelets not scraped yet")
	}
	if age := c.clock.Since(last); age > staleRounds*c.opts.Interval+c.opts.Timeout {
		return fmt.Errorf("last kubelet scrape round ended %s ago", age.Round(time.Second))
	}
	return nil
}

// round scrapes every node once, Concurrency at a time. Each request has
// its own deadline, so a hanging kubelet holds one slot for at most Timeout
// while the others go on, and a node's data is stored as soon as its scrape
// ends, not at the end of the round.
func (c *Collector) round(ctx context.Context) {
	start := c.clock.Now()
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil { // a cache lister does not fail
		klog.ErrorS(err, "listing nodes")
		return
	}
	c.forgetDeleted(nodes)
	c.metrics.nodes.Set(float64(len(nodes)))
	// Nodes that failed last time go last: when dead nodes outnumber the
	// slots, they wait for their deadlines after the healthy ones are done.
	c.mu.Lock()
	slices.SortStableFunc(nodes, func(a, b *corev1.Node) int {
		return cmpBool(c.failing[a.Name], c.failing[b.Name])
	})
	c.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Concurrency)
	for _, n := range nodes {
		g.Go(func() error {
			c.scrapeNode(gctx, n)
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil {
		return
	}
	now := c.clock.Now()
	c.store.expire(now, staleRounds*c.opts.Interval)
	c.store.mu.RLock()
	c.metrics.containers.Set(float64(c.store.containers))
	c.store.mu.RUnlock()
	c.metrics.lastRound.Set(float64(now.UnixMilli()) / 1000)
	c.mu.Lock()
	c.lastRound = now
	c.mu.Unlock()
	klog.V(4).InfoS("scraped kubelets", "nodes", len(nodes), "duration", now.Sub(start))
}

// forgetDeleted drops nodes that no longer exist.
func (c *Collector) forgetDeleted(nodes []*corev1.Node) {
	exists := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		exists[n.Name] = true
	}
	c.mu.Lock()
	for name := range c.failing {
		if !exists[name] {
			delete(c.failing, name)
		}
	}
	gone := c.scraped
	c.scraped = exists
	c.mu.Unlock()
	for _, name := range c.store.nodeNames() {
		if !exists[name] {
			c.store.removeNode(name)
		}
	}
	if c.ingester == nil {
		return
	}
	// Every node scraped last round, whether its resource scrape worked or
	// not: its cAdvisor series may be in the store.
	for name := range gone {
		if !exists[name] {
			c.ingester.Forget(cadvisorTarget(name))
		}
	}
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func cadvisorTarget(node string) string { return "kubelet/" + node }

// scrapeNode scrapes one kubelet and stores what it said. Each request has
// its own deadline.
//
// A failure is logged as an error when a node starts failing and at -v=2
// while it goes on (a dead node would otherwise log every interval), and
// the recovery is logged too; gantry_kubelet_scrape_failures_total counts
// every one.
func (c *Collector) scrapeNode(ctx context.Context, n *corev1.Node) {
	err := c.scrapeResource(ctx, n)
	if ctx.Err() != nil {
		return // shutting down
	}
	c.mu.Lock()
	wasFailing := c.failing[n.Name]
	if err != nil {
		c.failing[n.Name] = true
	} else {
		delete(c.failing, n.Name)
	}
	c.mu.Unlock()
	switch {
	case err != nil && !wasFailing:
		klog.ErrorS(err, "scraping kubelet", "node", n.Name, "path", resourcePath)
	case err != nil:
		klog.V(2).InfoS("scraping kubelet still fails", "node", n.Name, "path", resourcePath, "err", err)
	case wasFailing:
		klog.InfoS("scraping kubelet works again", "node", n.Name, "path", resourcePath)
	}
	if c.ingester != nil {
		if err := c.scrapeCadvisor(ctx, n); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "scraping kubelet", "node", n.Name, "path", cadvisorPath)
		}
	}
}

func (c *Collector) scrapeResource(ctx context.Context, n *corev1.Node) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	start := time.Now()
	defer func() { c.observe(resourcePath, start, err) }()
	body, scraped, err := c.get(ctx, n, resourcePath)
	if err != nil {
		return err
	}
	defer body.Close()
	p := parserPool.Get().(*parser)
	defer parserPool.Put(p)
	lr := &io.LimitedReader{R: body, N: maxResourceBody + 1}
	res, err := p.parse(lr, scraped.UnixMilli())
	if err != nil {
		return scrapeError{reason: "parse", err: err}
	}
	if lr.N <= 0 {
		return scrapeError{reason: "parse", err: fmt.Errorf("response larger than %d bytes", maxResourceBody)}
	}
	c.store.update(n.Name, res, c.clock.Now())
	return nil
}

func (c *Collector) scrapeCadvisor(ctx context.Context, n *corev1.Node) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	start := time.Now()
	defer func() { c.observe(cadvisorPath, start, err) }()
	body, scraped, err := c.get(ctx, n, cadvisorPath)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := c.ingester.Ingest(cadvisorTarget(n.Name), body, body.contentType, scraped); err != nil {
		return scrapeError{reason: "ingest", err: err}
	}
	return nil
}

// response is a response body with its content type.
type response struct {
	io.ReadCloser
	contentType string
}

// get requests path on n's kubelet. scraped is when the response started,
// the timestamp of samples that carry none.
func (c *Collector) get(ctx context.Context, n *corev1.Node, path string) (*response, time.Time, error) {
	u, err := c.endpoints.url(n, path)
	if err != nil {
		return nil, time.Time{}, scrapeError{reason: "address", err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, time.Time{}, scrapeError{reason: "address", err: err}
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	if path == resourcePath {
		// A few KB: inflating them would cost more CPU than the parse
		// (and a 40 KB gzip reader per response) for no gain in-cluster.
		// cAdvisor's answers are large enough to be worth compressing.
		req.Header.Set("Accept-Encoding", "identity")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, time.Time{}, scrapeError{reason: transportReason(err), err: err}
	}
	scraped := c.clock.Now()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, time.Time{}, scrapeError{reason: "http_status", err: fmt.Errorf("%s: %s", u, resp.Status)}
	}
	return &response{ReadCloser: resp.Body, contentType: resp.Header.Get("Content-Type")}, scraped, nil
}

// scrapeError carries the reason counted in gantry_kubelet_scrape_failures_total.
type scrapeError struct {
	reason string
	err    error
}

func (e scrapeError) Error() string { return e.err.Error() }
func (e scrapeError) Unwrap() error { return e.err }

func transportReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case strings.Contains(err.Error(), "certificate"), strings.Contains(err.Error(), "tls:"):
		return "tls"
	}
	return "connection"
}

func (c *Collector) observe(path string, start time.Time, err error) {
	endpoint := strings.TrimPrefix(path, "/metrics/")
	c.metrics.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	if err == nil {
		return
	}
	reason := "connection"
	var se scrapeError
	if errors.As(err, &se) {
		reason = se.reason
	}
	if reason == "canceled" {
		return // shutting down
	}
	c.metrics.failures.WithLabelValues(endpoint, reason).Inc()
}

type collectorMetrics struct {
	duration   *prometheus.HistogramVec
	failures   *prometheus.CounterVec
	nodes      prometheus.Gauge
	containers prometheus.Gauge
	lastRound  prometheus.Gauge
}

func newCollectorMetrics(reg prometheus.Registerer) (*collectorMetrics, error) {
	m := &collectorMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_kubelet_scrape_duration_seconds",
			Help:    "Duration of one scrape of one kubelet, by endpoint (resource, cadvisor).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_kubelet_scrape_failures_total",
			Help: "Failed kubelet scrapes, by endpoint and reason (timeout, connection, tls, http_status, parse, address, ingest).",
		}, []string{"endpoint", "reason"}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_kubelet_nodes",
			Help: "Nodes scraped in the last round.",
		}),
		containers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_kubelet_containers",
			Help: "Containers in the kubelet collector's window.",
		}),
		lastRound: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_kubelet_last_round_timestamp_seconds",
			Help: "When the last complete kubelet scrape round ended.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.duration, m.failures, m.nodes, m.containers, m.lastRound} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("kubelet collector metrics: %w", err)
		}
	}
	return m, nil
}
