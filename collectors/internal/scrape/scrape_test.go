package scrape_test

import (
	"context"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/gantry-dev/gantry/collectors/internal/scrape"
)

func TestEvery(t *testing.T) {
	const interval = 15 * time.Second
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan context.Context)
	done := make(chan struct{})
	go func() {
		scrape.Every(ctx, clk, interval, func(ctx context.Context) { calls <- ctx })
		close(done)
	}()
	next := func(what string) context.Context {
		t.Helper()
		select {
		case got := <-calls:
			return got
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no scrape within 10s", what)
			return nil
		}
	}

	if got := next("at once"); got != ctx {
		t.Errorf("scrape got another context than Every's")
	}
	select {
	case <-calls:
		t.Fatal("scraped again before the clock ticked")
	default:
	}
	clk.Step(interval)
	next("after one interval")
	clk.Step(interval)
	next("after two intervals")

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return within 10s of the context's cancel")
	}
}

func TestEveryReturnsAfterTheScrapeInFlight(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	// The scrape cancels the context, as a shutdown during a scrape does;
	// Every must return without waiting for a tick or scraping again.
	scrape.Every(ctx, clk, time.Minute, func(ctx context.Context) {
		calls++
		cancel()
		<-ctx.Done()
	})
	if calls != 1 {
		t.Errorf("scrapes = %d, want 1", calls)
	}
}
