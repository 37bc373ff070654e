package provider

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
)

// objectSamples are the per-object values of one backend query: what a
// custom metrics request about any of those objects is answered from.
type objectSamples struct {
	// query is the PromQL that produced the values, for errors.
	query  string
	byName map[string]model.SamplePair
}

// valueKey says which values a request needs: the rule and series, the
// resource and namespace, the metric selector and, for queries that name
// their objects, the names. Requests with equal keys are answered by the same
// query, so the key stands for the query text without rendering it.
type valueKey struct {
	rule, series string
	gr           schema.GroupResource
	namespace    string
	selector     string
	names        string // "" for a namespace query
}

// valueCache keeps the values of recent queries for a short TTL, so that the
// HPAs polling the same rule and namespace share one backend query, and joins
// concurrent requests for the same key onto one query in flight. The values
// served are at most TTL (plus the query's own duration) older than the
// evaluation time of their query; their timestamps are the backend's, so
// clients see how old they are. Errors are not kept.
type valueCache struct {
	ttl      time.Duration
	clock    clock.PassiveClock
	requests *prometheus.CounterVec

	mu        sync.Mutex
	entries   map[valueKey]*valueEntry
	lastSweep time.Time
}

type valueEntry struct {
	sent time.Time     // when the query was sent; the entry expires ttl later
	done chan struct{} // closed when values or err is set
	vals *objectSamples
	err  error
}

func newValueCache(ttl time.Duration, clk clock.PassiveClock, reg prometheus.Registerer) *valueCache {
	c := &valueCache{
		ttl:     ttl,
		clock:   clk,
		entries: map[valueKey]*valueEntry{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_value_cache_requests_total",
			Help: "Custom metrics requests by whether their values came from the value cache (hit, including joining an identical query in flight) or needed a backend query (miss).",
		}, []string{"result"}),
	}
	// Both series exist from the start, so a hit rate can be computed at once.
	c.requests.WithLabelValues("hit")
	c.requests.WithLabelValues("miss")
	if reg != nil {
		if err := reg.Register(c.requests); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				c.requests = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	return c
}

// get returns the values for key, from the cache when they are fresh, from
// a query in flight for the same key, or else from fetch. fetch runs detached
// from ctx (others may wait for it) and must bound its own duration; a caller
// whose ctx ends stops waiting with ctx's error.
func (c *valueCache) get(ctx context.Context, key valueKey, fetch func(context.Context) (*objectSamples, error)) (*objectSamples, error) {
	if c.ttl <= 0 {
		c.requests.WithLabelValues("miss").Inc()
		return fetch(ctx)
	}
	now := c.clock.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && (!closed(e.done) || now.Sub(e.sent) < c.ttl) {
		c.mu.Unlock()
		c.requests.WithLabelValues("hit").Inc()
	} else {
		e = &valueEntry{sent: now, done: make(chan struct{})}
		c.entries[key] = e
		c.sweep(now)
		c.mu.Unlock()
		c.requests.WithLabelValues("miss").Inc()
		// The query must not die with this caller's context, but keeps its
		// deadline.
		fctx, cancel := context.WithoutCancel(ctx), context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			fctx, cancel = context.WithDeadline(fctx, dl)
		}
		go func() {
			defer cancel()
			vals, err := fetch(fctx)
			c.mu.Lock()
			e.vals, e.err = vals, err
			if err != nil && c.entries[key] == e {
				delete(c.entries, key)
			}
			close(e.done)
			c.mu.Unlock()
		}()
	}
	select {
	case <-e.done:
		return e.vals, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// sweep drops expired entries, at most once per TTL, so the cache holds
// only what was asked for in about the last two TTLs. c.mu is held.
func (c *valueCache) sweep(now time.Time) {
	if now.Sub(c.lastSweep) < c.ttl {
		return
	}
	c.lastSweep = now
	for k, e := range c.entries {
		if closed(e.done) && now.Sub(e.sent) >= c.ttl {
			delete(c.entries, k)
		}
	}
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
