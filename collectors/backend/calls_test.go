package backend_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
)

// TestMaxInFlight: with a backend that holds every query, no more than
// MaxInFlight distinct queries reach it at once; the others wait for a slot
// and run when one frees, and a query whose deadline passes while waiting
// fails as a timeout without ever reaching the backend.
func TestMaxInFlight(t *testing.T) {
	const limit = 3
	var now, peak, total atomic.Int64
	release := make(chan struct{})
	run := func(ctx context.Context) (model.Vector, error) {
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
		return model.Vector{{Metric: model.Metric{}, Value: 1}}, nil
	}
	reg := promclient.NewRegistry()
	m, err := backend.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := backend.NewCalls(backend.CallsOptions{Backend: "test", MaxInFlight: limit, Timeout: time.Minute}, m)

	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := c.Query(context.Background(), "", fmt.Sprintf("q%d", i), time.Now(), run)
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
	if got := backendtest.GaugeValue(t, reg, "gantry_backend_queries_in_flight"); got != limit {
		t.Errorf("gantry_backend_queries_in_flight = %v, want %d", got, limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = c.Query(ctx, "", "late", time.Now(), run)
	cancel()
	var be *backend.Error
	if !errors.As(err, &be) || be.Reason != "timeout" {
		t.Errorf("query without a slot: error %v, want a timeout *backend.Error", err)
	}
	// The late caller may give up a moment before its call does; free the
	// slots only once the call gave up too.
	backendtest.WaitCounter(t, reg, "gantry_backend_errors_total", 1)

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
