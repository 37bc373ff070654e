package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

// nodeReadyTimeout bounds AddFakeNode's wait when ctx has no deadline; kwok
// marks a node Ready within a second.
const nodeReadyTimeout = time.Minute

// maxPodsPerFakeNode is a fake node's pod capacity, far above what any test
// puts on one node.
const maxPodsPerFakeNode = "1000"

// FakeNode is a node AddFakeNodes created.
type FakeNode struct {
	Name string
	// InternalIP is the node's address in its status, where its kubelet
	// endpoint listens (Options.KubeletMetrics); empty without it.
	InternalIP string
}

// fakeNodeParallelism bounds AddFakeNodes' concurrent creates.
const fakeNodeParallelism = 16

// AddFakeNode creates a Node managed by kwok with the given CPU and memory
// capacity (quantities such as "4" and "8Gi"; allocatable is the same) and
// waits until kwok reports it Ready. Pods bound to it (spec.nodeName: there
// is no scheduler) become Running and Ready with an IP from PodCIDR. It needs
// Options.Kwok. With Options.KubeletMetrics the node also gets its own
// InternalIP and a kubelet endpoint there (see KubeletProxy).
func (c *Cluster) AddFakeNode(ctx context.Context, name, cpu, memory string) error {
	_, err := c.addFakeNodes(ctx, []string{name}, cpu, memory)
	return err
}

// AddFakeNodes creates n fake nodes as AddFakeNode does, named
// kwok-node-<k> with k counting on across calls, and waits until all are
// Ready. With Options.KubeletMetrics node k has InternalIP
// 127.1.<k/250>.<k%250+1>.
func (c *Cluster) AddFakeNodes(ctx context.Context, n int, cpu, memory string) ([]FakeNode, error) {
	c.mu.Lock()
	first := c.fakeNodeNames
	c.fakeNodeNames += n
	c.mu.Unlock()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("kwok-node-%d", first+i)
	}
	return c.addFakeNodes(ctx, names, cpu, memory)
}

func (c *Cluster) addFakeNodes(ctx context.Context, names []string, cpu, memory string) ([]FakeNode, error) {
	c.mu.Lock()
	kwok := c.servers[Kwok]
	c.mu.Unlock()
	if kwok == nil {
		return nil, errors.New("cluster: adding fake nodes needs a cluster started with Options.Kwok")
	}
	cpuQ, err := resource.ParseQuantity(cpu)
	if err != nil {
		return nil, fmt.Errorf("cluster: fake node: cpu %q: %w", cpu, err)
	}
	memQ, err := resource.ParseQuantity(memory)
	if err != nil {
		return nil, fmt.Errorf("cluster: fake node: memory %q: %w", memory, err)
	}
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    cpuQ,
		corev1.ResourceMemory: memQ,
		corev1.ResourcePods:   resource.MustParse(maxPodsPerFakeNode),
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nodeReadyTimeout+time.Duration(len(names))*10*time.Millisecond)
		defer cancel()
	}

	begin := time.Now()
	nodes := make([]FakeNode, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fakeNodeParallelism)
	for i, name := range names {
		nodes[i].Name = name
		if c.kubeletProxy != nil {
			ip, err := c.nextNodeIP()
			if err != nil {
				return nil, err
			}
			nodes[i].InternalIP = ip
			// Listening before the Node exists: a scraper that sees the
			// node finds its endpoint.
			if err := c.kubeletProxy.addNode(name, ip); err != nil {
				return nil, fmt.Errorf("cluster: fake node %q: %w", name, err)
			}
		}
		node := fakeNode(name, nodes[i].InternalIP, resources)
		g.Go(func() error {
			if _, err := c.bulk.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{}); err != nil {
				if c.kubeletProxy != nil {
					c.kubeletProxy.removeNode(node.Name)
				}
				return fmt.Errorf("cluster: creating fake node %q: %w", node.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	created := time.Since(begin)

	pending := make(map[string]bool, len(names))
	for _, name := range names {
		pending[name] = true
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if len(names) == 1 {
			n, err := c.client.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
			if err == nil && nodeReady(n) {
				delete(pending, n.Name)
			}
		} else if list, err := c.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err == nil {
			for i := range list.Items {
				if nodeReady(&list.Items[i]) {
					delete(pending, list.Items[i].Name)
				}
			}
		}
		if len(pending) == 0 {
			if len(names) == 1 {
				c.logf("cluster: fake node %s Ready in %s", names[0], time.Since(begin).Round(10*time.Millisecond))
			} else {
				c.logf("cluster: %d fake nodes created in %s, all Ready in %s", len(names),
					created.Round(10*time.Millisecond), time.Since(begin).Round(10*time.Millisecond))
			}
			return nodes, nil
		}
		select {
		case <-kwok.Process().Exited():
			return nil, fmt.Errorf("cluster: fake nodes: %w\nkwok log (%s):\n%s", exitErr(kwok), kwok.LogPath(), c.LogTail(Kwok))
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster: %d of %d fake nodes not Ready (e.g. %q): %w; is kwok running? see %s",
				len(pending), len(names), anyKey(pending), ctx.Err(), kwok.LogPath())
		case <-tick.C:
		}
	}
}

// AddFakePods creates perNode bare pods on each of nodes in namespace,
// named <node>-pod-<j>, each with one container "app" using cpu and memory
// (usage annotations, see SetPodUsage; empty means kwok's default), and
// waits until all of them are Ready. For load: a test about a few pods
// creates its own.
func (c *Cluster) AddFakePods(ctx context.Context, namespace string, nodes []string, perNode int, cpu, memory string) error {
	annotations := map[string]string{}
	if cpu != "" {
		annotations[UsageCPUAnnotation] = cpu
	}
	if memory != "" {
		annotations[UsageMemoryAnnotation] = memory
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nodeReadyTimeout+time.Duration(len(nodes)*perNode)*10*time.Millisecond)
		defer cancel()
	}
	begin := time.Now()
	want := map[string]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fakeNodeParallelism)
	for _, node := range nodes {
		for j := range perNode {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Name:        fmt.Sprintf("%s-pod-%d", node, j),
					Namespace:   namespace,
					Labels:      map[string]string{"gantry.dev/fake-pod": "true"},
					Annotations: annotations,
				},
				Spec: corev1.PodSpec{
					NodeName:   node,
					Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}},
				},
			}
			want[pod.Name] = true
			g.Go(func() error {
				if _, err := c.bulk.CoreV1().Pods(namespace).Create(gctx, pod, metav1.CreateOptions{}); err != nil {
					return fmt.Errorf("cluster: creating pod %s/%s: %w", namespace, pod.Name, err)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	created := time.Since(begin)
	for {
		list, err := c.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{ResourceVersion: "0", LabelSelector: "gantry.dev/fake-pod=true"})
		if err == nil {
			for i := range list.Items {
				if podReady(&list.Items[i]) {
					delete(want, list.Items[i].Name)
				}
			}
		}
		if len(want) == 0 {
			c.logf("cluster: %d pods on %d fake nodes created in %s, all Ready in %s", len(nodes)*perNode, len(nodes),
				created.Round(10*time.Millisecond), time.Since(begin).Round(10*time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %d pods not Ready (e.g. %s/%s): %w (last list: %v)", len(want), namespace, anyKey(want), ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func fakeNode(name, ip string, resources corev1.ResourceList) *corev1.Node {
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
		// that way); kwok's node-initialize stage keeps capacity,
		// allocatable and addresses, and fills in conditions, the kubelet
		// port (--node-port) and, if none is given, addresses.
		Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources},
	}
	if ip != "" {
		node.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ip},
			{Type: corev1.NodeHostName, Address: name},
		}
	}
	return node
}

// maxFakeNodeIPs is how many addresses FakeNodeIP can hand out
// (127.1.0.1 to 127.1.255.250).
const maxFakeNodeIPs = 256 * 250

// FakeNodeIP is the InternalIP of the k-th fake node (counting from 0)
// given a kubelet endpoint: 127.1.<k/250>.<k%250+1>.
func FakeNodeIP(k int) string {
	return fmt.Sprintf("127.1.%d.%d", k/250, k%250+1)
}

func (c *Cluster) nextNodeIP() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fakeNodes >= maxFakeNodeIPs {
		return "", fmt.Errorf("cluster: no more fake node addresses (%d in use)", c.fakeNodes)
	}
	ip := FakeNodeIP(c.fakeNodes)
	c.fakeNodes++
	return ip, nil
}

// freeKubeletPort finds a port free on 127.0.0.1 and on the first fake node
// addresses. Another cluster on this machine uses the same node addresses,
// so a port free on 127.0.0.1 alone may be taken there.
func freeKubeletPort() (int, error) {
	var lastErr error
	for range 10 {
		ports, err := proc.FreePorts(1)
		if err != nil {
			return 0, err
		}
		if lastErr = portFreeOn(ports[0], FakeNodeIP(0), FakeNodeIP(1), FakeNodeIP(2)); lastErr == nil {
			return ports[0], nil
		}
	}
	return 0, fmt.Errorf("finding a free kubelet port: %w", lastErr)
}

func portFreeOn(port int, ips ...string) error {
	for _, ip := range ips {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		l.Close()
	}
	return nil
}

func anyKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}
