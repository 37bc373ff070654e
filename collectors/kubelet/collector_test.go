package kubelet

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/metrics/pkg/apis/metrics"
)

var (
	_ Ingester = (*ingester)(nil)
	// The adapter's metricsapi.Source, without importing the adapter.
	_ interface {
		PodMetrics(context.Context, []*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error)
		NodeMetrics(context.Context, []*metav1.PartialObjectMetadata) ([]metrics.NodeMetrics, error)
	} = (*Collector)(nil)
)

var ignoreCreation = cmpopts.IgnoreFields(metav1.ObjectMeta{}, "CreationTimestamp")

func resources(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

// quantities compare by value, not by their cached string form.
var cmpQuantity = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

func directOpts(t *testing.T, k *kubelet) Options {
	return Options{UseNodeStatusPort: true, PreferredAddressTypes: []string{"InternalIP"}, CAFile: caFile(t, k.Server), Timeout: 5 * time.Second}
}

func TestPodAndNodeMetrics(t *testing.T) {
	k := newKubelet(t)
	h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
	ms := t0.UnixMilli()
	k.set(exposition(100, 2e9, ms, []container{
		{"shop", "web-1", "app", 10, 100 << 20, 1},
		{"shop", "web-1", "envoy", 1, 30 << 20, 1},
		{"shop", "db-0", "pg", 50, 1 << 30, 1},
	}))
	h.round(t)
	pods := []*metav1.PartialObjectMetadata{pom("shop", "web-1"), pom("shop", "db-0"), pom("shop", "nope")}
	if got, _ := h.c.PodMetrics(h.ctx, pods); len(got) != 0 {
		t.Fatalf("one sample gives no rate, got %v", got)
	}
	if err := h.c.Ready(); err != nil {
		t.Fatalf("Ready after the first round: %v", err)
	}

	// 10 s later by the kubelet's clock (the collector's stepped 15 s: the
	// window comes from the exposition's timestamps).
	k.set(exposition(104, 2.5e9, ms+10_000, []container{
		{"shop", "web-1", "app", 12.5, 110 << 20, 1},
		{"shop", "web-1", "envoy", 1.1, 31 << 20, 1},
		{"shop", "db-0", "pg", 50, 1 << 30, 1},
	}))
	h.round(t)
	got, err := h.c.PodMetrics(h.ctx, pods)
	if err != nil {
		t.Fatal(err)
	}
	ts := metav1.NewTime(time.UnixMilli(ms + 10_000))
	want := []metrics.PodMetrics{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1"},
		Timestamp:  ts, Window: metav1.Duration{Duration: 10 * time.Second},
		Containers: []metrics.ContainerMetrics{ // sorted by name
			{Name: "app", Usage: resources("250m", "110Mi")},
			{Name: "envoy", Usage: resources("10m", "31Mi")},
		},
	}, {
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0"},
		Timestamp:  ts, Window: metav1.Duration{Duration: 10 * time.Second},
		Containers: []metrics.ContainerMetrics{{Name: "pg", Usage: resources("0", "1Gi")}},
	}}
	if d := cmp.Diff(want, got, ignoreCreation, cmpQuantity); d != "" {
		t.Errorf("PodMetrics (-want +got):\n%s", d)
	}
	nodes, err := h.c.NodeMetrics(h.ctx, []*metav1.PartialObjectMetadata{pom("", "n1"), pom("", "n2")})
	if err != nil {
		t.Fatal(err)
	}
	wantNodes := []metrics.NodeMetrics{{
		ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Timestamp:  ts, Window: metav1.Duration{Duration: 10 * time.Second},
		Usage: resources("400m", "2.5e9"),
	}}
	if d := cmp.Diff(wantNodes, nodes, ignoreCreation, cmpQuantity); d != "" {
		t.Errorf("NodeMetrics (-want +got):\n%s", d)
	}
	if n := h.counter(t, "gantry_kubelet_containers", nil); n != 3 {
		t.Errorf("gantry_kubelet_containers = %v, want 3", n)
	}
}

// values is the app container's CPU (in millicores) and window after each
// exposition of the sequence; -1: no value.
func TestCPUWindow(t *testing.T) {
	const s = 1000 // ms per second
	base := t0.UnixMilli()
	start := float64(base)/1000 - 3600
	type sample struct {
		ms    int64
		cpu   float64
		start float64
	}
	cases := []struct {
		name       string
		samples    []sample
		wantMilli  int64
		wantWindow time.Duration
	}{
		{name: "rate over the last two samples", samples: []sample{{base, 1, start}, {base + 15*s, 2, start}, {base + 30*s, 5, start}},
			wantMilli: 200, wantWindow: 15 * time.Second},
		{name: "counter reset restarts the window", samples: []sample{{base, 10, start}, {base + 15*s, 1, start}},
			wantMilli: -1},
		{name: "after a reset the next sample gives a rate", samples: []sample{{base, 10, start}, {base + 15*s, 1, start}, {base + 25*s, 2, start}},
			wantMilli: 100, wantWindow: 10 * time.Second},
		{name: "restart after the last sample restarts the window even if the counter grew", samples: []sample{{base, 1, start}, {base + 60*s, 30, float64(base)/1000 + 20}},
			wantMilli: -1},
		{name: "the same sample twice (kubelet stats cache) keeps the window", samples: []sample{{base, 1, start}, {base + 15*s, 4, start}, {base + 15*s, 4, start}},
			wantMilli: 200, wantWindow: 15 * time.Second},
		{name: "an older sample is ignored", samples: []sample{{base, 1, start}, {base + 15*s, 4, start}, {base + 5*s, 100, start}},
			wantMilli: 200, wantWindow: 15 * time.Second},
		{name: "a container started 12s before its first sample is served at once", samples: []sample{{base, 3, float64(base)/1000 - 12}},
			wantMilli: 250, wantWindow: 12 * time.Second},
		{name: "a container started 5s before its first sample waits for the second", samples: []sample{{base, 3, float64(base)/1000 - 5}},
			wantMilli: -1},
		{name: "no start time series (kwok) works", samples: []sample{{base, 1, 0}, {base + 15*s, 2.5, 0}},
			wantMilli: 100, wantWindow: 15 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStore(15 * time.Second)
			p := parserPool.Get().(*parser)
			defer parserPool.Put(p)
			for _, smp := range tc.samples {
				res, err := p.parse(strings.NewReader(exposition(1, 1, smp.ms, []container{{"ns", "p", "app", smp.cpu, 1, smp.start}})), 0)
				if err != nil {
					t.Fatal(err)
				}
				st.update("n1", res, t0)
			}
			cu, ts, window, ok := st.podUsage("ns", "p", nil)
			if tc.wantMilli < 0 {
				if ok {
					t.Fatalf("got %v over %s, want no value", cu, window)
				}
				return
			}
			if !ok {
				t.Fatal("no value")
			}
			if got := int64(cu[0].cores*1000 + 0.5); got != tc.wantMilli || window != tc.wantWindow {
				t.Errorf("got %dm over %s, want %dm over %s", got, window, tc.wantMilli, tc.wantWindow)
			}
			var newest int64
			for _, smp := range tc.samples {
				newest = max(newest, smp.ms)
			}
			if ts.UnixMilli() != newest {
				t.Errorf("timestamp %s, want the newest sample's %s", ts, time.UnixMilli(newest))
			}
		})
	}
}

func TestNoTimestampsUseScrapeTime(t *testing.T) {
	k := newKubelet(t)
	h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
	k.set(exposition(1, 1e9, 0, []container{{"a", "p", "c", 1, 1e6, 0}}))
	h.round(t)
	k.set(exposition(4, 1e9, 0, []container{{"a", "p", "c", 2.5, 1e6, 0}}))
	h.round(t) // the fake clock stepped 15s
	got, _ := h.c.PodMetrics(h.ctx, []*metav1.PartialObjectMetadata{pom("a", "p")})
	if len(got) != 1 {
		t.Fatalf("got %d pods, want 1", len(got))
	}
	if got[0].Window.Duration != 15*time.Second || !got[0].Timestamp.Time.Equal(t0.Add(15*time.Second)) {
		t.Errorf("window %s at %s, want 15s at %s", got[0].Window.Duration, got[0].Timestamp, t0.Add(15*time.Second))
	}
	if cpu := got[0].Containers[0].Usage.Cpu().MilliValue(); cpu != 100 {
		t.Errorf("cpu %dm, want 100m", cpu)
	}
}

func TestStalePodsAndContainersLeave(t *testing.T) {
	k := newKubelet(t)
	h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
	ms := t0.UnixMilli()
	for i := range 2 {
		k.set(exposition(1, 1, ms+int64(i)*15_000, []container{
			{"a", "gone", "c", float64(i), 1, 1}, {"a", "stays", "c", float64(i), 1, 1}, {"a", "stays", "sidecar", float64(i), 1, 1},
		}))
		h.round(t)
	}
	pods := []*metav1.PartialObjectMetadata{pom("a", "gone"), pom("a", "stays")}
	if got, _ := h.c.PodMetrics(h.ctx, pods); len(got) != 2 {
		t.Fatalf("got %d pods, want 2", len(got))
	}
	k.set(exposition(1, 1, ms+30_000, []container{{"a", "stays", "c", 2, 1, 1}}))
	h.round(t)
	got, _ := h.c.PodMetrics(h.ctx, pods)
	if len(got) != 1 || got[0].Name != "stays" || len(got[0].Containers) != 1 || got[0].Containers[0].Name != "c" {
		t.Fatalf("got %+v, want only pod stays with container c", got)
	}
	if n := h.counter(t, "gantry_kubelet_containers", nil); n != 1 {
		t.Errorf("gantry_kubelet_containers = %v, want 1", n)
	}
	if n := len(h.c.store.pods); n != 1 {
		t.Errorf("store holds %d pods, want 1", n)
	}
}

func TestDeletedNodeLeaves(t *testing.T) {
	k1, k2, k3 := newKubelet(t), newKubelet(t), newKubelet(t)
	k3.setStatus(http.StatusInternalServerError) // its cAdvisor answers, /metrics/resource fails
	ing := &ingester{}
	opts := directOpts(t, k1)
	opts.Cadvisor = true
	h := newHarness(t, opts, nil, ing, node(t, "n1", k1), node(t, "n2", k2), node(t, "n3", k3))
	k2.mu.Lock()
	k2.cadvisor = "container_cpu_usage_seconds_total{id=\"/\"} 1\n"
	k2.mu.Unlock()
	for i := range 2 {
		k1.set(exposition(float64(i), 1, t0.UnixMilli()+int64(i)*15_000, []container{{"a", "p1", "c", float64(i), 1, 1}}))
		k2.set(exposition(float64(i), 1, t0.UnixMilli()+int64(i)*15_000, []container{{"a", "p2", "c", float64(i), 1, 1}}))
		h.round(t)
	}
	k2.mu.Lock()
	if d := cmp.Diff(map[string]string{resourcePath: "identity", cadvisorPath: "gzip"}, k2.encoding); d != "" {
		t.Errorf("Accept-Encoding by path (-want +got):\n%s", d)
	}
	k2.mu.Unlock()
	if got := ing.ingested["kubelet/n2"]; got != k2.cadvisor || !strings.HasPrefix(ing.types["kubelet/n2"], "text/plain") {
		t.Errorf("cadvisor of n2: %q (%s)", got, ing.types["kubelet/n2"])
	}
	if _, ok := ing.ingested["kubelet/n3"]; !ok {
		t.Error("cadvisor of n3 not ingested")
	}
	for _, name := range []string{"n2", "n3"} {
		if err := h.cs.CoreV1().Nodes().Delete(h.ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitNodes(t, 1)
	h.round(t)
	nodes, _ := h.c.NodeMetrics(h.ctx, []*metav1.PartialObjectMetadata{pom("", "n1"), pom("", "n2")})
	if len(nodes) != 1 || nodes[0].Name != "n1" {
		t.Errorf("nodes %v, want n1 only", nodes)
	}
	if pods, _ := h.c.PodMetrics(h.ctx, []*metav1.PartialObjectMetadata{pom("a", "p1"), pom("a", "p2")}); len(pods) != 1 || pods[0].Name != "p1" {
		t.Errorf("pods %v, want p1 only", pods)
	}
	if d := cmp.Diff([]string{"kubelet/n2", "kubelet/n3"}, ing.forgotten, cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
		t.Errorf("forgotten (-want +got):\n%s", d)
	}
	if n := h.counter(t, "gantry_kubelet_nodes", nil); n != 1 {
		t.Errorf("gantry_kubelet_nodes = %v, want 1", n)
	}
}

func TestFailingNodeExpires(t *testing.T) {
	k := newKubelet(t)
	h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
	for i := range 2 {
		k.set(exposition(float64(i), 1, t0.UnixMilli()+int64(i)*15_000, []container{{"a", "p", "c", float64(i), 1, 1}}))
		h.round(t)
	}
	k.setStatus(http.StatusInternalServerError)
	pods := []*metav1.PartialObjectMetadata{pom("a", "p")}
	for i := 1; i <= staleRounds; i++ {
		h.round(t)
		if got, _ := h.c.PodMetrics(h.ctx, pods); len(got) != 1 {
			t.Fatalf("after %d failed rounds: %d pods, want the last data kept", i, len(got))
		}
	}
	h.round(t)
	if got, _ := h.c.PodMetrics(h.ctx, pods); len(got) != 0 {
		t.Errorf("after %d failed rounds: %v, want none", staleRounds+1, got)
	}
	if got, _ := h.c.NodeMetrics(h.ctx, []*metav1.PartialObjectMetadata{pom("", "n1")}); len(got) != 0 {
		t.Errorf("node data kept: %v", got)
	}
	if n := h.counter(t, "gantry_kubelet_scrape_failures_total", map[string]string{"endpoint": "resource", "reason": "http_status"}); n != staleRounds+1 {
		t.Errorf("failures{reason=http_status} = %v, want %d", n, staleRounds+1)
	}
	// It comes back.
	k.setStatus(http.StatusOK)
	for i := range 2 {
		k.set(exposition(1, 1, t0.UnixMilli()+int64(100+i)*15_000, []container{{"a", "p", "c", float64(10 + i), 1, 1}}))
		h.round(t)
	}
	if got, _ := h.c.PodMetrics(h.ctx, pods); len(got) != 1 {
		t.Errorf("recovered node: %d pods, want 1", len(got))
	}
}

func TestBadExpositionIsAFailure(t *testing.T) {
	cases := []struct{ name, body string }{
		{"garbage", "this is not { prometheus\n"},
		{"bad value", "container_cpu_usage_seconds_total{container=\"c\",namespace=\"a\",pod=\"p\"} abc 1\n"},
		{"unterminated label", "node_cpu_usage_seconds_total{a=\"1} 2\n"},
		{"html error page", "<html><body>502 Bad Gateway</body></html>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newKubelet(t)
			h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
			for i := range 2 {
				k.set(exposition(float64(i), 1, t0.UnixMilli()+int64(i)*15_000, []container{{"a", "p", "c", float64(i), 1, 1}}))
				h.round(t)
			}
			k.set(tc.body)
			h.round(t)
			if n := h.counter(t, "gantry_kubelet_scrape_failures_total", map[string]string{"reason": "parse"}); n != 1 {
				t.Errorf("failures{reason=parse} = %v, want 1", n)
			}
			if got, _ := h.c.PodMetrics(h.ctx, []*metav1.PartialObjectMetadata{pom("a", "p")}); len(got) != 1 {
				t.Errorf("the last good data should stay, got %v", got)
			}
		})
	}
}

func TestHangingNodeDoesNotDelayOthers(t *testing.T) {
	hanging := newKubelet(t)
	hanging.hang = make(chan struct{})
	hanging.entered = make(chan struct{}, 4)
	hanging.gaveUp = make(chan struct{})
	t.Cleanup(func() { close(hanging.hang) })
	var healthy []*kubelet
	nodes := []*corev1.Node{node(t, "hang", hanging)}
	for i := range 5 {
		k := newKubelet(t)
		healthy = append(healthy, k)
		nodes = append(nodes, node(t, "ok-"+string(rune('a'+i)), k))
	}
	opts := directOpts(t, hanging)
	// The healthy nodes must all be scraped, through the one other slot,
	// within the hanging request's deadline: ample for five loopback
	// scrapes on a loaded 2-core machine, short enough for the round to end
	// by that deadline soon.
	opts.Timeout = 8 * time.Second
	opts.Concurrency = 2 // fewer slots than nodes: the hanging one holds one
	h := newHarness(t, opts, nil, nil, nodes...)

	for i, k := range healthy {
		k.set(exposition(1, 1, t0.UnixMilli(), []container{{"a", "p" + string(rune('a'+i)), "c", 1, 1, 1}}))
	}
	done := make(chan struct{})
	go func() { h.c.round(h.ctx); close(done) }()
	<-hanging.entered
	// While the hanging request is in flight, every other node is stored.
	deadline := time.After(opts.Timeout)
	for {
		h.c.store.mu.RLock()
		n := len(h.c.store.nodes)
		h.c.store.mu.RUnlock()
		if n == len(healthy) {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d of %d healthy nodes stored before the hanging node's deadline", n, len(healthy))
		case <-hanging.gaveUp:
			t.Fatalf("the hanging node's deadline passed before the healthy nodes were stored (%d of %d)", n, len(healthy))
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-hanging.gaveUp:
		t.Fatal("hanging request ended before the others were stored")
	default:
	}
	// The round ends because the hanging request was given up at its
	// deadline, not because the kubelet answered (it never does).
	<-done
	select {
	case <-hanging.gaveUp:
	case <-time.After(5 * time.Second):
		t.Fatal("round ended but the hanging request was not canceled")
	}
	if n := h.counter(t, "gantry_kubelet_scrape_failures_total", map[string]string{"reason": "timeout"}); n != 1 {
		t.Errorf("failures{reason=timeout} = %v, want 1", n)
	}
	if err := h.c.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

func TestURLs(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeExternalIP, Address: "203.0.113.7"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.7"},
		{Type: corev1.NodeInternalIP, Address: "fd00::7"},
		{Type: corev1.NodeHostName, Address: "node-1.example"},
	}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10255
	v6 := n.DeepCopy()
	v6.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "fd00::7"}}
	proxy := Options{ViaAPIServerProxy: true}
	cases := []struct {
		name    string
		opts    Options
		api     string
		node    *corev1.Node
		want    string
		wantErr string
	}{
		{name: "default order prefers Hostname", opts: Options{}, node: n, want: "https://node-1.example:10250/metrics/resource"},
		{name: "InternalIP first, configured port", opts: Options{PreferredAddressTypes: []string{"InternalIP", "Hostname"}, Port: 4443}, node: n, want: "https://10.0.0.7:4443/metrics/resource"},
		{name: "status port", opts: Options{PreferredAddressTypes: []string{"ExternalIP"}, UseNodeStatusPort: true}, node: n, want: "https://203.0.113.7:10255/metrics/resource"},
		{name: "IPv6 is bracketed", opts: Options{PreferredAddressTypes: []string{"InternalIP"}}, node: v6, want: "https://[fd00::7]:10250/metrics/resource"},
		{name: "no address of the preferred types", opts: Options{PreferredAddressTypes: []string{"InternalDNS"}}, node: n, wantErr: `node "node-1" has no address of the types [InternalDNS]`},
		{name: "proxy", opts: proxy, api: "https://10.96.0.1:443", node: n, want: "https://10.96.0.1:443/api/v1/nodes/node-1/proxy/metrics/resource"},
		{name: "proxy under a path prefix", opts: proxy, api: "https://lb.example/k8s/", node: n, want: "https://lb.example/k8s/api/v1/nodes/node-1/proxy/metrics/resource"},
		{name: "proxy ignores addresses", opts: proxy, api: "https://10.96.0.1", node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "bare"}}, want: "https://10.96.0.1/api/v1/nodes/bare/proxy/metrics/resource"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &rest.Config{Host: "https://127.0.0.1"}
			if tc.api != "" {
				cfg.Host = tc.api
			}
			u, _, err := rest.DefaultServerUrlFor(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := newEndpoints(tc.opts.withDefaults(), u).url(tc.node, resourcePath)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestViaAPIServerProxy(t *testing.T) {
	var mu sync.Mutex
	var paths, auths []string
	body := exposition(1, 1, t0.UnixMilli(), []container{{"a", "p", "c", 1, 1, 1}})
	apiserver := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(apiserver.Close)
	cfg := &rest.Config{Host: apiserver.URL, BearerToken: "sa-token", TLSClientConfig: rest.TLSClientConfig{CAFile: caFile(t, apiserver)}}
	// Nodes without addresses: the proxy needs none.
	h := newHarness(t, Options{ViaAPIServerProxy: true}, cfg, nil,
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	h.round(t)
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"/api/v1/nodes/n1/proxy/metrics/resource", "/api/v1/nodes/n2/proxy/metrics/resource"}, paths, cmpopts.SortSlices(func(a, b string) bool { return a < b })); d != "" {
		t.Errorf("paths (-want +got):\n%s", d)
	}
	for _, a := range auths {
		if a != "Bearer sa-token" {
			t.Errorf("Authorization %q, want the rest.Config's token", a)
		}
	}
	if n := h.counter(t, "gantry_kubelet_scrape_failures_total", nil); n != 0 {
		t.Errorf("%v failures", n)
	}
}

func TestDirectTLSAndAuth(t *testing.T) {
	cases := []struct {
		name       string
		opts       func(k *kubelet) Options
		cfg        func(k *kubelet) *rest.Config
		wantReason string // "" → success
	}{
		{name: "kubelet CA file, the rest.Config's token",
			opts: func(k *kubelet) Options { return Options{CAFile: caFile(t, k.Server)} },
			cfg:  func(*kubelet) *rest.Config { return &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "tok"} }},
		{name: "insecure TLS replaces the apiserver's CA",
			opts: func(*kubelet) Options { return Options{InsecureTLS: true} },
			cfg: func(*kubelet) *rest.Config {
				return &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "tok", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("not used")}}
			}},
		{name: "the apiserver's CA when no kubelet CA is given",
			opts: func(*kubelet) Options { return Options{} },
			cfg: func(k *kubelet) *rest.Config {
				return &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "tok", TLSClientConfig: rest.TLSClientConfig{CAFile: caFile(t, k.Server), ServerName: "kubernetes.default.svc"}}
			}},
		{name: "unknown CA is a TLS failure",
			opts:       func(*kubelet) Options { return Options{} },
			cfg:        func(*kubelet) *rest.Config { return &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "tok"} },
			wantReason: "tls"},
		{name: "wrong token is an HTTP status failure",
			opts:       func(k *kubelet) Options { return Options{CAFile: caFile(t, k.Server)} },
			cfg:        func(*kubelet) *rest.Config { return &rest.Config{Host: "https://127.0.0.1:1", BearerToken: "other"} },
			wantReason: "http_status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newKubelet(t)
			k.token = "tok"
			k.set(exposition(1, 1, t0.UnixMilli(), []container{{"a", "p", "c", 1, 1, 1}}))
			opts := tc.opts(k)
			opts.UseNodeStatusPort, opts.PreferredAddressTypes = true, []string{"InternalIP"}
			h := newHarness(t, opts, tc.cfg(k), nil, node(t, "n1", k))
			h.round(t)
			if tc.wantReason == "" {
				h.c.store.mu.RLock()
				_, ok := h.c.store.nodes["n1"]
				h.c.store.mu.RUnlock()
				if !ok {
					t.Fatal("node not scraped")
				}
				return
			}
			if n := h.counter(t, "gantry_kubelet_scrape_failures_total", map[string]string{"reason": tc.wantReason}); n != 1 {
				t.Errorf("failures{reason=%s} = %v, want 1", tc.wantReason, n)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	k := newKubelet(t)
	k.set(exposition(1, 1, 0, []container{{"a", "p", "c", 1, 1, 1}}))
	opts := directOpts(t, k)
	h := newUnstartedHarness(t, opts, nil, nil, node(t, "n1", k))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.c.Run(ctx); close(done) }()
	ready := time.After(30 * time.Second)
	for err := h.c.Ready(); err != nil; err = h.c.Ready() {
		select {
		case <-ready:
			cancel()
			t.Fatalf("not ready 30s after Run started: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestReady(t *testing.T) {
	k := newKubelet(t)
	k.set(exposition(1, 1, 0, nil))
	h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
	if err := h.c.Ready(); err == nil {
		t.Fatal("ready before any round")
	}
	h.round(t)
	if err := h.c.Ready(); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(staleRounds*h.c.opts.Interval + h.c.opts.Timeout + time.Second)
	if err := h.c.Ready(); err == nil || !strings.Contains(err.Error(), "ago") {
		t.Errorf("a stuck loop should make Ready fail, got %v", err)
	}
}

func TestOptions(t *testing.T) {
	err := Options{Interval: -1, Port: 70000, PreferredAddressTypes: []string{"InternalIP", "Internal"}, InsecureTLS: true, CAFile: "ca.crt"}.validate()
	for _, want := range []string{"--kubelet-scrape-interval", "--kubelet-port", `unknown address type "Internal"`, "--kubelet-insecure-tls and --kubelet-certificate-authority"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v should mention %q", err, want)
		}
	}
	if _, err := New(Options{Cadvisor: true}, &rest.Config{Host: "https://127.0.0.1:1"}, nil, nil); err == nil {
		t.Error("--kubelet-cadvisor without a store should fail")
	}
	var o Options
	fs := pflag.NewFlagSet("gantry", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--kubelet-scrape-interval=30s", "--kubelet-preferred-address-types=InternalIP,Hostname",
		"--kubelet-via-apiserver-proxy", "--kubelet-cadvisor", "--kubelet-scrape-concurrency=7", "--kubelet-use-node-status-port",
		"--kubelet-port=4443", "--kubelet-insecure-tls", "--kubelet-request-timeout=3s", "--kubelet-certificate-authority="}); err != nil {
		t.Fatal(err)
	}
	want := Options{Interval: 30 * time.Second, Timeout: 3 * time.Second, Concurrency: 7, ViaAPIServerProxy: true, UseNodeStatusPort: true,
		Port: 4443, PreferredAddressTypes: []string{"InternalIP", "Hostname"}, InsecureTLS: true, Cadvisor: true}
	if d := cmp.Diff(want, o); d != "" {
		t.Errorf("flags (-want +got):\n%s", d)
	}
}

func TestMetricsLint(t *testing.T) {
	k := newKubelet(t)
	k.set("bad")
	h := newHarness(t, directOpts(t, k), nil, nil, node(t, "n1", k))
	h.round(t)
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestFailingNodesGoLast(t *testing.T) {
	var mu sync.Mutex
	var order []string
	record := func(name string, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	var nodes []*corev1.Node
	var bad *kubelet
	for _, name := range []string{"a", "b", "c", "d"} {
		k := newKubelet(t)
		k.Config.Handler = record(name, http.HandlerFunc(k.serve))
		k.set(exposition(1, 1, 0, []container{{"ns", name, "c", 1, 1, 0}}))
		if name == "b" {
			bad = k
			k.setStatus(http.StatusServiceUnavailable)
		}
		nodes = append(nodes, node(t, name, k))
	}
	opts := directOpts(t, bad)
	opts.Concurrency = 1
	h := newHarness(t, opts, nil, nil, nodes...)
	h.round(t)
	mu.Lock()
	order = nil
	mu.Unlock()
	h.round(t)
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 4 || order[3] != "b" {
		t.Errorf("scrape order %v, want the node that failed last", order)
	}
}
