package metricrules

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/watchlist"
	clocktesting "k8s.io/utils/clock/testing"
)

// statusGate holds every status write until release is closed, as
// client-go's rate limiter does with a burst of writes (5 a second by
// default: the statuses of 1,000 new MetricRules take minutes) or a slow
// kube-apiserver would.
type statusGate struct {
	release chan struct{}
	waiting atomic.Int32
}

type gatedClient struct {
	dynamic.Interface
	gate *statusGate
}

// IsWatchListSemanticsUnSupported says what the fake client says: it
// cannot stream a list as a watch, so informers list, then watch.
func (c gatedClient) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.Interface)
}

func (c gatedClient) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return gatedResource{c.Interface.Resource(gvr), c.gate}
}

type gatedResource struct {
	dynamic.NamespaceableResourceInterface
	gate *statusGate
}

func (r gatedResource) Namespace(ns string) dynamic.ResourceInterface {
	return gatedNamespaced{r.NamespaceableResourceInterface.Namespace(ns), r.gate}
}

type gatedNamespaced struct {
	dynamic.ResourceInterface
	gate *statusGate
}

func (r gatedNamespaced) UpdateStatus(ctx context.Context, obj *unstructured.Unstructured, opts metav1.UpdateOptions) (*unstructured.Unstructured, error) {
	r.gate.waiting.Add(1)
	<-r.gate.release
	return r.ResourceInterface.UpdateStatus(ctx, obj, opts)
}

// waitFor polls cond until it holds; it fails the test, saying what, when
// it does not within a generous deadline (a liveness bound, not a timing
// assertion: the behaviour tested never needs more than milliseconds).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestServedWhileStatusWritesWait: a new MetricRule, in a namespace whose
// other MetricRule is served and in a namespace of its own, is served as
// soon as the controller sees it, with its own first discovery (the clock
// is fake: no periodic relist or resync ever comes), while every status
// write waits. The bench found 3 of 100 new MetricRules answering 404 for
// 46–120 s: the namespace syncs that serve a new resource waited in the
// queue behind syncs writing other resources' statuses at client-go's
// 5 writes a second.
func TestServedWhileStatusWritesWait(t *testing.T) {
	back := &seriesBackend{series: slices.Concat(
		podSeries("a_requests_total", "team-a", "web-1"),
		podSeries("b_requests_total", "team-b", "web-1"),
		podSeries("c_requests_total", "team-c", "web-1"),
	)}
	gate := &statusGate{release: make(chan struct{})}
	clk := clocktesting.NewFakeClock(created)
	h := startControllerWith(t, Options{Cluster: clusterRules{}, Clock: clk}, back,
		func(c dynamic.Interface) dynamic.Interface { return gatedClient{c, gate} },
		metricRule(t, "team-a", "first", 0, ruleFor("a_requests_total", "a1")),
		metricRule(t, "team-b", "first", 0, ruleFor("b_requests_total", "b1")),
	)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate.release)
		}
	}
	t.Cleanup(release) // before the controller stops: cleanups run last first

	served := func(ns, metric string) func() bool {
		return func() bool { _, ok := h.ctrl.LookupCustomIn(ns, podsInfo(metric)); return ok }
	}
	waitFor(t, "team-a/first is not served", served("team-a", "a1"))
	waitFor(t, "team-b/first is not served", served("team-b", "b1"))
	// Both namespaces' status writes wait: as many as the controller has
	// workers.
	waitFor(t, "the controller wrote no status", func() bool { return gate.waiting.Load() >= 2 })

	for _, u := range []*unstructured.Unstructured{
		metricRule(t, "team-a", "second", 1, ruleFor("a_requests_total", "a2")),
		metricRule(t, "team-c", "first", 1, ruleFor("c_requests_total", "c1")),
	} {
		if _, err := h.client.Resource(GVR).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "team-a/second, a new MetricRule in a namespace already served, is not served while status writes wait", served("team-a", "a2"))
	waitFor(t, "team-c/first, a new MetricRule in a new namespace, is not served while status writes wait", served("team-c", "c1"))

	// Once the writes go through, every status says so.
	release()
	h.waitStatus("team-a", "second", reasonIs(ConditionReady, ReasonDiscovered))
	h.waitStatus("team-c", "first", reasonIs(ConditionReady, ReasonDiscovered))
	h.waitStatus("team-a", "first", reasonIs(ConditionReady, ReasonDiscovered))
}
