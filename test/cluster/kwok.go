package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeReadyTimeout bounds AddFakeNode's wait when ctx has no deadline; kwok
// marks a node Ready within a second.
const nodeReadyTimeout = time.Minute

// maxPodsPerFakeNode is a fake node's pod capacity, far above what any test
// puts on one node.
const maxPodsPerFakeNode = "1000"

// AddFakeNode creates a Node managed by kwok with the given CPU and memory
// capacity (quantities such as "4" and "8Gi"; allocatable is the same) and
// waits until kwok reports it Ready. Pods bound to it (spec.nodeName: there
// is no scheduler) become Running and Ready with an IP from PodCIDR. It needs
// Options.Kwok.
func (c *Cluster) AddFakeNode(ctx context.Context, name, cpu, memory string) error {
	c.mu.Lock()
	kwok := c.procs[Kwok]
	c.mu.Unlock()
	if kwok == nil {
		return errors.New("cluster: AddFakeNode needs a cluster started with Options.Kwok")
	}
	cpuQ, err := resource.ParseQuantity(cpu)
	if err != nil {
		return fmt.Errorf("cluster: fake node %q: cpu %q: %w", name, cpu, err)
	}
	memQ, err := resource.ParseQuantity(memory)
	if err != nil {
		return fmt.Errorf("cluster: fake node %q: memory %q: %w", name, memory, err)
	}
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    cpuQ,
		corev1.ResourceMemory: memQ,
		corev1.ResourcePods:   resource.MustParse(maxPodsPerFakeNode),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{FakeNodeAnnotation: "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		// The API server keeps a Node's status on create (kubelets register
		// that way); kwok's node-initialize stage keeps capacity and
		// allocatable and fills in conditions and addresses.
		Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources},
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nodeReadyTimeout)
		defer cancel()
	}
	if _, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("cluster: creating fake node %q: %w", name, err)
	}

	begin := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil && nodeReady(n) {
			c.logf("cluster: fake node %s Ready in %s", name, time.Since(begin).Round(10*time.Millisecond))
			return nil
		}
		select {
		case <-kwok.exited:
			return fmt.Errorf("cluster: fake node %q: %w\nkwok log (%s):\n%s", name, kwok.exitErr(), kwok.logPath, c.LogTail(Kwok))
		case <-ctx.Done():
			return fmt.Errorf("cluster: fake node %q not Ready: %w (last get: %v); is kwok running? see %s", name, ctx.Err(), err, kwok.logPath)
		case <-tick.C:
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
