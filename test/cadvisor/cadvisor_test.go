package cadvisor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/test/cadvisor"
	"github.com/gantry-dev/gantry/test/prom"
)

const (
	quota     = 0.20
	tolerance = 0.03
	// agreement bounds how far cAdvisor's rate may be from the kernel's
	// count over about the same interval (its samples lag up to 2s).
	agreement = 0.02
	memLimit  = 64 << 20
	window    = 30 * time.Second
)

// TestPrometheusMeasuresPodCgroup runs the real cAdvisor and a real
// Prometheus scraping it, puts a busy loop under a 20% CPU quota in a pod-like
// cgroup, and checks that Prometheus sees what the kernel enforced and
// counted: the CPU rate equals the quota, with the kubelet's labels.
func TestPrometheusMeasuresPodCgroup(t *testing.T) {
	if err := cadvisor.Available(); err != nil {
		t.Skipf("needs root and the cgroup v1 cpu, cpuacct and memory controllers: %v", err)
	}
	begin := time.Now()
	srv := cadvisor.StartT(t, cadvisor.Options{})
	cg := cadvisor.NewPodCgroup(t, srv.Parent(), "ns", "p", "c", quota, memLimit)
	target, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := prom.Start(t, prom.WithScrapeInterval(2*time.Second), prom.WithConfig(fmt.Sprintf(
		"scrape_configs:\n- job_name: cadvisor\n  static_configs:\n  - targets: [%q]\n", target.Host)))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const sel = `{namespace="ns",pod="p",container="c"}`

	// The window starts once Prometheus holds the pod's first sample.
	waitFor(ctx, t, "the pod cgroup's first sample", func() bool {
		return len(query(ctx, t, p.URL(), "container_cpu_usage_seconds_total"+sel, time.Now())) == 1
	})
	startUsage, startAt := cpuUsage(t, cg), time.Now()
	time.Sleep(window + 2*time.Second)
	endUsage, endAt := cpuUsage(t, cg), time.Now()
	kernelRate := (endUsage - startUsage).Seconds() / endAt.Sub(startAt).Seconds()

	rate := one(t, query(ctx, t, p.URL(), fmt.Sprintf("rate(container_cpu_usage_seconds_total%s[%s])", sel, promDuration(window)), endAt))
	t.Logf("cpu quota %.2f: Prometheus rate over %s %.4f, kernel (cpuacct.usage) %.4f over %s; %.1fs after start",
		quota, window, rate.value, kernelRate, endAt.Sub(startAt).Round(100*time.Millisecond), time.Since(begin).Seconds())
	if math.Abs(rate.value-quota) > tolerance {
		t.Errorf("rate(container_cpu_usage_seconds_total%s[30s]) = %.4f, want %.2f ± %.2f", sel, rate.value, quota, tolerance)
	}
	if math.Abs(kernelRate-quota) > tolerance {
		t.Errorf("the kernel counted %.4f CPUs for the busy loop, want its quota %.2f ± %.2f (machine too busy?)", kernelRate, quota, tolerance)
	}
	if math.Abs(rate.value-kernelRate) > agreement {
		t.Errorf("Prometheus' rate %.4f differs from the kernel's count %.4f by more than %.2f", rate.value, kernelRate, agreement)
	}

	ws := one(t, query(ctx, t, p.URL(), "container_memory_working_set_bytes"+sel, endAt))
	if ws.value < 1<<20 {
		t.Errorf("container_memory_working_set_bytes%s = %v, want at least the 1 MiB the loop holds", sel, ws.value)
	}
	limit := one(t, query(ctx, t, p.URL(), "container_spec_memory_limit_bytes"+sel, endAt))
	if limit.value != memLimit {
		t.Errorf("container_spec_memory_limit_bytes%s = %v, want %d", sel, limit.value, memLimit)
	}
	q := one(t, query(ctx, t, p.URL(), "container_spec_cpu_quota"+sel, endAt))
	if q.value != quota*100000 {
		t.Errorf("container_spec_cpu_quota%s = %v, want %v", sel, q.value, quota*100000)
	}

	// The kubelet's labels on the pod's container, only id elsewhere.
	wantPod := map[string]string{
		"__name__": "container_cpu_usage_seconds_total", "cpu": "total", "id": cg.ID,
		"namespace": "ns", "pod": "p", "container": "c", "instance": target.Host, "job": "cadvisor",
	}
	got := one(t, query(ctx, t, p.URL(), fmt.Sprintf("container_cpu_usage_seconds_total{id=%q}", cg.ID), endAt))
	if diff := cmp.Diff(wantPod, got.labels); diff != "" {
		t.Errorf("labels of the pod cgroup's series (-want +got):\n%s", diff)
	}
	wantRoot := map[string]string{
		"__name__": "container_cpu_usage_seconds_total", "cpu": "total", "id": "/",
		"instance": target.Host, "job": "cadvisor",
	}
	got = one(t, query(ctx, t, p.URL(), `container_cpu_usage_seconds_total{id="/"}`, endAt))
	if diff := cmp.Diff(wantRoot, got.labels); diff != "" {
		t.Errorf("labels of the root cgroup's series (-want +got):\n%s", diff)
	}

	all := one(t, query(ctx, t, p.URL(), `count({job="cadvisor",__name__=~"container_.*|machine_.*"})`, endAt))
	pod := one(t, query(ctx, t, p.URL(), `count({job="cadvisor",pod="p"})`, endAt))
	t.Logf("cAdvisor exposes %v container_*/machine_* series, %v of them for the pod cgroup; its working set %.0f bytes", all.value, pod.value, ws.value)
}

func cpuUsage(t *testing.T, cg *cadvisor.PodCgroup) time.Duration {
	t.Helper()
	d, err := cg.CPUUsage()
	if err != nil {
		t.Fatalf("reading the pod cgroup's CPU usage: %v", err)
	}
	return d
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

type sample struct {
	labels map[string]string
	value  float64
}

func one(t *testing.T, s []sample) sample {
	t.Helper()
	if len(s) != 1 {
		t.Fatalf("got %d series, want 1: %v", len(s), s)
	}
	return s[0]
}

// query runs an instant query against Prometheus' HTTP API.
func query(ctx context.Context, t *testing.T, base, q string, at time.Time) []sample {
	t.Helper()
	params := url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?"+params.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("query %s: decoding: %v", q, err)
	}
	if body.Status != "success" || body.Data.ResultType != "vector" {
		t.Fatalf("query %s: %s %s (%s)", q, body.Status, body.Error, body.Data.ResultType)
	}
	var out []sample
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, r.Value[1], err)
		}
		out = append(out, sample{labels: r.Metric, value: v})
	}
	return out
}

func promDuration(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }
