package stack

import (
	"bytes"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// DelayProxy is an HTTP reverse proxy on loopback in front of a backend
// (Prometheus) that can hold every request for a while before forwarding
// it, standing in for a slow or overloaded backend. It counts what passes,
// so a test can tell how many queries reached the backend. A request whose
// client gives up while held is dropped, never forwarded.
type DelayProxy struct {
	srv *http.Server
	ln  net.Listener
	rp  *httputil.ReverseProxy

	mu          sync.Mutex
	minDelay    time.Duration
	maxDelay    time.Duration
	requests    map[string]int // by path, every request received
	forwarded   map[string]int // by path, requests passed on to the backend
	queries     map[string]int // by PromQL query, every request received
	inFlight    int
	maxInFlight int
}

// NewDelayProxy listens on a free 127.0.0.1 port and forwards to backend
// (a base URL) without delay until SetDelay.
func NewDelayProxy(backend string) (*DelayProxy, error) {
	u, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &DelayProxy{ln: ln, rp: httputil.NewSingleHostReverseProxy(u), requests: map[string]int{}, forwarded: map[string]int{}, queries: map[string]int{}}
	p.rp.ErrorLog = nil
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's base URL, to give Gantry as --prometheus-url.
func (p *DelayProxy) URL() string { return "http://" + p.ln.Addr().String() }

// SetDelay holds each request from now on for a random time in [lo, hi];
// zero turns the delay off. Requests already held keep their delay.
func (p *DelayProxy) SetDelay(lo, hi time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.minDelay, p.maxDelay = lo, max(lo, hi)
}

// DelayStats is what passed through the proxy.
type DelayStats struct {
	// Requests counts every request received, by URL path.
	Requests map[string]int
	// Forwarded counts the requests passed on to the backend, by URL
	// path: the others were dropped because their client gave up.
	Forwarded map[string]int
	// Queries counts the requests received by their query parameter
	// (PromQL, in the URL or a form body), for instant and range queries.
	Queries map[string]int
	// InFlight is how many requests are held or forwarded now, and
	// MaxInFlight the most there ever were at once.
	InFlight, MaxInFlight int
}

// Stats returns a copy of the counts.
func (p *DelayProxy) Stats() DelayStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := DelayStats{Requests: maps.Clone(p.requests), Forwarded: maps.Clone(p.forwarded), Queries: maps.Clone(p.queries), InFlight: p.inFlight, MaxInFlight: p.maxInFlight}
	return s
}

// ResetMaxInFlight starts MaxInFlight again from the current count.
func (p *DelayProxy) ResetMaxInFlight() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxInFlight = p.inFlight
}

// ServeHTTP holds the request for the delay, then forwards it.
func (p *DelayProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	query := ""
	if r.Method == http.MethodPost && r.Body != nil {
		// Read the form from a copy: the backend gets the body as sent.
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil {
			query = form.Get("query")
		}
	}
	if query == "" {
		query = r.URL.Query().Get("query")
	}
	p.mu.Lock()
	if query != "" {
		p.queries[query]++
	}
	p.requests[r.URL.Path]++
	p.inFlight++
	p.maxInFlight = max(p.maxInFlight, p.inFlight)
	delay := p.minDelay
	if p.maxDelay > p.minDelay {
		delay += rand.N(p.maxDelay - p.minDelay)
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return // the client gave up; nothing reaches the backend
		}
	}
	p.mu.Lock()
	p.forwarded[r.URL.Path]++
	p.mu.Unlock()
	p.rp.ServeHTTP(w, r)
}

// Close stops the proxy and drops the requests it holds.
func (p *DelayProxy) Close() error { return p.srv.Close() }
