package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// cadvisorNode writes one kubelet /metrics/cadvisor-like scrape: pods pods
// of two containers each, ten series per container with the kubelet's
// labels, values that move as real ones do (CPU counters by irregular
// amounts, memory by pages), at scrape i.
func cadvisorNode(buf *bytes.Buffer, node string, pods, i int, rng *rand.Rand) {
	buf.Reset()
	counters := []string{"container_cpu_usage_seconds_total", "container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total"}
	gauges := []string{"container_memory_working_set_bytes", "container_memory_rss", "container_memory_cache",
		"container_memory_usage_bytes", "container_fs_usage_bytes"}
	for _, name := range counters {
		fmt.Fprintf(buf, "# TYPE %s counter\n", name)
		for p := range pods {
			for c := range 2 {
				v := float64(i)*15*0.25 + rng.Float64()*0.5 + float64(p)
				fmt.Fprintf(buf, "%s{container=\"app-%d\",id=\"/kubepods/burstable/pod%s-%d/%d\",image=\"registry.example/team/app:1.2.%d\",name=\"k8s_app-%d_web-%d\",namespace=\"shop\",pod=\"web-%s-%d\"} %g\n",
					name, c, node, p, c, c, c, p, node, p, v)
			}
		}
	}
	for _, name := range gauges {
		fmt.Fprintf(buf, "# TYPE %s gauge\n", name)
		for p := range pods {
			for c := range 2 {
				v := 64<<20 + 4096*float64(rng.IntN(256))
				fmt.Fprintf(buf, "%s{container=\"app-%d\",id=\"/kubepods/burstable/pod%s-%d/%d\",image=\"registry.example/team/app:1.2.%d\",name=\"k8s_app-%d_web-%d\",namespace=\"shop\",pod=\"web-%s-%d\"} %g\n",
					name, c, node, p, c, c, c, p, node, p, v)
			}
		}
	}
}

// BenchmarkStoreMemory fills a store as the kubelet collector would —
// nodes × 10 pods × 2 containers × 10 series, scraped every 15s for the
// 10 minute retention (40 samples per series) — and reports the heap it
// holds per series and per node. One iteration is one whole fill.
func BenchmarkStoreMemory(b *testing.B) {
	for _, nodes := range []int{10, 100} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			const pods, scrapes = 10, 40
			var perSeries, perNode float64
			for range b.N {
				rng := rand.New(rand.NewPCG(1, 2))
				var buf bytes.Buffer
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				s := New(Options{Retention: 10 * time.Minute})
				for i := range scrapes {
					for n := range nodes {
						node := fmt.Sprintf("node-%d", n)
						cadvisorNode(&buf, node, pods, i, rng)
						if err := s.Ingest(node, &buf, textPlain, at(time.Duration(i)*15*time.Second)); err != nil {
							b.Fatal(err)
						}
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				series := testSeriesCount(s)
				if want := nodes * pods * 2 * 10; series != want {
					b.Fatalf("%d series, want %d", series, want)
				}
				held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
				perSeries, perNode = held/float64(series), held/float64(nodes)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(perSeries, "heap-B/series")
			b.ReportMetric(perNode, "heap-B/node")
		})
	}
}

// BenchmarkIngest is one scrape of one node (200 series) into a store that
// already holds that node's series: the steady state.
func BenchmarkIngest(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const scrapes = 64
	bodies := make([][]byte, scrapes)
	var buf bytes.Buffer
	for i := range bodies {
		cadvisorNode(&buf, "node-0", 10, i, rng)
		bodies[i] = bytes.Clone(buf.Bytes())
	}
	s := New(Options{Retention: 10 * time.Minute})
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := s.Ingest("node-0", bytes.NewReader(bodies[i%scrapes]), textPlain, at(time.Duration(i)*15*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuery evaluates a kubelet-style per-pod CPU rate over 100 nodes
// (20,000 series) at the end of a full retention window.
func BenchmarkQuery(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	s := New(Options{Retention: 10 * time.Minute})
	for i := range 40 {
		for n := range 100 {
			node := fmt.Sprintf("node-%d", n)
			cadvisorNode(&buf, node, 10, i, rng)
			if err := s.Ingest(node, &buf, textPlain, at(time.Duration(i)*15*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
	}
	ts := at(39 * 15 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		vec, err := s.Query(context.Background(), `sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{namespace="shop"}[1m]))`, ts)
		if err != nil || len(vec) != 1000 {
			b.Fatalf("%d samples, %v", len(vec), err)
		}
	}
}

func testSeriesCount(s *Store) int {
	n := 0
	for _, tg := range s.snapshot() {
		tg.mu.RLock()
		n += tg.nseries
		tg.mu.RUnlock()
	}
	return n
}
