package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"

	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

// TestMaxInFlight: with a backend that holds every query, no more than
// MaxInFlight distinct queries reach it at once; the others wait for a slot
// and run when one frees, and a query whose deadline passes while waiting
// fails as a timeout without ever reaching the backend.
func TestMaxInFlight(t *testing.T) {
	const limit = 3
	var now, peak, total atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		total.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}`)
	}))
	defer srv.Close()
	reg := promclient.NewRegistry()
	c, err := promcollector.New(promcollector.Options{URL: srv.URL, MaxInFlight: limit, Timeout: time.Minute}, reg)
	if err != nil {
		t.Fatal(err)
	}

	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := c.Query(context.Background(), fmt.Sprintf("q%d", i), time.Now())
			errs <- err
		})
	}
	// Wait until the backend holds `limit` queries, then check a query with
	// a short deadline cannot get a slot.
	deadline := time.Now().Add(10 * time.Second)
	for now.Load() < limit && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for a wrong implementation to send more
	if got := now.Load(); got != limit {
		t.Fatalf("queries at the backend = %d, want %d", got, limit)
	}
	if got := inFlight(t, reg); got != limit {
		t.Errorf("gantry_backend_queries_in_flight = %v, want %d", got, limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = c.Query(ctx, "late", time.Now())
	cancel()
	var be *promcollector.BackendError
	if !errors.As(err, &be) || be.Reason != "timeout" {
		t.Errorf("query without a slot: error %v, want a timeout BackendError", err)
	}

	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("queued query: %v", err)
		}
	}
	if p := peak.Load(); p != limit {
		t.Errorf("peak queries at the backend = %d, want %d", p, limit)
	}
	if got := total.Load(); got != n {
		t.Errorf("queries that reached the backend = %d, want %d (the late one must not)", got, n)
	}
}

func inFlight(t *testing.T, reg *promclient.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "gantry_backend_queries_in_flight" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("gantry_backend_queries_in_flight not registered")
	return 0
}
