package provider

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestValueCacheBytes: values for ever new metric selectors stay within the
// byte bound while they are fresh, and are swept once they expire even
// when later requests only hit.
func TestValueCacheBytes(t *testing.T) {
	const maxBytes = 4 << 20
	clk := clocktesting.NewFakeClock(time.Unix(1e9, 0))
	c := newValueCache(5*time.Second, maxBytes, clk, nil)
	ctx := context.Background()
	values := func(context.Context) (*objectSamples, error) {
		byName := make(map[string]model.SamplePair, 5000)
		for i := range 5000 {
			byName["web-"+strconv.Itoa(i)] = model.SamplePair{Value: 1}
		}
		return &objectSamples{query: "q", byName: byName}, nil
	}
	key := func(sel string) valueKey { return valueKey{rule: "rules[0]", namespace: "a", selector: sel} }
	for i := range 600 {
		if _, err := c.get(ctx, key("x!=rtk"+strconv.Itoa(i)), values); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		held := c.bytes
		c.mu.Unlock()
		if held > maxBytes {
			t.Fatalf("after %d selectors the cache holds %d bytes, over its bound of %d", i+1, held, maxBytes)
		}
	}
	c.mu.Lock()
	kept := len(c.entries)
	c.mu.Unlock()
	if kept == 0 {
		t.Fatal("the cache kept nothing")
	}
	// The flood stops; a poller keeps asking for one key.
	poll := key("")
	if _, err := c.get(ctx, poll, values); err != nil {
		t.Fatal(err)
	}
	clk.Step(6 * time.Second)
	if _, err := c.get(ctx, poll, values); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Second)
	if _, err := c.get(ctx, poll, values); err != nil { // a hit
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) != 1 {
		t.Errorf("%d entries kept after the flood's values expired; want the poller's alone", len(c.entries))
	}
	if e := c.entries[poll]; e == nil || c.bytes != e.size || e.size < 5000*64 {
		t.Errorf("the cache counts %d bytes for the poller's one entry of 5,000 values", c.bytes)
	}
}
