package cadvisor_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/test/cadvisor"
)

// TestKubeletLabels checks the labels cAdvisor puts on each kind of cgroup,
// read straight from its /metrics as a scraper parses them: a pod's
// container and a pod get the kubelet's namespace, pod and container labels
// (container empty for the pod), anything else only its id. Empty labels
// are left out, as Prometheus and the store drop them.
func TestKubeletLabels(t *testing.T) {
	if err := cadvisor.Available(); err != nil {
		t.Skipf("needs root and the cgroup v1 cpu, cpuacct and memory controllers: %v", err)
	}
	srv := cadvisor.StartT(t, cadvisor.Options{})
	cg := cadvisor.NewPodCgroup(t, srv.Parent(), "shop", "web-0", "app", 0.05, 0)
	// Bare cgroups beside it, removed before its cleanup removes the parent.
	podLevel, other := srv.Parent()+"/shop_web-0", srv.Parent()+"/not-a-pod"
	for _, id := range []string{podLevel, other} {
		for _, c := range []string{"cpu", "cpuacct", "memory"} {
			dir := filepath.Join("/sys/fs/cgroup", c, id)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := syscall.Rmdir(dir); err != nil {
					t.Errorf("removing %s: %v", dir, err)
				}
			})
		}
	}
	want := map[string]map[string]string{
		cg.ID:        {"id": cg.ID, "namespace": "shop", "pod": "web-0", "container": "app"},
		podLevel:     {"id": podLevel, "namespace": "shop", "pod": "web-0"},
		other:        {"id": other},
		srv.Parent(): {"id": srv.Parent()},
		"/":          {"id": "/"},
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if diff := cmp.Diff(want, specLabels(ctx, t, srv, want)); diff != "" {
		t.Errorf("labels of container_spec_cpu_period by cgroup (-want +got):\n%s", diff)
	}

	// Another node's cAdvisor (its own parent) sees the same cgroups, but
	// this node's pods are not its pods.
	srv2 := cadvisor.StartT(t, cadvisor.Options{})
	want2 := map[string]map[string]string{cg.ID: {"id": cg.ID}, podLevel: {"id": podLevel}}
	if diff := cmp.Diff(want2, specLabels(ctx, t, srv2, want2)); diff != "" {
		t.Errorf("labels on another node's cAdvisor (parent %s) (-want +got):\n%s", srv2.Parent(), diff)
	}
}

// specLabels scrapes srv until container_spec_cpu_period has a series for
// every id in want, and returns their non-empty labels by id.
func specLabels(ctx context.Context, t *testing.T, srv *cadvisor.Server, want map[string]map[string]string) map[string]map[string]string {
	t.Helper()
	var got map[string]map[string]string
	waitFor(ctx, t, "every cgroup in container_spec_cpu_period", func() bool {
		body, _ := scrape(ctx, t, srv.MetricsURL())
		p := expfmt.NewTextParser(model.UTF8Validation)
		families, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("parsing cAdvisor's /metrics: %v", err)
		}
		got = map[string]map[string]string{}
		for _, m := range families["container_spec_cpu_period"].GetMetric() {
			lbls := map[string]string{}
			for _, l := range m.GetLabel() {
				if l.GetValue() != "" {
					lbls[l.GetName()] = l.GetValue()
				}
			}
			if _, ok := want[lbls["id"]]; ok {
				got[lbls["id"]] = lbls
			}
		}
		return len(got) == len(want)
	})
	return got
}
