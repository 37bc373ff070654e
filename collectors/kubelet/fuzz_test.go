package kubelet

import (
	"bytes"
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// FuzzParseMatchesExpfmt holds the line parser to the expfmt-based one it
// replaced, by the rule of parse_diff_test.go: on any answer both fail, or
// both succeed with the same result. Seeds: below, generated answers and
// testdata/fuzz/FuzzParseMatchesExpfmt.
func FuzzParseMatchesExpfmt(f *testing.F) {
	ms := t0.UnixMilli()
	f.Add([]byte(exposition(100, 2e9, ms, []container{{"a", "p", "c", 1, 1, 1}, {"a", "p", "d", 2, 2, 2}})))
	f.Add([]byte(exposition(1, 1, 0, []container{{"ns", "pod", "c", 1, 1, 0}})))
	f.Add([]byte("{\"node_cpu_usage_seconds_total\",a=\"b\"} 1 2\n# TYPE container_cpu_usage_seconds_total summary\n"))
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(generated(r))
	}
	p := newParser()
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAgainstOracle(t, p, in, ms)
	})
}

// FuzzParse feeds arbitrary kubelet answers through the parser and the
// store: the parser agrees with expfmt (FuzzParseMatchesExpfmt), nothing
// panics, what is kept is well-formed (labels present,
// finite non-negative values, sorted), and the served usage is finite.
// Seeds: below and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	ms := t0.UnixMilli()
	f.Add([]byte(exposition(100, 2e9, ms, []container{{"a", "p", "c", 1, 1, 1}, {"a", "p", "d", 2, 2, 2}})), []byte(exposition(101, 2e9, ms+15_000, []container{{"a", "p", "c", 2, 1, 1}})))
	f.Add([]byte(exposition(1, 1, 0, []container{{"ns", "pod", "c", 1, 1, 0}})), []byte(exposition(0, 1, 0, []container{{"ns", "pod", "c", 0.5, 1, 0}})))
	f.Add([]byte("container_cpu_usage_seconds_total{container=\"c\",namespace=\"a\",pod=\"p\"} NaN 1\n"), []byte("container_cpu_usage_seconds_total{container=\"c\",namespace=\"a\",pod=\"p\"} +Inf 2\n"))
	f.Add([]byte("container_cpu_usage_seconds_total{container=\"c\",namespace=\"a\",pod=\"p\"} 1 -9223372036854775808\n"), []byte("container_cpu_usage_seconds_total{container=\"c\",namespace=\"a\",pod=\"p\"} 1e308 9223372036854775807\n"))
	f.Add([]byte("# TYPE node_cpu_usage_seconds_total histogram\nnode_cpu_usage_seconds_total_bucket{le=\"1\"} 1\n"), []byte("node_cpu_usage_seconds_total 1\nnode_cpu_usage_seconds_total 2\n"))
	f.Fuzz(func(t *testing.T, first, second []byte) {
		st := newStore(15 * time.Second)
		p := newParser()
		for i, in := range [][]byte{first, second} {
			checkAgainstOracle(t, p, in, ms+int64(i)*15_000)
			res, err := p.parse(bytes.NewReader(in), ms+int64(i)*15_000)
			if err != nil {
				continue
			}
			for _, c := range res.containers {
				if c.namespace == "" || c.pod == "" || c.container == "" {
					t.Fatalf("kept a container without labels: %+v", c)
				}
				if c.hasCPU && (c.cpu.cpu < 0 || math.IsNaN(c.cpu.cpu) || math.IsInf(c.cpu.cpu, 0)) {
					t.Fatalf("kept CPU %v", c.cpu.cpu)
				}
			}
			if !slices.IsSortedFunc(res.containers, func(a, b containerSample) int {
				return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.pod, b.pod), cmp.Compare(a.container, b.container))
			}) {
				t.Fatal("containers not sorted")
			}
			st.update("n", res, t0.Add(time.Duration(i)*15*time.Second))
		}
		st.mu.RLock()
		defer st.mu.RUnlock()
		n := 0
		for k, pw := range st.pods {
			n += len(pw.containers)
			cu, _, window, ok := st.podUsage(k.namespace, k.name, nil)
			if !ok {
				continue
			}
			if window <= 0 {
				t.Fatalf("window %s", window)
			}
			for _, c := range cu {
				if math.IsNaN(c.cores) || math.IsInf(c.cores, 0) || c.cores < 0 {
					t.Fatalf("cores %v", c.cores)
				}
				_ = resourceList(c.usage)
			}
		}
		if n != st.containers {
			t.Fatalf("container count %d, store says %d", n, st.containers)
		}
		if u, _, _, ok := st.nodeUsage("n"); ok {
			_ = resourceList(u)
		}
	})
}
