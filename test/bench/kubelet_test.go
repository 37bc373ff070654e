package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/gantry-dev/gantry/test/toolbin"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestKubeletPerNode(t *testing.T) {
	in := []kubeletResult{
		{Nodes: 10, Gantry: kubeletProcess{MilliCPU: 2, RSSMiB: 60}, MetricsServer: kubeletProcess{MilliCPU: 2, RSSMiB: 76}},
		{Nodes: 1010, Gantry: kubeletProcess{MilliCPU: 12, RSSMiB: 110}, MetricsServer: kubeletProcess{MilliCPU: 35, RSSMiB: 256}},
	}
	got := kubeletPerNode(in)
	want := []kubeletResult{
		in[0], // the base: no per-node figures
		{
			Nodes: 1010, BaseNodes: 10,
			Gantry:               kubeletProcess{MilliCPU: 12, RSSMiB: 110, MilliCPUPerNode: 0.01, MiBPerNode: 0.05},
			MetricsServer:        kubeletProcess{MilliCPU: 35, RSSMiB: 256, MilliCPUPerNode: 0.033, MiBPerNode: 0.18},
			RatioMilliCPUPerNode: 0.3, RatioMiBPerNode: 0.28,
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("per-node figures (-want +got):\n%s", diff)
	}
	if one := kubeletPerNode(in[:1]); one[0].BaseNodes != 0 || one[0].Gantry.MilliCPUPerNode != 0 {
		t.Errorf("a single node count got per-node figures: %+v", one[0])
	}
}

// TestKubeletScenario runs the kubelet scenario on the real stack with
// metrics-server beside Gantry. Set GANTRY_BENCH_KUBELET_NODES (e.g.
// "10,100,1000") and optionally GANTRY_BENCH_KUBELET_DURATION (default
// 2m); without it, a small run (3 nodes, 20s, about 90s in all) checks that
// it produces numbers. It asserts that both processes served every pod and node and
// that figures were measured, never what they are.
func TestKubeletScenario(t *testing.T) {
	toolbin.Require(t, "gantry", "prometheus", "etcd", "kube-apiserver", "kube-controller-manager", "kwok", "metrics-server")
	nodes, duration := []int{3}, 20*time.Second
	if s := os.Getenv("GANTRY_BENCH_KUBELET_NODES"); s != "" {
		var err error
		if nodes, err = ints(s); err != nil {
			t.Fatal(err)
		}
		duration = 2 * time.Minute
	}
	if s := os.Getenv("GANTRY_BENCH_KUBELET_DURATION"); s != "" {
		var err error
		if duration, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	const podsPerNode = 10
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(nodes))*(8*time.Minute+duration))
	defer cancel()
	logf := func(string, ...any) {}
	if testing.Verbose() {
		logf = t.Logf
	}
	rs, err := runKubeletScenario(ctx, "", t.TempDir(), nodes, podsPerNode, duration, logf)
	var out bytes.Buffer
	for _, r := range rs {
		b, _ := json.Marshal(r)
		fmt.Fprintln(&out, string(b))
	}
	printKubeletTable(&out, rs)
	t.Logf("kubelet scenario:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(nodes) {
		t.Fatalf("%d results for %d node counts", len(rs), len(nodes))
	}
	for i, r := range rs {
		for _, p := range []struct {
			name string
			kubeletProcess
		}{{"gantry", r.Gantry}, {"metrics-server", r.MetricsServer}} {
			if p.PodMetrics != nodes[i]*podsPerNode || p.NodeMetrics != nodes[i] || p.MilliCPU <= 0 || p.RSSMiB <= 0 {
				t.Errorf("%d nodes: %s without its figures: %+v", nodes[i], p.name, p.kubeletProcess)
			}
		}
		if i > 0 && r.BaseNodes != nodes[0] {
			t.Errorf("%d nodes: base %d, want %d", nodes[i], r.BaseNodes, nodes[0])
		}
	}
}
