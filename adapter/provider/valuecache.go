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
	// requestNamespace is the namespace the request was made in, which a
	// backend's tenant follows.
	requestNamespace string
}

// valueCache keeps the values of recent queries for a short TTL, so that the
// HPAs polling the same rule and namespace share one backend query, and joins
// concurrent requests for the same key onto one query in flight. The values
// served are at most TTL (plus the query's own duration) older than the
// evaluation time of their query; their timestamps are the backend's, so
// clients see how old they are. Errors are not kept.
//
// The kept values are bounded by bytes (as valueEntry.size counts them):
// expired entries are swept at most once per TTL on any request, and values
// that would not fit even after a sweep answer their waiting requests but
// are not kept, so ever new metric selectors cannot grow the cache.
type valueCache struct {
	ttl      time.Duration
	maxBytes int64
	clock    clock.PassiveClock
	requests *prometheus.CounterVec

	mu        sync.Mutex
	entries   map[valueKey]*valueEntry
	bytes     int64 // of the completed entries in entries
	lastSweep time.Time
}

type valueEntry struct {
	sent time.Time     // when the query was sent; the entry expires ttl later
	done chan struct{} // closed when values or err is set
	vals *objectSamples
	err  error
	size int64 // counted in valueCache.bytes once done
}

// DefaultValueCacheBytes is the default bound of the value cache: with Go's
// heap growing to twice what is live, the cache full and the rest of
// Gantry keep well inside the shipped 512 MiB limit.
const DefaultValueCacheBytes = 32 << 20

// entrySize estimates the memory that key and vals hold: the strings, and a
// map entry per object (a string header, a sample pair and the map's own
// overhead). The names are counted as their own strings: samples copies
// them out of the backend's answer, so that they do not hold it alive.
func entrySize(key valueKey, vals *objectSamples) int64 {
	n := int64(len(key.rule)+len(key.series)+len(key.gr.Group)+len(key.gr.Resource)+len(key.namespace)+len(key.requestNamespace)+len(key.selector)+len(key.names)) + 256
	if vals != nil {
		n += int64(len(vals.query))
		for name := range vals.byName {
			n += int64(len(name)) + 64
		}
	}
	return n
}

func newValueCache(ttl time.Duration, maxBytes int64, clk clock.PassiveClock, reg prometheus.Registerer) *valueCache {
	if maxBytes <= 0 {
		maxBytes = DefaultValueCacheBytes
	}
	c := &valueCache{
		ttl:      ttl,
		maxBytes: maxBytes,
		clock:    clk,
		entries:  map[valueKey]*valueEntry{},
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
	c.sweep(now)
	e, ok := c.entries[key]
	if ok && (!closed(e.done) || now.Sub(e.sent) < c.ttl) {
		c.mu.Unlock()
		c.requests.WithLabelValues("hit").Inc()
	} else {
		if ok {
			c.drop(key, e)
		}
		e = &valueEntry{sent: now, done: make(chan struct{})}
		c.entries[key] = e
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
			size := entrySize(key, vals)
			c.mu.Lock()
			e.vals, e.err = vals, err
			if c.entries[key] == e {
				if err == nil && c.bytes+size > c.maxBytes {
					c.lastSweep = time.Time{}
					c.sweep(c.clock.Now())
				}
				if err != nil || c.bytes+size > c.maxBytes {
					delete(c.entries, key)
				} else {
					e.size = size
					c.bytes += size
				}
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
			c.drop(k, e)
		}
	}
}

// drop removes a completed entry. c.mu is held.
func (c *valueCache) drop(k valueKey, e *valueEntry) {
	c.bytes -= e.size
	delete(c.entries, k)
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
