package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/singleflight"
)

// Calls is what every query backend's client (collectors/prometheus,
// collectors/loki) does around its HTTP calls: identical queries in flight
// at once share one call, at most a bounded number of calls are in flight,
// each call has a deadline, and calls are counted in the backend metrics
// under the backend's name.
type Calls struct {
	backend   string
	timeout   time.Duration
	precision time.Duration
	limits    Limits
	metrics   *Metrics
	flight    singleflight.Group
	slots     chan struct{} // one per call in flight
}

// CallsOptions configure Calls.
type CallsOptions struct {
	// Backend names the backend in metrics and errors.
	Backend string
	// Timeout bounds calls whose context has no earlier deadline; default 10s.
	Timeout time.Duration
	// MaxInFlight bounds the queries at the backend at once; default 32.
	MaxInFlight int
	// TimePrecision is the finest evaluation time the backend reads:
	// queries whose times differ by less are the same query. Default 1ns.
	TimePrecision time.Duration
	// Limits bound what the backend's answers may hold; zero values are
	// the defaults.
	Limits Limits
}

// NewCalls returns the call bookkeeping of a backend, counting in m.
func NewCalls(opts CallsOptions, m *Metrics) *Calls {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 32
	}
	if opts.TimePrecision <= 0 {
		opts.TimePrecision = time.Nanosecond
	}
	return &Calls{backend: opts.Backend, timeout: opts.Timeout, precision: opts.TimePrecision, limits: opts.Limits.WithDefaults(), metrics: m, slots: make(chan struct{}, opts.MaxInFlight)}
}

// Deadline is how long a call may take: the caller's remaining time, capped
// by the configured timeout.
func (c *Calls) Deadline(ctx context.Context) time.Duration {
	d := c.timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < d {
			d = max(left, time.Millisecond)
		}
	}
	return d
}

// Timeout is the configured bound of one call.
func (c *Calls) Timeout() time.Duration { return c.timeout }

// Limits are the bounds of the backend's answers, defaults filled in.
func (c *Calls) Limits() Limits { return c.limits }

// Query runs query at ts through run, once for all identical queries in
// flight (same tenant, same text, same evaluation time), waiting for a slot first, within
// the deadline. NaN and ±Inf samples are dropped from the answer. run
// reports its failures with Fail.
func (c *Calls) Query(ctx context.Context, tenant, query string, ts time.Time, run func(ctx context.Context) (model.Vector, error)) (model.Vector, error) {
	key := strconv.FormatInt(ts.Truncate(c.precision).UnixNano(), 10) + "\x00" + tenant + "\x00" + query
	waiting := c.metrics.waiting.WithLabelValues(c.backend)
	waiting.Inc()
	defer waiting.Dec()
	// leader is set when this caller's function makes the backend call; it
	// is read only after the result arrives, which happens after the call.
	leader := false
	ch := c.flight.DoChan(key, func() (any, error) {
		leader = true
		// The shared call must not die with the first caller's context.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Deadline(ctx))
		defer cancel()
		start := time.Now()
		// A slow backend must not collect an unbounded pile of queries
		// (and connections): wait for a slot, within the deadline.
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, c.Fail("query", start, &Error{Backend: c.backend, Reason: "timeout", Err: fmt.Errorf("%d queries already in flight; none finished in time", cap(c.slots))})
		}
		c.metrics.inFlight.WithLabelValues(c.backend).Inc()
		defer func() {
			c.metrics.inFlight.WithLabelValues(c.backend).Dec()
			<-c.slots
		}()
		vec, err := run(ctx)
		if err != nil {
			return nil, err
		}
		c.Succeed("query", start)
		return dropNonFinite(vec), nil
	})
	select {
	case res := <-ch:
		// res.Shared is true for every caller of a shared call, the one
		// that made it too; count only the callers that joined it.
		if res.Shared && !leader {
			c.metrics.shared.WithLabelValues(c.backend).Inc()
		}
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(model.Vector), nil
	case <-ctx.Done():
		return nil, &Error{Backend: c.backend, Reason: "timeout", Err: fmt.Errorf("gave up waiting: %w", ctx.Err())}
	}
}

// Succeed counts a successful call that began at start.
func (c *Calls) Succeed(call string, start time.Time) {
	c.metrics.duration.WithLabelValues(c.backend, call, "success").Observe(time.Since(start).Seconds())
}

// Fail counts a failed call that began at start and returns its error;
// an answer refused for a limit counts as rejected too.
func (c *Calls) Fail(call string, start time.Time, be *Error) error {
	c.metrics.duration.WithLabelValues(c.backend, call, "error").Observe(time.Since(start).Seconds())
	c.metrics.errors.WithLabelValues(c.backend, call, be.Reason).Inc()
	var le *LimitError
	if errors.As(be.Err, &le) {
		c.metrics.rejected.WithLabelValues(c.backend, call, le.Limit).Inc()
	}
	return be
}

func dropNonFinite(vec model.Vector) model.Vector {
	out := vec[:0]
	for _, s := range vec {
		f := float64(s.Value)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// Metrics are the metrics of every query backend, told apart by their
// backend label.
type Metrics struct {
	duration *promclient.HistogramVec
	errors   *promclient.CounterVec
	shared   *promclient.CounterVec
	inFlight *promclient.GaugeVec
	waiting  *promclient.GaugeVec
	rejected *promclient.CounterVec

	// The members of HA sets.
	memberUp       *promclient.GaugeVec
	memberDuration *promclient.HistogramVec
	memberFailures *promclient.CounterVec
	memberRetries  *promclient.CounterVec
}

// NewMetrics registers the backend metrics on reg (nil registers nothing),
// or returns the ones another backend's client registered there first.
func NewMetrics(reg promclient.Registerer) (*Metrics, error) {
	m := &Metrics{
		duration: promclient.NewHistogramVec(promclient.HistogramOpts{
			Name:    "gantry_backend_request_duration_seconds",
			Help:    "Duration of calls to a metrics backend, by backend, call and outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend", "call", "outcome"}),
		errors: promclient.NewCounterVec(promclient.CounterOpts{
			Name: "gantry_backend_errors_total",
			Help: "Failed calls to a metrics backend, by backend, call and reason.",
		}, []string{"backend", "call", "reason"}),
		shared: promclient.NewCounterVec(promclient.CounterOpts{
			Name: "gantry_backend_shared_queries_total",
			Help: "Queries answered by an identical query already in flight.",
		}, []string{"backend"}),
		inFlight: promclient.NewGaugeVec(promclient.GaugeOpts{
			Name: "gantry_backend_queries_in_flight",
			Help: "Queries sent to a metrics backend and not yet answered (at most --backend-max-in-flight).",
		}, []string{"backend"}),
		waiting: promclient.NewGaugeVec(promclient.GaugeOpts{
			Name: "gantry_backend_queries_waiting",
			Help: "Callers waiting for a query answer from a metrics backend: those whose query is in flight or waits for a slot, and those that joined an identical one.",
		}, []string{"backend"}),
		rejected: promclient.NewCounterVec(promclient.CounterOpts{
			Name: "gantry_backend_answers_rejected_total",
			Help: "Backend answers refused for exceeding a limit (max_response_bytes, max_samples, max_series), by backend, call and limit.",
		}, []string{"backend", "call", "limit"}),
		memberUp: promclient.NewGaugeVec(promclient.GaugeOpts{
			Name: "gantry_backend_member_up",
			Help: "Whether a member of a backend's HA set is used (1) or skipped until a probe finds it healthy (0).",
		}, []string{"backend", "member"}),
		memberDuration: promclient.NewHistogramVec(promclient.HistogramOpts{
			Name:    "gantry_backend_member_request_duration_seconds",
			Help:    "Duration of requests to one member of a backend's HA set, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend", "member", "outcome"}),
		memberFailures: promclient.NewCounterVec(promclient.CounterOpts{
			Name: "gantry_backend_member_failures_total",
			Help: "Failed requests to one member of a backend's HA set, by reason (unreachable, timeout, server_error).",
		}, []string{"backend", "member", "reason"}),
		memberRetries: promclient.NewCounterVec(promclient.CounterOpts{
			Name: "gantry_backend_member_retries_total",
			Help: "Requests to a backend's HA set sent on to another member after a failure.",
		}, []string{"backend"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.shared, err = register(reg, m.shared); err != nil {
		return nil, err
	}
	if m.inFlight, err = register(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.waiting, err = register(reg, m.waiting); err != nil {
		return nil, err
	}
	if m.rejected, err = register(reg, m.rejected); err != nil {
		return nil, err
	}
	if m.memberUp, err = register(reg, m.memberUp); err != nil {
		return nil, err
	}
	if m.memberDuration, err = register(reg, m.memberDuration); err != nil {
		return nil, err
	}
	if m.memberFailures, err = register(reg, m.memberFailures); err != nil {
		return nil, err
	}
	if m.memberRetries, err = register(reg, m.memberRetries); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers col, or returns the collector already registered
// under its name (which must have the same type).
func register[C promclient.Collector](reg promclient.Registerer, col C) (C, error) {
	err := reg.Register(col)
	var are promclient.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
		return col, fmt.Errorf("registering %T: a %T is registered under its name", col, are.ExistingCollector)
	}
	return col, err
}
