package metricrules

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// Every accepted resource relists again at each interval, on the
// controller's one tick.
func TestRelistsEachInterval(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	back := &seriesBackend{series: slices.Concat(
		podSeries("a_requests_total", "team-a", "web-1"),
		podSeries("b_requests_total", "team-b", "api-1"),
	)}
	h := startController(t, Options{Cluster: clusterRules{}, Clock: clk, Interval: time.Minute}, back,
		metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "a_requests")),
		metricRule(t, "team-b", "api", 0, ruleFor("b_requests_total", "b_requests")),
	)
	h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonDiscovered))
	h.waitStatus("team-b", "api", reasonIs(ConditionReady, ReasonDiscovered))
	calls := func() map[string]int {
		back.mu.Lock()
		defer back.mu.Unlock()
		n := map[string]int{}
		for _, ns := range back.namespaces {
			n[ns]++
		}
		return n
	}
	before := calls()
	// The tick's goroutine may not wait on the clock yet: step until both
	// have relisted, a bounded number of times.
	for range 100 {
		clk.Step(time.Minute)
		time.Sleep(50 * time.Millisecond)
		now := calls()
		if now["team-a"] > before["team-a"] && now["team-b"] > before["team-b"] {
			return
		}
	}
	t.Fatalf("series listings by namespace: %v before the interval, %v after 100 intervals", before, calls())
}

// A resource is decoded once per resourceVersion, and forgotten once it
// is gone from the cache.
func TestDecodeOncePerResourceVersion(t *testing.T) {
	c := New(Options{})
	u := metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "a_requests"))
	u.SetResourceVersion("7")
	first, err := c.decode(u)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.decode(u)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("the same resourceVersion was decoded again")
	}
	edited := u.DeepCopy()
	edited.SetResourceVersion("8")
	edited.SetGeneration(2)
	second, err := c.decode(edited)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second.Generation != 2 {
		t.Errorf("a new resourceVersion gave the old decoding: generation %d", second.Generation)
	}
	c.forgetDecoded("team-b", map[types.UID]bool{})
	if len(c.decoded) != 1 {
		t.Errorf("forgetting team-b's resources dropped team-a's: %d left", len(c.decoded))
	}
	c.forgetDecoded("team-a", map[types.UID]bool{})
	if len(c.decoded) != 0 {
		t.Errorf("team-a's deleted resource is still kept: %d left", len(c.decoded))
	}
}
