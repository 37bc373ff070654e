// Package scrape is the loop the scraped sources (collectors/kubelet,
// collectors/kubestate) share: scrape at once, then on every tick of an
// injected clock, until the context is done. What a scrape does, and what
// it records, stays with each source.
package scrape

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Every calls scrape at once, then every interval on clk's ticker, until ctx
// is done. It returns when ctx is done, after the call in flight (which ctx
// cancels); calls never overlap, and ticks missed during a slow call are
// dropped, as time.Ticker drops them.
func Every(ctx context.Context, clk clock.WithTicker, interval time.Duration, scrape func(context.Context)) {
	tick := clk.NewTicker(interval)
	defer tick.Stop()
	for {
		scrape(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		}
	}
}
