// Package kubestate scrapes a kube-state-metrics endpoint into Gantry's
// in-memory series store (collectors/store), so that rules with
// `source: local` over kube_* series — a Deployment's unavailable replicas,
// an HPA's conditions, a pod's phase — work without a Prometheus server.
//
// It is a scraped source: Run scrapes on a ticker, providers read the store
// and never wait for a scrape.
//
// A failed scrape leaves the store as it was: the previous scrape's series
// keep answering queries, as one lost scrape says nothing about the
// cluster's state. Once no scrape has succeeded for StaleAfter
// (3 intervals), the target's series are dropped (Store.Forget), so queries
// find no data instead of old data, and Ready reports the outage. This is
// stricter than Prometheus, which keeps answering with the last samples for
// its 5 minute lookback; replica counts older than a few intervals are not
// something an autoscaler should act on.
package kubestate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/gantry-dev/gantry/collectors/internal/scrape"
	"github.com/gantry-dev/gantry/collectors/store"
)

// Target is the store target kube-state-metrics' series are kept under.
const Target = "kube-state-metrics"

const (
	defaultInterval = 15 * time.Second
	defaultTimeout  = 10 * time.Second
	// staleIntervals is how many intervals without a successful scrape the
	// series survive.
	staleIntervals = 3
	// acceptHeader asks for the Prometheus text format, which
	// kube-state-metrics serves by default, and takes OpenMetrics too.
	acceptHeader = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"
)

// Options configure a Scraper.
type Options struct {
	// URL is kube-state-metrics' metrics endpoint, e.g.
	// http://kube-state-metrics.kube-system.svc:8080/metrics. A URL without
	// a path gets /metrics.
	URL string
	// HTTP is the HTTP client configuration (auth, TLS, headers), as for
	// Prometheus.
	HTTP commoncfg.HTTPClientConfig
	// Interval is the time between scrapes; default 15s.
	Interval time.Duration
	// Timeout bounds one scrape; default 10s, at most Interval.
	Timeout time.Duration
}

// Scraper scrapes kube-state-metrics into a store.
type Scraper struct {
	url      string
	client   *http.Client
	interval time.Duration
	timeout  time.Duration
	store    *store.Store
	clock    clock.WithTicker
	metrics  scraperMetrics

	mu          sync.Mutex
	lastSuccess time.Time // zero until the first successful scrape
	lastErr     error
	forgotten   bool // the series were dropped after the last success
}

type scraperMetrics struct {
	duration    prometheus.Histogram
	failures    *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

// New returns a scraper of opts.URL into st, registering its metrics on reg
// (nil registers none).
func New(opts Options, st *store.Store, reg prometheus.Registerer) (*Scraper, error) {
	if opts.URL == "" {
		return nil, errors.New("kube-state-metrics URL is required (--kube-state-metrics-url)")
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("kube-state-metrics URL %q: expected http(s)://host[:port][/path]", opts.URL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	if st == nil {
		return nil, errors.New("kube-state-metrics scraper: no store")
	}
	if err := opts.HTTP.Validate(); err != nil {
		return nil, fmt.Errorf("kube-state-metrics HTTP client config: %w", err)
	}
	hc, err := commoncfg.NewClientFromConfig(opts.HTTP, "gantry")
	if err != nil {
		return nil, fmt.Errorf("kube-state-metrics HTTP client: %w", err)
	}
	if opts.Interval <= 0 {
		opts.Interval = defaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	opts.Timeout = min(opts.Timeout, opts.Interval)

	s := &Scraper{
		url:      u.String(),
		client:   hc,
		interval: opts.Interval,
		timeout:  opts.Timeout,
		store:    st,
		clock:    clock.RealClock{},
		metrics: scraperMetrics{
			duration: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "gantry_kubestate_scrape_duration_seconds",
				Help:    "Duration of scrapes of kube-state-metrics, successful or not.",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			}),
			failures: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "gantry_kubestate_scrape_failures_total",
				Help: "Failed scrapes of kube-state-metrics by reason (timeout, unreachable, http_status, parse).",
			}, []string{"reason"}),
			lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "gantry_kubestate_last_success_timestamp_seconds",
				Help: "Time of the last successful scrape of kube-state-metrics.",
			}),
		},
	}
	if reg != nil {
		reg.MustRegister(s.metrics.duration, s.metrics.failures, s.metrics.lastSuccess)
	}
	return s, nil
}

// StaleAfter is how long the series outlive the last successful scrape.
func (s *Scraper) StaleAfter() time.Duration { return staleIntervals * s.interval }

// Run scrapes at once, then every interval, until ctx is done; it returns
// when ctx is cancelled, after the scrape in flight (which ctx cancels).
func (s *Scraper) Run(ctx context.Context) {
	scrape.Every(ctx, s.clock, s.interval, s.scrapeOnce)
}

// Ready is nil once a scrape has succeeded and none of the scrapes of the
// last StaleAfter has, for /readyz.
func (s *Scraper) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.lastSuccess.IsZero() && s.lastErr == nil:
		return errors.New("kube-state-metrics: no scrape yet")
	case s.lastSuccess.IsZero():
		return fmt.Errorf("kube-state-metrics: no successful scrape yet: %w", s.lastErr)
	case s.clock.Since(s.lastSuccess) > s.StaleAfter():
		return fmt.Errorf("kube-state-metrics: last successful scrape %s ago: %w", s.clock.Since(s.lastSuccess).Round(time.Second), s.lastErr)
	}
	return nil
}

// scrapeOnce scrapes and records the outcome.
func (s *Scraper) scrapeOnce(ctx context.Context) {
	start := s.clock.Now()
	reason, err := s.scrape(ctx, start)
	s.metrics.duration.Observe(s.clock.Since(start).Seconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.lastSuccess, s.lastErr, s.forgotten = start, nil, false
		s.metrics.lastSuccess.Set(float64(start.UnixNano()) / 1e9)
		klog.V(4).InfoS("scraped kube-state-metrics", "duration", s.clock.Since(start))
		return
	}
	if ctx.Err() != nil {
		return // shutting down: not a failure of kube-state-metrics
	}
	s.lastErr = err
	s.metrics.failures.WithLabelValues(reason).Inc()
	klog.ErrorS(err, "scraping kube-state-metrics failed", "reason", reason)
	if !s.forgotten && !s.lastSuccess.IsZero() && s.clock.Since(s.lastSuccess) > s.StaleAfter() {
		s.store.Forget(Target)
		s.forgotten = true
		klog.InfoS("dropped kube-state-metrics series: no successful scrape", "since", s.lastSuccess, "staleAfter", s.StaleAfter())
	}
}

// scrape fetches and ingests one scrape; reason classifies a failure.
func (s *Scraper) scrape(ctx context.Context, scrapeTime time.Time) (reason string, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return "unreachable", err
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := s.client.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return "http_status", fmt.Errorf("kube-state-metrics answered %s", resp.Status)
	}
	if err := s.store.Ingest(Target, resp.Body, resp.Header.Get("Content-Type"), scrapeTime); err != nil {
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			return "timeout", fmt.Errorf("reading kube-state-metrics' answer: no answer within %s", s.timeout)
		}
		var ne net.Error
		if errors.As(err, &ne) {
			return "unreachable", err
		}
		return "parse", err
	}
	return "", nil
}

// classify names a transport error; the URL stays out of the message, as
// the message reaches /readyz.
func classify(err error) (string, error) {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if uerr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return "timeout", errors.New("no answer within the deadline")
		}
		return "unreachable", uerr.Err
	}
	return "unreachable", err
}
