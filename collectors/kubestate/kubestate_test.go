package kubestate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gantry-dev/gantry/collectors/store"
)

// fakeKSM stands in for kube-state-metrics in unit tests: it serves body
// with status, both changeable.
type fakeKSM struct {
	mu     sync.Mutex
	status int
	body   string
	hits   atomic.Int32
}

func (f *fakeKSM) set(status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body = status, body
}

func (f *fakeKSM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}

const unavailable = `# TYPE kube_deployment_status_replicas_unavailable gauge
kube_deployment_status_replicas_unavailable{namespace="shop",deployment="web"} 3
`

func newTestScraper(t *testing.T, srvURL string, clk *clocktesting.FakeClock, reg prometheus.Registerer) (*Scraper, *store.Store) {
	t.Helper()
	st := store.New(store.Options{})
	s, err := New(Options{URL: srvURL, Interval: 15 * time.Second}, st, reg)
	if err != nil {
		t.Fatal(err)
	}
	s.clock = clk
	return s, st
}

func query(t *testing.T, st *store.Store, q string, ts time.Time) []float64 {
	t.Helper()
	vec, err := st.Query(context.Background(), q, ts)
	if err != nil {
		t.Fatalf("Query(%q): %v", q, err)
	}
	var out []float64
	for _, s := range vec {
		out = append(out, float64(s.Value))
	}
	return out
}

// TestFailedScrapeKeepsDataUntilStale steps a fake clock through a good
// scrape and then failures: the data stays for three intervals, then leaves,
// and Ready follows.
func TestFailedScrapeKeepsDataUntilStale(t *testing.T) {
	ksm := &fakeKSM{status: http.StatusOK, body: unavailable}
	srv := httptest.NewServer(ksm)
	defer srv.Close()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	reg := prometheus.NewPedanticRegistry()
	s, st := newTestScraper(t, srv.URL, clk, reg)
	ctx := context.Background()

	if err := s.Ready(); err == nil {
		t.Error("Ready before any scrape = nil, want an error")
	}
	s.scrapeOnce(ctx)
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after a good scrape: %v", err)
	}
	const q = `kube_deployment_status_replicas_unavailable{namespace="shop",deployment="web"}`
	if got := query(t, st, q, clk.Now()); len(got) != 1 || got[0] != 3 {
		t.Fatalf("after a good scrape: %v, want [3]", got)
	}

	ksm.set(http.StatusInternalServerError, "boom")
	for i := 1; i <= staleIntervals; i++ {
		clk.Step(s.interval)
		s.scrapeOnce(ctx)
		if got := query(t, st, q, clk.Now()); len(got) != 1 || got[0] != 3 {
			t.Errorf("%d intervals after the last good scrape: %v, want the kept [3]", i, got)
		}
		if err := s.Ready(); err != nil {
			t.Errorf("Ready %d intervals after the last good scrape: %v", i, err)
		}
	}
	clk.Step(s.interval)
	s.scrapeOnce(ctx)
	if got := query(t, st, q, clk.Now()); len(got) != 0 {
		t.Errorf("%d intervals after the last good scrape: %v, want no data", staleIntervals+1, got)
	}
	if err := s.Ready(); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("Ready when stale = %v, want an error naming the 500", err)
	}
	if n := testutil.ToFloat64(s.metrics.failures.WithLabelValues("http_status")); n != staleIntervals+1 {
		t.Errorf("gantry_kubestate_scrape_failures_total{reason=http_status} = %v, want %d", n, staleIntervals+1)
	}

	// Recovery: the data and readiness come back with the next good scrape.
	ksm.set(http.StatusOK, unavailable)
	clk.Step(s.interval)
	s.scrapeOnce(ctx)
	if got := query(t, st, q, clk.Now()); len(got) != 1 {
		t.Errorf("after recovery: %v, want [3]", got)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after recovery: %v", err)
	}

	// A scrape that does not parse is a failure too, and changes nothing.
	ksm.set(http.StatusOK, "kube_deployment_status_replicas_unavailable{ 1\n")
	clk.Step(s.interval)
	s.scrapeOnce(ctx)
	if n := testutil.ToFloat64(s.metrics.failures.WithLabelValues("parse")); n != 1 {
		t.Errorf("parse failures = %v, want 1", n)
	}
	if got := query(t, st, q, clk.Now()); len(got) != 1 {
		t.Errorf("after a broken scrape: %v, want the kept [3]", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}

func TestUnreachableAndTimeout(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	// A closed server: connection refused.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	s, _ := newTestScraper(t, srv.URL, clk, nil)
	s.scrapeOnce(context.Background())
	if n := testutil.ToFloat64(s.metrics.failures.WithLabelValues("unreachable")); n != 1 {
		t.Errorf("unreachable failures = %v, want 1", n)
	}
	if err := s.Ready(); err == nil {
		t.Error("Ready with kube-state-metrics unreachable = nil")
	}

	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(block)
	s, _ = newTestScraper(t, slow.URL, clk, nil)
	s.timeout = 100 * time.Millisecond
	begin := time.Now()
	s.scrapeOnce(context.Background())
	if n := testutil.ToFloat64(s.metrics.failures.WithLabelValues("timeout")); n != 1 {
		t.Errorf("timeout failures = %v, want 1", n)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("a scrape with a 100ms timeout took %s", d)
	}
}

// TestRunStopsOnCancel runs the loop with the real clock and a short
// interval: it scrapes at once and again, and returns when ctx ends.
func TestRunStopsOnCancel(t *testing.T) {
	ksm := &fakeKSM{status: http.StatusOK, body: unavailable}
	srv := httptest.NewServer(ksm)
	defer srv.Close()
	st := store.New(store.Options{})
	s, err := New(Options{URL: srv.URL + "/", Interval: 50 * time.Millisecond}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	deadline := time.After(10 * time.Second)
	for ksm.hits.Load() < 3 {
		select {
		case <-deadline:
			t.Fatalf("%d scrapes in 10s with a 50ms interval", ksm.hits.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready while running: %v", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	st := store.New(store.Options{})
	for _, u := range []string{"", "kube-state-metrics:8080", "ftp://x/metrics", "http://"} {
		if _, err := New(Options{URL: u}, st, nil); err == nil {
			t.Errorf("New(URL %q) succeeded, want an error", u)
		}
	}
	if _, err := New(Options{URL: "http://127.0.0.1:1/metrics"}, nil, nil); err == nil {
		t.Error("New without a store succeeded")
	}
}
