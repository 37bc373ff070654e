package cadvisor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/collectors/store"
	"github.com/gantry-dev/gantry/test/cadvisor"
)

// TestStoreRateFromCAdvisor feeds two scrapes of the real cAdvisor, 10s
// apart, into Gantry's local store (the path the kubelet collector's
// /metrics/cadvisor scrapes take) and checks that the store's PromQL sees the
// pod container's CPU quota, as the kernel counted it.
func TestStoreRateFromCAdvisor(t *testing.T) {
	if err := cadvisor.Available(); err != nil {
		t.Skipf("needs root and the cgroup v1 cpu, cpuacct and memory controllers: %v", err)
	}
	srv := cadvisor.StartT(t, cadvisor.Options{})
	cg := cadvisor.NewPodCgroup(t, srv.Parent(), "ns", "p", "c", quota, memLimit)
	st := store.New(store.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const sel = `{namespace="ns",pod="p",container="c"}`

	// rate() extrapolates to the window's start no further than to where
	// the counter would be zero: let it grow first, so that the first
	// sample is not a just-started counter.
	waitFor(ctx, t, "1.5s of CPU in the pod cgroup", func() bool { return cpuUsage(t, cg) >= 1500*time.Millisecond })
	// The first scrape that holds the pod's CPU counter (a new cgroup's
	// spec series come a housekeeping earlier than its usage).
	var body []byte
	var contentType string
	waitFor(ctx, t, "the pod cgroup's first CPU sample from cAdvisor", func() bool {
		body, contentType = scrape(ctx, t, srv.URL()+"/metrics")
		for _, line := range bytes.Split(body, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("container_cpu_usage_seconds_total{")) && bytes.Contains(line, []byte(fmt.Sprintf("id=%q", cg.ID))) {
				return true
			}
		}
		return false
	})
	k1, t1 := cpuUsage(t, cg), time.Now()
	if err := st.Ingest("node-1", bytes.NewReader(body), contentType, t1); err != nil {
		t.Fatalf("ingesting the first scrape: %v", err)
	}
	time.Sleep(10 * time.Second)
	body, contentType = scrape(ctx, t, srv.URL()+"/metrics")
	k2, t2 := cpuUsage(t, cg), time.Now()
	if err := st.Ingest("node-1", bytes.NewReader(body), contentType, t2); err != nil {
		t.Fatalf("ingesting the second scrape: %v", err)
	}
	kernelRate := (k2 - k1).Seconds() / t2.Sub(t1).Seconds()

	// 15s covers both samples (cAdvisor stamps them with its housekeeping
	// time, up to 2s before the scrape) with the start within 1.1 sample
	// intervals, so rate() extrapolates at the counter's slope.
	q := fmt.Sprintf("rate(container_cpu_usage_seconds_total%s[15s])", sel)
	rate := storeOne(ctx, t, st, q, t2)
	t.Logf("cpu quota %.2f: store %s = %.4f, kernel (cpuacct.usage) %.4f over %s", quota, q, rate, kernelRate, t2.Sub(t1).Round(100*time.Millisecond))
	if math.Abs(rate-quota) > tolerance {
		t.Errorf("store: %s = %.4f, want %.2f ± %.2f", q, rate, quota, tolerance)
	}
	if math.Abs(kernelRate-quota) > tolerance {
		t.Errorf("the kernel counted %.4f CPUs for the busy loop, want its quota %.2f ± %.2f (machine too busy?)", kernelRate, quota, tolerance)
	}
	if math.Abs(rate-kernelRate) > agreement {
		t.Errorf("the store's rate %.4f differs from the kernel's count %.4f by more than %.2f", rate, kernelRate, agreement)
	}
	if ws := storeOne(ctx, t, st, "container_memory_working_set_bytes"+sel, t2); ws < 1<<20 {
		t.Errorf("store: container_memory_working_set_bytes%s = %v, want at least the 1 MiB the loop holds", sel, ws)
	}
	all := storeOne(ctx, t, st, `count({__name__=~"container_.*|machine_.*"})`, t2)
	t.Logf("the store holds %v container_*/machine_* series from one cAdvisor (%d bytes per scrape, %s)", all, len(body), contentType)
}

func scrape(ctx context.Context, t *testing.T, u string) ([]byte, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scraping %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s %v", u, resp.Status, err)
	}
	return b, resp.Header.Get("Content-Type")
}

func storeOne(ctx context.Context, t *testing.T, st *store.Store, q string, at time.Time) float64 {
	t.Helper()
	v, err := st.Query(ctx, q, at)
	if err != nil {
		t.Fatalf("store: %s: %v", q, err)
	}
	if len(v) != 1 {
		t.Fatalf("store: %s: got %d samples, want 1: %v", q, len(v), v)
	}
	return float64(v[0].Value)
}
