package kubelet

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unique"
)

// freshContainerMin is how long a container must have run before its first
// sample alone gives a rate (from its start, when the counter was 0); a
// shorter window is too noisy (metrics-server uses the same bound).
const freshContainerMin = 10 * time.Second

// maxWindow bounds the distance of the two samples a rate is taken over:
// beyond it the kubelet's clock jumped, and the rate would mean nothing.
const maxWindow = time.Hour

// cpuWindow holds the last two samples of a CPU counter; the rate is their
// slope and the window their distance, as metrics-server serves it.
type cpuWindow struct {
	prev, last point // prev.ms == 0: no rate yet
}

// rate returns the usage in cores over the window; ok is false until two
// samples are known.
func (w cpuWindow) rate() (cores float64, window time.Duration, ok bool) {
	d := w.last.ms - w.prev.ms // both positive: no overflow
	if w.prev.ms == 0 || d <= 0 || d > maxWindow.Milliseconds() || w.last.cpu < w.prev.cpu {
		return 0, 0, false
	}
	return (w.last.cpu - w.prev.cpu) / (float64(d) / 1000), time.Duration(d) * time.Millisecond, true
}

// add moves the window forward with a new sample. A sample not newer than
// the last one (the kubelet's stats cache answered twice) leaves the window;
// a counter that went down (reset) or a restart after the last sample
// (startMs) restarts it.
func (w *cpuWindow) add(p point, startMs int64, interval time.Duration) {
	switch {
	case w.last.ms != 0 && p.ms <= w.last.ms && startMs <= w.last.ms:
		return
	case w.last.ms == 0 || p.cpu < w.last.cpu || startMs > w.last.ms:
		w.prev, w.last = point{}, p
		// A container that started less than an interval ago counted from
		// 0 at its start: serve it now rather than one interval later.
		if age := p.ms - startMs; startMs > 0 && age >= freshContainerMin.Milliseconds() && age < interval.Milliseconds() {
			w.prev = point{ms: startMs}
		}
	default:
		w.prev, w.last = w.last, p
	}
}

// containerWindow is one container's state.
type containerWindow struct {
	name    string // interned
	cpu     cpuWindow
	memory  float64
	startMs int64
}

// podWindow is one pod's containers, sorted by name.
type podWindow struct {
	namespace, name string // interned namespace
	node            *nodeWindow
	containers      []containerWindow
}

// nodeWindow is one node's state and the pods its last scrape reported,
// sorted by namespace and name.
type nodeWindow struct {
	name        string
	cpu         cpuWindow
	memory      float64
	hasMemory   bool
	lastSuccess time.Time // by the collector's clock
	pods        []*podWindow
}

type podKey struct{ namespace, name string }

// store is the in-memory window of every node and pod. Scrapes write one
// node at a time; requests read without I/O.
type store struct {
	interval time.Duration

	mu         sync.RWMutex
	nodes      map[string]*nodeWindow
	pods       map[podKey]*podWindow
	containers int
}

func newStore(interval time.Duration) *store {
	return &store{interval: interval, nodes: map[string]*nodeWindow{}, pods: map[podKey]*podWindow{}}
}

func intern(s string) string { return unique.Make(s).Value() }

// update stores one successful scrape of node: its pods become exactly the
// pods in res; pods it no longer reports leave.
func (s *store) update(node string, res *scrapeResult, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[node]
	if n == nil {
		n = &nodeWindow{name: node}
		s.nodes[node] = n
	}
	n.lastSuccess = now
	if res.hasNodeCPU {
		n.cpu.add(res.node, 0, s.interval)
	}
	n.memory, n.hasMemory = res.nodeMemory, res.hasNodeMemory

	old := n.pods
	pods := make([]*podWindow, 0, len(old))
	cs := res.containers
	for len(cs) > 0 {
		end := 1
		for end < len(cs) && cs[end].namespace == cs[0].namespace && cs[end].pod == cs[0].pod {
			end++
		}
		pods = append(pods, s.updatePod(n, cs[:end]))
		cs = cs[end:]
	}
	// Both lists are sorted: whatever of old is not in pods has left.
	j := 0
	for _, p := range old {
		for j < len(pods) && comparePods(pods[j], p) < 0 {
			j++
		}
		if j < len(pods) && pods[j] == p {
			continue
		}
		if cur := s.pods[podKey{p.namespace, p.name}]; cur == p {
			delete(s.pods, podKey{p.namespace, p.name})
			s.containers -= len(p.containers)
		}
	}
	n.pods = pods
}

func comparePods(a, b *podWindow) int {
	return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
}

// updatePod merges one pod's samples (non-empty, sorted by container).
func (s *store) updatePod(n *nodeWindow, cs []containerSample) *podWindow {
	k := podKey{cs[0].namespace, cs[0].pod}
	p := s.pods[k]
	if p == nil || p.node != n {
		if p != nil {
			// The name now runs on this node (a recreated StatefulSet pod).
			s.containers -= len(p.containers)
		}
		k = podKey{intern(k.namespace), k.name}
		p = &podWindow{namespace: k.namespace, name: k.name, node: n}
		s.pods[k] = p
	}
	s.containers -= len(p.containers)
	old := p.containers
	same := len(old) == len(cs)
	for i := 0; same && i < len(cs); i++ {
		same = old[i].name == cs[i].container
	}
	next := old
	if !same {
		next = make([]containerWindow, len(cs))
		i := 0
		for j, c := range cs {
			for i < len(old) && old[i].name < c.container {
				i++
			}
			if i < len(old) && old[i].name == c.container {
				next[j] = old[i]
			} else {
				next[j] = containerWindow{name: intern(c.container)}
			}
		}
	}
	for j, c := range cs {
		w := &next[j]
		if c.hasCPU {
			w.cpu.add(c.cpu, c.startMs, s.interval)
		} else {
			w.cpu = cpuWindow{}
		}
		w.memory = c.memory
		if !c.hasMemory {
			w.memory = -1
		}
		w.startMs = c.startMs
	}
	p.containers = next
	s.containers += len(next)
	return p
}

// removeNode drops a node and its pods.
func (s *store) removeNode(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[node]
	if n == nil {
		return
	}
	s.dropPods(n)
	delete(s.nodes, node)
}

// expire drops the data of nodes whose last success is older than maxAge,
// keeping the node itself (it still exists).
func (s *store) expire(now time.Time, maxAge time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if now.Sub(n.lastSuccess) > maxAge && (len(n.pods) > 0 || n.cpu.last.ms != 0) {
			s.dropPods(n)
			n.cpu, n.hasMemory = cpuWindow{}, false
		}
	}
}

func (s *store) dropPods(n *nodeWindow) {
	for _, p := range n.pods {
		if cur := s.pods[podKey{p.namespace, p.name}]; cur == p {
			delete(s.pods, podKey{p.namespace, p.name})
			s.containers -= len(p.containers)
		}
	}
	n.pods = nil
}

// nodeNames lists the nodes in the store.
func (s *store) nodeNames() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.nodes))
	for name := range s.nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// usage is what metrics.k8s.io serves for a container or node.
type usage struct {
	cores, memory float64
}

// containerUsage is a container's usage for a PodMetrics.
type containerUsage struct {
	name string
	usage
}

// podUsage returns a pod's containers, the earliest of their timestamps and
// its window (as metrics-server: a pod is served only when every container
// has a rate and a memory value).
func (s *store) podUsage(namespace, name string, buf []containerUsage) ([]containerUsage, time.Time, time.Duration, bool) {
	p := s.pods[podKey{namespace, name}]
	if p == nil || len(p.containers) == 0 {
		return buf, time.Time{}, 0, false
	}
	var ts int64
	var window time.Duration
	for _, c := range p.containers {
		cores, w, ok := c.cpu.rate()
		if !ok || c.memory < 0 {
			return buf, time.Time{}, 0, false
		}
		if ts == 0 || c.cpu.last.ms < ts {
			ts, window = c.cpu.last.ms, w
		}
		buf = append(buf, containerUsage{name: c.name, usage: usage{cores: cores, memory: c.memory}})
	}
	return buf, time.UnixMilli(ts), window, true
}

// nodeUsage returns a node's usage, timestamp and window.
func (s *store) nodeUsage(name string) (usage, time.Time, time.Duration, bool) {
	n := s.nodes[name]
	if n == nil || !n.hasMemory {
		return usage{}, time.Time{}, 0, false
	}
	cores, w, ok := n.cpu.rate()
	if !ok {
		return usage{}, time.Time{}, 0, false
	}
	return usage{cores: cores, memory: n.memory}, time.UnixMilli(n.cpu.last.ms), w, true
}
