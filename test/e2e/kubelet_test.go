package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// TestKubeletResourceMetrics serves metrics.k8s.io from Gantry's kubelet
// collector, with no Prometheus behind it: the config has no resourceRules,
// and the fake node is a kwok node with a kubelet endpoint at its own
// address (cluster.Options.KubeletMetrics), scraped over TLS verified with
// the cluster CA exactly as a kubelet would be. Raising a pod's CPU (an
// annotation kwok turns into container_cpu_usage_seconds_total) makes the
// real HPA scale a Deployment on a Resource cpu metric; `kubectl top` shows
// the usage; lowering it scales the Deployment back.
func TestKubeletResourceMetrics(t *testing.T) {
	rules, _, found := strings.Cut(stack.DefaultRules, "\nresourceRules:")
	if !found {
		t.Fatal("stack.DefaultRules has no resourceRules section to leave out")
	}
	e := startEnv(t, stack.Options{
		Rules:   rules + "\n",
		Cluster: cluster.Options{KubeletMetrics: true},
		GantryArgs: []string{
			"--resource-metrics=kubelet",
			"--kubelet-use-node-status-port",
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-scrape-interval=5s",
		},
	}, false)
	ctx := context.Background()
	c := e.st.Cluster
	name := "kubelet-cpu"

	e.deployment(t, name, 1, "100m")
	first := e.waitPodsReady(ctx, t, name, 1)[0]
	// 200m used of 100m requested: 200% against a target of 50%.
	raised := time.Now()
	if err := c.SetPodUsage(ctx, ns, first, "200m", "64Mi"); err != nil {
		t.Fatal(err)
	}
	util := int32(50)
	e.hpa(t, name, 1, 4, autoscalingv2.MetricSpec{
		Type: autoscalingv2.ResourceMetricSourceType,
		Resource: &autoscalingv2.ResourceMetricSource{
			Name:   corev1.ResourceCPU,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &util},
		},
	})

	// What the aggregator serves for the pod, from the kubelet's counter.
	var pm metricsv1beta1.PodMetrics
	waitFor(ctx, t, 90*time.Second, "PodMetrics of "+first+" at 200m CPU and 64Mi", func() bool {
		body, err := e.client.CoreV1().RESTClient().Get().
			AbsPath("/apis/metrics.k8s.io/v1beta1/namespaces", ns, "pods", first).DoRaw(ctx)
		if err != nil || json.Unmarshal(body, &pm) != nil || len(pm.Containers) != 1 {
			return false
		}
		u := pm.Containers[0].Usage
		return near(u.Cpu().MilliValue(), 200) && u.Memory().Value() == 64<<20
	})
	if pm.Window.Duration <= 0 || pm.Timestamp.IsZero() {
		t.Errorf("PodMetrics of %s: window %s, timestamp %s; want both set", first, pm.Window.Duration, pm.Timestamp)
	}

	// New pods use kwok's default (1m): 4 pods average 50.75%, within the
	// HPA's tolerance of the target, so 4 holds.
	e.waitReplicas(ctx, t, name, 4, "200m CPU on one pod requesting 100m, target 50%")
	t.Logf("%s: 4 replicas %s after the pod's CPU annotation was raised", name, time.Since(raised).Round(100*time.Millisecond))

	kubectl, err := toolbin.Path(mustBinDir(t), "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	pods := e.waitPodsReady(ctx, t, name, 4)
	var out string
	defer func() {
		if t.Failed() {
			t.Logf("last kubectl top output:\n%s", out)
		}
	}()
	waitFor(ctx, t, 60*time.Second, "kubectl top pods to show all 4 pods, "+first+" at 200m and 64Mi", func() bool {
		// kubectl top fails while a pod has no metrics yet.
		b, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.KubeconfigPath(), "top", "pods", "-n", ns, "-l", "app="+name).CombinedOutput()
		if out = string(b); err != nil {
			time.Sleep(time.Second)
			return false
		}
		for _, p := range pods {
			cpu, mem, ok := topLine(out, p)
			if !ok {
				return false
			}
			if p == first && (!near(cpu, 200) || mem != "64Mi") {
				return false
			}
		}
		return true
	})
	t.Logf("kubectl top pods:\n%s", out)
	out = run(t, kubectl, "--kubeconfig", c.KubeconfigPath(), "top", "nodes")
	if cpu, _, ok := topLine(out, nodeName); !ok || cpu < 190 {
		t.Errorf("kubectl top nodes: want %s with at least its pods' 200m:\n%s", nodeName, out)
	}

	// Gantry reached the node as a client of a kubelet: at its address and
	// port from the Node's status, with its ServiceAccount's token.
	seen, n := c.KubeletProxy().LastRequest(nodeName)
	if n == 0 || seen.Path != "/metrics/resource" || !strings.HasPrefix(seen.Authorization, "Bearer ") {
		t.Errorf("node %s's kubelet endpoint saw %d requests, last %q with authorization %t; want /metrics/resource with a bearer token",
			nodeName, n, seen.Path, strings.HasPrefix(seen.Authorization, "Bearer "))
	}

	for _, p := range pods {
		if err := c.SetPodUsage(ctx, ns, p, "10m", "64Mi"); err != nil {
			t.Fatal(err)
		}
	}
	e.waitReplicas(ctx, t, name, 1, "10m CPU per pod requesting 100m, target 50%")
}

// near tells whether a CPU value in millicores is within 5% of want: kwok
// integrates usage between two scrapes, and the collector's timestamps
// differ from kwok's evaluation times by the request latency.
func near(milli, want int64) bool {
	d := milli - want
	return d*20 <= want && -d*20 <= want
}

// topLine finds name's line in `kubectl top` output and returns its CPU in
// millicores and its memory column.
func topLine(out, name string) (cpuMilli int64, memory string, ok bool) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != name {
			continue
		}
		cpu := f[1]
		if m, isMilli := strings.CutSuffix(cpu, "m"); isMilli {
			v, err := strconv.ParseInt(m, 10, 64)
			return v, f[len(f)-1], err == nil
		}
		q, err := resource.ParseQuantity(cpu)
		return q.MilliValue(), f[len(f)-1], err == nil
	}
	return 0, "", false
}
