// Package metricsapi serves metrics.k8s.io (PodMetrics and NodeMetrics) on
// the same aggregated API server as the custom and external metrics APIs.
// custom-metrics-apiserver does not provide this group, so its REST storage,
// scheme and OpenAPI models live here; the values come from a Source, which
// adapter/provider's ResourceProvider implements.
//
// Flow: /apis/metrics.k8s.io/v1beta1/... → storage → Source → collector.
package metricsapi

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/metrics/pkg/apis/metrics"
)

// Source gives the metrics of objects; objects without data are left out.
// Implementations must honour ctx's deadline.
type Source interface {
	PodMetrics(ctx context.Context, pods []*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error)
	NodeMetrics(ctx context.Context, nodes []*metav1.PartialObjectMetadata) ([]metrics.NodeMetrics, error)
}

// Objects lists the pods and nodes that exist, from a cache.
type Objects interface {
	Objects(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]*metav1.PartialObjectMetadata, error)
}

var (
	podsGR  = schema.GroupResource{Resource: "pods"}
	nodesGR = schema.GroupResource{Resource: "nodes"}
)

// storage is the shared part of the pods and nodes REST storage.
type storage struct {
	source  Source
	objects Objects
	gr      schema.GroupResource // the core resource listed
	metrics schema.GroupResource // the metrics.k8s.io resource served
}

func (s *storage) Destroy() {}

// list resolves the objects a request asks for: label selector against the
// cache, field selector on metadata.name / metadata.namespace.
func (s *storage) list(ctx context.Context, opts *metainternalversion.ListOptions) ([]*metav1.PartialObjectMetadata, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	sel, fsel := labels.Everything(), fields.Everything()
	if opts != nil {
		if opts.LabelSelector != nil {
			sel = opts.LabelSelector
		}
		if opts.FieldSelector != nil {
			fsel = opts.FieldSelector
		}
	}
	for _, r := range fsel.Requirements() {
		if r.Field != "metadata.name" && r.Field != "metadata.namespace" {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("field selector %q: only metadata.name and metadata.namespace are supported", r.Field))
		}
	}
	objs, err := s.objects.Objects(ctx, s.gr, namespace, sel)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("listing %s: %v", s.gr.String(), err))
	}
	if fsel.Empty() {
		return objs, nil
	}
	out := objs[:0:0]
	for _, o := range objs {
		if fsel.Matches(fields.Set{"metadata.name": o.Name, "metadata.namespace": o.Namespace}) {
			out = append(out, o)
		}
	}
	return out, nil
}

// get finds one object in the cache.
func (s *storage) get(ctx context.Context, name string) (*metav1.PartialObjectMetadata, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	objs, err := s.objects.Objects(ctx, s.gr, namespace, labels.Everything())
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("listing %s: %v", s.gr.String(), err))
	}
	for _, o := range objs {
		if o.Name == name {
			return o, nil
		}
	}
	return nil, apierrors.NewNotFound(s.metrics, name)
}

// PodStorage serves pods.metrics.k8s.io.
type PodStorage struct{ storage }

// NodeStorage serves nodes.metrics.k8s.io.
type NodeStorage struct{ storage }

var (
	_ rest.Storage              = (*PodStorage)(nil)
	_ rest.KindProvider         = (*PodStorage)(nil)
	_ rest.Scoper               = (*PodStorage)(nil)
	_ rest.Getter               = (*PodStorage)(nil)
	_ rest.Lister               = (*PodStorage)(nil)
	_ rest.SingularNameProvider = (*PodStorage)(nil)
	_ rest.Storage              = (*NodeStorage)(nil)
	_ rest.KindProvider         = (*NodeStorage)(nil)
	_ rest.Scoper               = (*NodeStorage)(nil)
	_ rest.Getter               = (*NodeStorage)(nil)
	_ rest.Lister               = (*NodeStorage)(nil)
	_ rest.SingularNameProvider = (*NodeStorage)(nil)
)

// NewPodStorage returns the REST storage of PodMetrics.
func NewPodStorage(src Source, objs Objects) *PodStorage {
	return &PodStorage{storage{source: src, objects: objs, gr: podsGR, metrics: metrics.Resource("pods")}}
}

// NewNodeStorage returns the REST storage of NodeMetrics.
func NewNodeStorage(src Source, objs Objects) *NodeStorage {
	return &NodeStorage{storage{source: src, objects: objs, gr: nodesGR, metrics: metrics.Resource("nodes")}}
}

func (*PodStorage) New() runtime.Object      { return &metrics.PodMetrics{} }
func (*PodStorage) NewList() runtime.Object  { return &metrics.PodMetricsList{} }
func (*PodStorage) Kind() string             { return "PodMetrics" }
func (*PodStorage) NamespaceScoped() bool    { return true }
func (*PodStorage) GetSingularName() string  { return "pod" }
func (*NodeStorage) New() runtime.Object     { return &metrics.NodeMetrics{} }
func (*NodeStorage) NewList() runtime.Object { return &metrics.NodeMetricsList{} }
func (*NodeStorage) Kind() string            { return "NodeMetrics" }
func (*NodeStorage) NamespaceScoped() bool   { return false }
func (*NodeStorage) GetSingularName() string { return "node" }

// Get returns one pod's metrics, or NotFound when the pod has no data.
func (s *PodStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	pod, err := s.get(ctx, name)
	if err != nil {
		return nil, err
	}
	ms, err := s.source.PodMetrics(ctx, []*metav1.PartialObjectMetadata{pod})
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, apierrors.NewNotFound(s.metrics, name)
	}
	return &ms[0], nil
}

// List returns the metrics of the matching pods that have data.
func (s *PodStorage) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	pods, err := s.list(ctx, opts)
	if err != nil {
		return nil, err
	}
	ms, err := s.source.PodMetrics(ctx, pods)
	if err != nil {
		return nil, err
	}
	return &metrics.PodMetricsList{Items: ms}, nil
}

// Get returns one node's metrics, or NotFound when the node has no data.
func (s *NodeStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	node, err := s.get(ctx, name)
	if err != nil {
		return nil, err
	}
	ms, err := s.source.NodeMetrics(ctx, []*metav1.PartialObjectMetadata{node})
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, apierrors.NewNotFound(s.metrics, name)
	}
	return &ms[0], nil
}

// List returns the metrics of the matching nodes that have data.
func (s *NodeStorage) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	nodes, err := s.list(ctx, opts)
	if err != nil {
		return nil, err
	}
	ms, err := s.source.NodeMetrics(ctx, nodes)
	if err != nil {
		return nil, err
	}
	return &metrics.NodeMetricsList{Items: ms}, nil
}

// ConvertToTable prints pod metrics as `kubectl get podmetrics` shows them.
func (s *PodStorage) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	var items []metrics.PodMetrics
	switch o := obj.(type) {
	case *metrics.PodMetrics:
		items = []metrics.PodMetrics{*o}
	case *metrics.PodMetricsList:
		items = o.Items
	default:
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name of the pod"},
		{Name: "CPU", Type: "string", Description: "CPU usage of all containers"},
		{Name: "Memory", Type: "string", Description: "Memory usage of all containers"},
		{Name: "Window", Type: "string", Description: "Window the values are averaged over"},
	}}
	for i := range items {
		m := &items[i]
		var cpu, mem int64
		for _, c := range m.Containers {
			cpu += c.Usage.Cpu().MilliValue()
			mem += c.Usage.Memory().Value()
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{m.Name, fmt.Sprintf("%dm", cpu), fmt.Sprintf("%dMi", mem/(1<<20)), m.Window.Duration.String()},
			Object: runtime.RawExtension{Object: m},
		})
	}
	return t, nil
}

// ConvertToTable prints node metrics as `kubectl get nodemetrics` shows them.
func (s *NodeStorage) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	var items []metrics.NodeMetrics
	switch o := obj.(type) {
	case *metrics.NodeMetrics:
		items = []metrics.NodeMetrics{*o}
	case *metrics.NodeMetricsList:
		items = o.Items
	default:
		return nil, fmt.Errorf("unexpected object %T", obj)
	}
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name of the node"},
		{Name: "CPU", Type: "string", Description: "CPU usage"},
		{Name: "Memory", Type: "string", Description: "Memory usage"},
		{Name: "Window", Type: "string", Description: "Window the values are averaged over"},
	}}
	for i := range items {
		m := &items[i]
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{m.Name, fmt.Sprintf("%dm", m.Usage.Cpu().MilliValue()), fmt.Sprintf("%dMi", m.Usage.Memory().Value()/(1<<20)), m.Window.Duration.String()},
			Object: runtime.RawExtension{Object: m},
		})
	}
	return t, nil
}
