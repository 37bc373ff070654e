package kubelet

import (
	"context"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/metrics/pkg/apis/metrics"
)

// PodMetrics returns the metrics of the given pods that have a full window
// (every container has two CPU samples and a memory value), in their order.
// Containers are sorted by name; the timestamp is the earliest of the
// containers' last CPU samples, the window that container's. It does no I/O.
func (c *Collector) PodMetrics(ctx context.Context, pods []*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := metav1.NewTime(time.Now())
	out := make([]metrics.PodMetrics, 0, len(pods))
	seen := make(map[podKey]bool, len(pods))
	var buf []containerUsage
	c.store.mu.RLock()
	defer c.store.mu.RUnlock()
	for _, pod := range pods {
		k := podKey{pod.Namespace, pod.Name}
		if seen[k] {
			continue // a pod listed twice is answered once
		}
		seen[k] = true
		var ts time.Time
		var window time.Duration
		var ok bool
		buf, ts, window, ok = c.store.podUsage(pod.Namespace, pod.Name, buf[:0])
		if !ok {
			continue
		}
		cms := make([]metrics.ContainerMetrics, len(buf))
		for i, cu := range buf {
			cms[i] = metrics.ContainerMetrics{Name: cu.name, Usage: resourceList(cu.usage)}
		}
		out = append(out, metrics.PodMetrics{
			ObjectMeta: objectMeta(pod, now),
			Timestamp:  metav1.NewTime(ts),
			Window:     metav1.Duration{Duration: window},
			Containers: cms,
		})
	}
	return out, nil
}

// NodeMetrics returns the metrics of the given nodes that have a full
// window, in their order. It does no I/O.
func (c *Collector) NodeMetrics(ctx context.Context, nodes []*metav1.PartialObjectMetadata) ([]metrics.NodeMetrics, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := metav1.NewTime(time.Now())
	out := make([]metrics.NodeMetrics, 0, len(nodes))
	seen := make(map[string]bool, len(nodes))
	c.store.mu.RLock()
	defer c.store.mu.RUnlock()
	for _, n := range nodes {
		if seen[n.Name] {
			continue
		}
		seen[n.Name] = true
		u, ts, window, ok := c.store.nodeUsage(n.Name)
		if !ok {
			continue
		}
		out = append(out, metrics.NodeMetrics{
			ObjectMeta: objectMeta(n, now),
			Timestamp:  metav1.NewTime(ts),
			Window:     metav1.Duration{Duration: window},
			Usage:      resourceList(u),
		})
	}
	return out, nil
}

// resourceList is CPU in nanocores (as metrics-server: kubectl top and the
// HPA see the same precision) and memory in bytes.
func resourceList(u usage) corev1.ResourceList {
	cpu := resource.NewScaledQuantity(clampInt64(u.cores*1e9), resource.Nano)
	cpu.Format = resource.DecimalSI
	return corev1.ResourceList{
		corev1.ResourceCPU:    *cpu,
		corev1.ResourceMemory: *resource.NewQuantity(clampInt64(u.memory), resource.BinarySI),
	}
}

func clampInt64(v float64) int64 {
	switch {
	case v <= 0 || math.IsNaN(v):
		return 0
	case v >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(math.Round(v))
}

// objectMeta is the metadata a metrics object carries: the object's name,
// namespace and labels, created now (as metrics-server and the
// Prometheus-based source do).
func objectMeta(o *metav1.PartialObjectMetadata, now metav1.Time) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              o.Name,
		Namespace:         o.Namespace,
		Labels:            o.Labels,
		CreationTimestamp: now,
	}
}
