package kubelet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The benchmarks size a cluster as the bar does: 1,000 nodes with
// 10 pods of one container each, a kubelet 1.37 /metrics/resource answer
// per node (about 5 KB).
const (
	benchNodes       = 1000
	benchPodsPerNode = 10
)

// nodePayload is node i's answer at scrape number round.
func nodePayload(i, round int, ms int64) string {
	cs := make([]container, benchPodsPerNode)
	for p := range cs {
		cs[p] = container{
			namespace: "team-" + strconv.Itoa(p%4),
			pod:       fmt.Sprintf("web-%04d-7d9c5b6f8d-x%02d", i, p),
			name:      "app",
			cpu:       float64(round) * 0.25 * 15,
			memory:    float64(64<<20 + p),
			start:     float64(t0.Unix() - 3600),
		}
	}
	return exposition(float64(round)*2*15, 3e9, ms, cs)
}

// BenchmarkParse is one node's answer parsed, without the store: the line
// scanner against the expfmt-based parser it replaced (oldParser), each
// reusing its buffers as the pooled parsers do.
func BenchmarkParse(b *testing.B) {
	body := []byte(nodePayload(7, 3, t0.UnixMilli()))
	for _, bc := range []struct {
		name  string
		parse func(io.Reader, int64) (*scrapeResult, error)
	}{
		{"scanner", newParser().parse},
		{"expfmt", newOldParser().parse},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			rd := bytes.NewReader(body)
			for b.Loop() {
				rd.Reset(body)
				if _, err := bc.parse(rd, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseStore is one scrape of every node, parsed and stored,
// without the network: the collector's own work per node and round.
// Reported per node: ns and bytes allocated per scrape, and the live heap
// the store keeps.
func BenchmarkParseStore(b *testing.B) {
	payloads := make([][2][]byte, benchNodes)
	for i := range payloads {
		for r := range 2 {
			payloads[i][r] = []byte(nodePayload(i, r, t0.UnixMilli()+int64(r)*15_000))
		}
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st := newStore(15 * time.Second)
	names := make([]string, benchNodes)
	for i := range names {
		names[i] = "node-" + strconv.Itoa(i)
	}
	scrape := func(r int) {
		p := parserPool.Get().(*parser)
		defer parserPool.Put(p)
		for i, body := range payloads {
			res, err := p.parse(bytes.NewReader(body[r%2]), 1)
			if err != nil {
				b.Fatal(err)
			}
			st.update(names[i], res, t0)
		}
	}
	scrape(0)
	scrape(1)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; b.Loop(); n++ {
		scrape(n)
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchNodes, "ns/node")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N+2)/benchNodes, "allocB/node")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/benchNodes, "storeB/node")
	if len(st.pods) != benchNodes*benchPodsPerNode {
		b.Fatalf("%d pods stored", len(st.pods))
	}
	runtime.KeepAlive(payloads)
}

// BenchmarkRound is the whole collector against fake kubelets in another
// process (so that only the collector's CPU and memory are counted): every
// node over its own TLS connection, rounds at the default concurrency. It
// reports the process' CPU per node and round, the same as mCPU per node at
// a 15 s interval, and the heap and stacks per node the collector holds
// (store, trimmed Node cache, one idle HTTP/1.1 TLS connection per node).
// -benchtime=Nx sets the rounds; GANTRY_BENCH_NODES the node count.
func BenchmarkRound(b *testing.B) {
	nodes := benchNodes
	if s := os.Getenv("GANTRY_BENCH_NODES"); s != "" {
		nodes, _ = strconv.Atoi(s)
	}
	ports := startKubeletsProcess(b, nodes)
	ca := httptest.NewTLSServer(http.NotFoundHandler()) // the same certificate as the helper's
	caPath := caFile(b, ca)
	ca.Close()

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	rss0 := rss(b)
	var ns []*corev1.Node
	for i, p := range ports {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + strconv.Itoa(i)}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = p
		ns = append(ns, n)
	}
	h := newHarness(b, Options{UseNodeStatusPort: true, PreferredAddressTypes: []string{"InternalIP"}, CAFile: caPath}, nil, nil, ns...)
	if os.Getenv("GANTRY_BENCH_GZIP") != "" {
		inner := h.c.client.Transport
		h.c.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r.Header.Del("Accept-Encoding") // the transport asks for gzip and inflates
			return inner.RoundTrip(r)
		})
	}
	if os.Getenv("GANTRY_BENCH_NOKEEPALIVE") != "" {
		inner := h.c.client.Transport
		h.c.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			r.Close = true
			return inner.RoundTrip(r)
		})
	}
	h.round(b) // connections and the store's first sample
	h.round(b)
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		h.round(b)
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	rss1 := rss(b)
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if path := os.Getenv("GANTRY_BENCH_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	perRound := cpu / time.Duration(b.N) / time.Duration(nodes)
	b.ReportMetric(float64(perRound.Nanoseconds()), "cpu-ns/node")
	b.ReportMetric(perRound.Seconds()/15*1000, "mCPU/node@15s")
	b.ReportMetric(float64(int64(m.HeapAlloc)-int64(base.HeapAlloc))/float64(nodes), "heapB/node")
	b.ReportMetric(float64(int64(m.StackInuse)-int64(base.StackInuse))/float64(nodes), "stackB/node")
	b.ReportMetric(float64(rss1-rss0)/float64(nodes), "rssB/node")
	h.c.store.mu.RLock()
	stored := len(h.c.store.pods)
	h.c.store.mu.RUnlock()
	if stored != nodes*benchPodsPerNode {
		b.Fatalf("%d pods stored, want %d", stored, nodes*benchPodsPerNode)
	}
	if f := h.counter(b, "gantry_kubelet_scrape_failures_total", nil); f != 0 {
		b.Fatalf("%v failed scrapes", f)
	}
}

// rss is the process' resident set (VmRSS) in bytes: with the garbage
// between two GCs, what a node costs in the measure of the bar.
func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startKubeletsProcess runs n fake kubelets in a child process (this test
// binary, TestHelperKubelets) and returns their ports. The child dies with
// the parent (Pdeathsig) and when its stdin closes.
func startKubeletsProcess(b *testing.B, n int) []int32 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKubelets$", "-test.count=1")
	cmd.Env = append(os.Environ(), "GANTRY_KUBELET_HELPER="+strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "ports: ")
		if !ok {
			continue
		}
		var ports []int32
		for _, f := range strings.Split(line, ",") {
			p, err := strconv.Atoi(f)
			if err != nil {
				b.Fatal(err)
			}
			ports = append(ports, int32(p))
		}
		go func() { // drain
			for sc.Scan() {
			}
		}()
		return ports
	}
	b.Fatalf("helper process gave no ports: %v", sc.Err())
	return nil
}

// TestHelperKubelets is the child process of BenchmarkRound; it does
// nothing in a normal test run.
func TestHelperKubelets(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GANTRY_KUBELET_HELPER"))
	if n == 0 {
		t.Skip("only the child process of BenchmarkRound")
	}
	ports := make([]string, n)
	for i := range n {
		var round atomic.Int64
		s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			rd := int(round.Add(1))
			body := []byte(nodePayload(i, rd, time.Now().UnixMilli()))
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") { // as the kubelet's promhttp
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				_, _ = zw.Write(body)
				_ = zw.Close()
				return
			}
			_, _ = w.Write(body)
		}))
		defer s.Close()
		ports[i] = s.URL[strings.LastIndex(s.URL, ":")+1:]
	}
	fmt.Printf("ports: %s\n", strings.Join(ports, ","))
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until the parent closes stdin or dies
}
