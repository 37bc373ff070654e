package provider

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/gantry-dev/gantry/adapter/rules"
)

// ResourceProvider answers metrics.k8s.io from the resourceRules: CPU and
// memory per container and per node. Both resources are queried at once; an
// object appears only when both have a value, as metrics-server does.
type ResourceProvider struct {
	rules   *rules.ResourceRules
	querier Querier
	timeout time.Duration
	now     func() time.Time
}

// NewResourceProvider returns the metrics.k8s.io provider. timeout bounds a
// request's backend work when the request has no earlier deadline.
func NewResourceProvider(rr *rules.ResourceRules, q Querier, timeout time.Duration) *ResourceProvider {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &ResourceProvider{rules: rr, querier: q, timeout: timeout, now: time.Now}
}

type containerKey struct {
	namespace, pod, container string
}

type usage struct {
	cpu, memory *model.Sample
}

// PodMetrics returns the metrics of the given pods that have data, in their
// order. Pods without data are left out.
func (p *ResourceProvider) PodMetrics(ctx context.Context, pods []*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	if len(pods) == 0 {
		return nil, nil
	}
	ctx, cancel := deadline(ctx, p.timeout)
	defer cancel()

	namespace := pods[0].Namespace
	names := make([]string, 0, len(pods))
	wanted := make(map[types.NamespacedName]bool, len(pods))
	for _, pod := range pods {
		if pod.Namespace != namespace {
			namespace = "" // several namespaces: match by name, filter below
		}
		if !wanted[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}] {
			names = append(names, pod.Name)
		}
		wanted[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}] = true
	}

	type answer struct {
		vec     model.Vector
		q       rules.Query
		nsLabel model.LabelName
	}
	var answers [2]answer
	var g errgroup.Group
	for i, rq := range []rules.ResourceQuery{p.rules.CPU, p.rules.Memory} {
		g.Go(func() error {
			q, nsLabel, err := rq.ContainerQuery(namespace, names)
			if err != nil {
				return apierrors.NewInternalError(err)
			}
			vec, err := p.querier.Query(ctx, q.Text, p.now())
			if err != nil {
				return backendError(rq.ID, rq.ID, err)
			}
			answers[i] = answer{vec: vec, q: q, nsLabel: nsLabel}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	byContainer := map[containerKey]*usage{}
	for i, rq := range []rules.ResourceQuery{p.rules.CPU, p.rules.Memory} {
		a := answers[i]
		for _, s := range a.vec {
			k := containerKey{
				namespace: string(s.Metric[a.nsLabel]),
				pod:       string(s.Metric[a.q.ResourceLabel]),
				container: string(s.Metric[rq.ContainerLabel]),
			}
			if !wanted[types.NamespacedName{Namespace: k.namespace, Name: k.pod}] || k.container == "" {
				continue
			}
			u := byContainer[k]
			if u == nil {
				u = &usage{}
				byContainer[k] = u
			}
			if i == 0 {
				u.cpu = s
			} else {
				u.memory = s
			}
		}
	}

	perPod := map[types.NamespacedName][]metrics.ContainerMetrics{}
	stamp := map[types.NamespacedName]model.Time{}
	for k, u := range byContainer {
		if u.cpu == nil || u.memory == nil {
			continue
		}
		id := types.NamespacedName{Namespace: k.namespace, Name: k.pod}
		perPod[id] = append(perPod[id], metrics.ContainerMetrics{
			Name:  k.container,
			Usage: resourceList(float64(u.cpu.Value), float64(u.memory.Value)),
		})
		if ts := u.cpu.Timestamp; ts > stamp[id] {
			stamp[id] = ts
		}
	}
	out := make([]metrics.PodMetrics, 0, len(perPod))
	for _, pod := range pods {
		id := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
		containers, ok := perPod[id]
		if !ok {
			continue
		}
		delete(perPod, id) // a pod listed twice is answered once
		sortContainers(containers)
		out = append(out, metrics.PodMetrics{
			ObjectMeta: objectMeta(pod),
			Timestamp:  metav1.NewTime(stamp[id].Time()),
			Window:     metav1.Duration{Duration: p.rules.Window},
			Containers: containers,
		})
	}
	return out, nil
}

// NodeMetrics returns the metrics of the given nodes that have data, in their
// order.
func (p *ResourceProvider) NodeMetrics(ctx context.Context, nodes []*metav1.PartialObjectMetadata) ([]metrics.NodeMetrics, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	ctx, cancel := deadline(ctx, p.timeout)
	defer cancel()
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	values := [2]map[string]*model.Sample{}
	var g errgroup.Group
	for i, rq := range []rules.ResourceQuery{p.rules.CPU, p.rules.Memory} {
		g.Go(func() error {
			q, err := rq.NodeQuery(names)
			if err != nil {
				return apierrors.NewInternalError(err)
			}
			vec, err := p.querier.Query(ctx, q.Text, p.now())
			if err != nil {
				return backendError(rq.ID, rq.ID, err)
			}
			m := make(map[string]*model.Sample, len(vec))
			for _, s := range vec {
				m[string(s.Metric[q.ResourceLabel])] = s
			}
			values[i] = m
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]metrics.NodeMetrics, 0, len(nodes))
	for _, n := range nodes {
		cpu, okC := values[0][n.Name]
		mem, okM := values[1][n.Name]
		if !okC || !okM {
			continue
		}
		out = append(out, metrics.NodeMetrics{
			ObjectMeta: objectMeta(n),
			Timestamp:  metav1.NewTime(cpu.Timestamp.Time()),
			Window:     metav1.Duration{Duration: p.rules.Window},
			Usage:      resourceList(float64(cpu.Value), float64(mem.Value)),
		})
	}
	return out, nil
}

func deadline(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// resourceList converts CPU in cores and memory in bytes.
func resourceList(cpuCores, memBytes float64) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(clampInt64(cpuCores*1000), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(clampInt64(memBytes), resource.BinarySI),
	}
}

func clampInt64(v float64) int64 {
	switch {
	case v <= 0:
		return 0
	case v >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(math.Round(v))
}

// objectMeta is the metadata a metrics object carries: the object's name,
// namespace and labels, and a creation time of now (as metrics-server does).
func objectMeta(o *metav1.PartialObjectMetadata) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              o.Name,
		Namespace:         o.Namespace,
		Labels:            o.Labels,
		CreationTimestamp: metav1.NewTime(time.Now()),
	}
}

func sortContainers(cs []metrics.ContainerMetrics) {
	slices.SortFunc(cs, func(a, b metrics.ContainerMetrics) int { return strings.Compare(a.Name, b.Name) })
}
