package kubelet

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

// container is one container in a fake kubelet's answer.
type container struct {
	namespace, pod, name string
	cpu                  float64 // cumulative core-seconds
	memory               float64
	start                float64 // epoch seconds; 0: no start time series
}

// exposition renders what a kubelet's /metrics/resource says (1.37's
// layout: HELP/TYPE, labels container/namespace/pod, explicit timestamps).
// ms 0 leaves timestamps out (as kwok does).
func exposition(nodeCPU, nodeMemory float64, ms int64, cs []container) string {
	var b strings.Builder
	ts := ""
	if ms != 0 {
		ts = " " + strconv.FormatInt(ms, 10)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	b.WriteString("# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds\n# TYPE container_cpu_usage_seconds_total counter\n")
	for _, c := range cs {
		fmt.Fprintf(&b, "container_cpu_usage_seconds_total{container=%q,namespace=%q,pod=%q} %s%s\n", c.name, c.namespace, c.pod, f(c.cpu), ts)
	}
	b.WriteString("# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes\n# TYPE container_memory_working_set_bytes gauge\n")
	for _, c := range cs {
		fmt.Fprintf(&b, "container_memory_working_set_bytes{container=%q,namespace=%q,pod=%q} %s%s\n", c.name, c.namespace, c.pod, f(c.memory), ts)
	}
	b.WriteString("# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds\n# TYPE container_start_time_seconds gauge\n")
	for _, c := range cs {
		if c.start != 0 {
			fmt.Fprintf(&b, "container_start_time_seconds{container=%q,namespace=%q,pod=%q} %s%s\n", c.name, c.namespace, c.pod, f(c.start), ts)
		}
	}
	b.WriteString("# HELP container_swap_usage_bytes [ALPHA] Current amount of the container swap usage in bytes. Reported only on non-windows systems\n# TYPE container_swap_usage_bytes gauge\n")
	for _, c := range cs {
		fmt.Fprintf(&b, "container_swap_usage_bytes{container=%q,namespace=%q,pod=%q} 0%s\n", c.name, c.namespace, c.pod, ts)
	}
	fmt.Fprintf(&b, "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds\n# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total %s%s\n", f(nodeCPU), ts)
	fmt.Fprintf(&b, "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes\n# TYPE node_memory_working_set_bytes gauge\nnode_memory_working_set_bytes %s%s\n", f(nodeMemory), ts)
	fmt.Fprintf(&b, "# HELP node_swap_usage_bytes [ALPHA] Current swap usage of the node in bytes. Reported only on non-windows systems\n# TYPE node_swap_usage_bytes gauge\nnode_swap_usage_bytes 0%s\n", ts)
	b.WriteString("# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds\n# TYPE pod_cpu_usage_seconds_total counter\n")
	pods := map[string]bool{}
	for _, c := range cs {
		if !pods[c.namespace+"/"+c.pod] {
			pods[c.namespace+"/"+c.pod] = true
			fmt.Fprintf(&b, "pod_cpu_usage_seconds_total{namespace=%q,pod=%q} %s%s\n", c.namespace, c.pod, f(c.cpu), ts)
		}
	}
	b.WriteString("# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes\n# TYPE pod_memory_working_set_bytes gauge\n")
	for k := range pods {
		ns, pod, _ := strings.Cut(k, "/")
		fmt.Fprintf(&b, "pod_memory_working_set_bytes{namespace=%q,pod=%q} 1.2e+07%s\n", ns, pod, ts)
	}
	b.WriteString("# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0\n")
	return b.String()
}

// kubelet is a fake kubelet: a TLS server answering /metrics/resource
// with whatever body is set, optionally checking a bearer token.
type kubelet struct {
	*httptest.Server
	mu       sync.Mutex
	body     string
	status   int
	cadvisor string
	token    string
	paths    []string
	encoding map[string]string // path → Accept-Encoding
	hang     chan struct{}     // when set, requests block until it closes or the client gives up
	entered  chan struct{}     // signalled when a hanging request arrives
	gaveUp   chan struct{}     // closed when a hanging request's context ends
}

func newKubelet(t testing.TB) *kubelet {
	k := &kubelet{status: http.StatusOK}
	k.Server = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.Close)
	return k
}

func (k *kubelet) serve(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.paths = append(k.paths, r.URL.Path)
	if k.encoding == nil {
		k.encoding = map[string]string{}
	}
	k.encoding[r.URL.Path] = r.Header.Get("Accept-Encoding")
	body, status, token, hang, cadv := k.body, k.status, k.token, k.hang, k.cadvisor
	k.mu.Unlock()
	if hang != nil {
		k.entered <- struct{}{}
		select {
		case <-hang:
		case <-r.Context().Done():
			close(k.gaveUp)
			return
		}
	}
	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/metrics/resource"):
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	case strings.HasSuffix(r.URL.Path, "/metrics/cadvisor"):
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte(cadv))
	default:
		http.NotFound(w, r)
	}
}

func (k *kubelet) set(body string) {
	k.mu.Lock()
	k.body = body
	k.mu.Unlock()
}

func (k *kubelet) setStatus(code int) {
	k.mu.Lock()
	k.status = code
	k.mu.Unlock()
}

func (k *kubelet) port(t testing.TB) int32 {
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return int32(p)
}

// caFile writes the CA of httptest's TLS servers (all share one
// certificate) to a file.
func caFile(t testing.TB, s *httptest.Server) string {
	t.Helper()
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// node is a Node whose kubelet is k, at InternalIP 127.0.0.1 and k's port.
func node(t testing.TB, name string, k *kubelet) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: name + ".invalid"},
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
	}
	if k != nil {
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = k.port(t)
	}
	return n
}

// ingester records what the collector hands it.
type ingester struct {
	mu        sync.Mutex
	ingested  map[string]string // target → body
	types     map[string]string
	forgotten []string
}

func (i *ingester) Ingest(target string, r io.Reader, contentType string, _ time.Time) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.ingested == nil {
		i.ingested, i.types = map[string]string{}, map[string]string{}
	}
	i.ingested[target] = string(b)
	i.types[target] = contentType
	return nil
}

func (i *ingester) Forget(target string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.forgotten = append(i.forgotten, target)
}

// harness is a collector on a fake clientset and a fake clock, driven one
// round at a time.
type harness struct {
	c      *Collector
	cs     *fake.Clientset
	clock  *clocktesting.FakeClock
	reg    *prometheus.Registry
	ctx    context.Context
	cancel context.CancelFunc
}

var t0 = time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC)

func newHarness(t testing.TB, opts Options, cfg *rest.Config, ing Ingester, nodes ...*corev1.Node) *harness {
	t.Helper()
	h := newUnstartedHarness(t, opts, cfg, ing, nodes...)
	h.c.factory.Start(h.ctx.Done())
	t.Cleanup(func() { h.cancel(); h.c.factory.Shutdown() })
	if !cache.WaitForCacheSync(h.ctx.Done(), h.c.synced) {
		t.Fatal("node informer did not sync")
	}
	return h
}

// newUnstartedHarness leaves starting the informer to Run.
func newUnstartedHarness(t testing.TB, opts Options, cfg *rest.Config, ing Ingester, nodes ...*corev1.Node) *harness {
	t.Helper()
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &rest.Config{Host: "https://127.0.0.1:1"}
	}
	rt, err := kubeletTransport(opts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	api, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	for _, n := range nodes {
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktesting.NewFakeClock(t0)
	reg := prometheus.NewRegistry()
	c, err := newCollector(opts, cs, &http.Client{Transport: rt}, api, ing, reg, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return &harness{c: c, cs: cs, clock: clk, reg: reg, ctx: ctx, cancel: cancel}
}

// round steps the clock by one interval (but the first) and scrapes.
func (h *harness) round(t testing.TB) {
	t.Helper()
	if !h.c.lastRound.IsZero() {
		h.clock.Step(h.c.opts.Interval)
	}
	h.c.round(h.ctx)
}

// waitNodes waits until the informer has n nodes (after a create/delete).
func (h *harness) waitNodes(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := h.c.nodes.List(labels.Everything())
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("informer has %d nodes, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counter is a counter's value in the registry; 0 when absent.
func (h *harness) counter(t testing.TB, name string, lbls map[string]string) float64 {
	t.Helper()
	fams, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := lbls[l.GetName()]; ok && v != l.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func pom(namespace, name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}
