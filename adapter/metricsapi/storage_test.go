package metricsapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/gantry-dev/gantry/adapter/metricsapi"
)

var window = metav1.Duration{Duration: time.Minute}

// fakeObjects stands in for the object cache.
type fakeObjects struct {
	items map[schema.GroupResource][]*metav1.PartialObjectMetadata
	err   error
}

func (o *fakeObjects) Objects(_ context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]*metav1.PartialObjectMetadata, error) {
	if o.err != nil {
		return nil, o.err
	}
	var out []*metav1.PartialObjectMetadata
	for _, obj := range o.items[gr] {
		if (namespace == "" || obj.Namespace == namespace) && sel.Matches(labels.Set(obj.Labels)) {
			out = append(out, obj)
		}
	}
	return out, nil
}

// fakeSource has metrics for the objects named in data ("ns/name" for pods,
// "name" for nodes) and records which objects it was asked about.
type fakeSource struct {
	data map[string]bool
	err  error

	mu    sync.Mutex
	asked []string
}

func key(o *metav1.PartialObjectMetadata) string {
	if o.Namespace == "" {
		return o.Name
	}
	return o.Namespace + "/" + o.Name
}

func (s *fakeSource) record(objs []*metav1.PartialObjectMetadata) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range objs {
		s.asked = append(s.asked, key(o))
	}
}

func (s *fakeSource) PodMetrics(_ context.Context, pods []*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	s.record(pods)
	if s.err != nil {
		return nil, s.err
	}
	var out []metrics.PodMetrics
	for _, p := range pods {
		if s.data[key(p)] {
			out = append(out, metrics.PodMetrics{
				ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
				Window:     window,
				Containers: []metrics.ContainerMetrics{{Name: "app", Usage: usage("250m", "64Mi")}},
			})
		}
	}
	return out, nil
}

func (s *fakeSource) NodeMetrics(_ context.Context, nodes []*metav1.PartialObjectMetadata) ([]metrics.NodeMetrics, error) {
	s.record(nodes)
	if s.err != nil {
		return nil, s.err
	}
	var out []metrics.NodeMetrics
	for _, n := range nodes {
		if s.data[key(n)] {
			out = append(out, metrics.NodeMetrics{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}, Window: window, Usage: usage("1750m", "3Gi")})
		}
	}
	return out, nil
}

func usage(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

func object(namespace, name string, kv ...string) *metav1.PartialObjectMetadata {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: l}}
}

func cluster() *fakeObjects {
	return &fakeObjects{items: map[schema.GroupResource][]*metav1.PartialObjectMetadata{
		{Resource: "pods"}: {
			object("shop", "web-1", "app", "web", "tier", "front"),
			object("shop", "web-2", "app", "web", "tier", "back"),
			object("shop", "web-3", "app", "web"), // no data
			object("shop", "db-0", "app", "db"),
			object("other", "web-1", "app", "web"),
		},
		{Resource: "nodes"}: {
			object("", "node-a", "zone", "a"),
			object("", "node-b", "zone", "b"),
			object("", "node-c", "zone", "a"), // no data
		},
	}}
}

func withData(keys ...string) *fakeSource {
	s := &fakeSource{data: map[string]bool{}}
	for _, k := range keys {
		s.data[k] = true
	}
	return s
}

func listOptions(t *testing.T, labelSel, fieldSel string) *metainternalversion.ListOptions {
	t.Helper()
	opts := &metainternalversion.ListOptions{}
	if labelSel != "" {
		sel, err := labels.Parse(labelSel)
		if err != nil {
			t.Fatal(err)
		}
		opts.LabelSelector = sel
	}
	if fieldSel != "" {
		sel, err := fields.ParseSelector(fieldSel)
		if err != nil {
			t.Fatal(err)
		}
		opts.FieldSelector = sel
	}
	return opts
}

func nsContext(namespace string) context.Context {
	ctx := context.Background()
	if namespace != "" {
		ctx = genericapirequest.WithNamespace(ctx, namespace)
	}
	return ctx
}

// statusOf returns the HTTP code and message of an API error, 0 for nil.
func statusOf(t *testing.T, err error) (int32, string) {
	t.Helper()
	if err == nil {
		return 0, ""
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an API status", err, err)
	}
	return se.Status().Code, se.Status().Message
}

func TestPodList(t *testing.T) {
	podData := []string{"shop/web-1", "shop/web-2", "shop/db-0", "other/web-1"}
	cases := []struct {
		name                string
		namespace           string
		labelSel, fieldSel  string
		objectsErr          error
		wantAsked, wantPods []string // pods asked of the source, pods returned
		wantCode            int32
		wantMsg             string
	}{{
		name:      "all pods of a namespace; a pod without data is left out",
		namespace: "shop",
		wantAsked: []string{"shop/web-1", "shop/web-2", "shop/web-3", "shop/db-0"},
		wantPods:  []string{"shop/web-1", "shop/web-2", "shop/db-0"},
	}, {
		name:      "all namespaces",
		wantAsked: []string{"shop/web-1", "shop/web-2", "shop/web-3", "shop/db-0", "other/web-1"},
		wantPods:  []string{"shop/web-1", "shop/web-2", "shop/db-0", "other/web-1"},
	}, {
		name:      "label selector",
		namespace: "shop", labelSel: "app=web,tier in (front,back)",
		wantAsked: []string{"shop/web-1", "shop/web-2"},
		wantPods:  []string{"shop/web-1", "shop/web-2"},
	}, {
		name:      "field selector on the name, as kubectl top pod NAME",
		namespace: "shop", fieldSel: "metadata.name=web-2",
		wantAsked: []string{"shop/web-2"},
		wantPods:  []string{"shop/web-2"},
	}, {
		name:      "field selector excluding a name",
		namespace: "shop", fieldSel: "metadata.name!=web-1",
		wantAsked: []string{"shop/web-2", "shop/web-3", "shop/db-0"},
		wantPods:  []string{"shop/web-2", "shop/db-0"},
	}, {
		name:      "field selector on the namespace across all namespaces",
		fieldSel:  "metadata.namespace=other",
		wantAsked: []string{"other/web-1"},
		wantPods:  []string{"other/web-1"},
	}, {
		name:      "label and field selectors together",
		namespace: "shop", labelSel: "app=web", fieldSel: "metadata.name=web-1",
		wantAsked: []string{"shop/web-1"},
		wantPods:  []string{"shop/web-1"},
	}, {
		name:      "nothing matches: an empty list, not an error",
		namespace: "shop", labelSel: "app=cache",
		wantPods: nil,
	}, {
		name:      "field selector the API does not support",
		namespace: "shop", fieldSel: "spec.nodeName=node-a",
		wantCode: http.StatusBadRequest,
		wantMsg:  `field selector "spec.nodeName": only metadata.name and metadata.namespace are supported`,
	}, {
		name:      "object cache failing",
		namespace: "shop", objectsErr: errors.New("cache not synced"),
		wantCode: http.StatusServiceUnavailable,
		wantMsg:  "listing pods: cache not synced",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, src := cluster(), withData(podData...)
			objs.err = tc.objectsErr
			s := metricsapi.NewPodStorage(src, objs)
			obj, err := s.List(nsContext(tc.namespace), listOptions(t, tc.labelSel, tc.fieldSel))
			code, msg := statusOf(t, err)
			if code != tc.wantCode || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("List error = %d %q, want %d containing %q", code, msg, tc.wantCode, tc.wantMsg)
			}
			if tc.wantCode != 0 {
				if len(src.asked) != 0 {
					t.Errorf("source asked about %q on a failed request", src.asked)
				}
				return
			}
			list, ok := obj.(*metrics.PodMetricsList)
			if !ok {
				t.Fatalf("List returned %T, want *metrics.PodMetricsList", obj)
			}
			var got []string
			for _, p := range list.Items {
				got = append(got, p.Namespace+"/"+p.Name)
			}
			if diff := cmp.Diff(tc.wantAsked, src.asked); diff != "" {
				t.Errorf("pods asked of the source (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantPods, got); diff != "" {
				t.Errorf("pods listed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodeList(t *testing.T) {
	cases := []struct {
		name               string
		labelSel, fieldSel string
		wantNodes          []string
		wantCode           int32
		wantMsg            string
	}{
		{name: "all nodes with data", wantNodes: []string{"node-a", "node-b"}},
		{name: "label selector", labelSel: "zone=a", wantNodes: []string{"node-a"}},
		{name: "field selector on the name", fieldSel: "metadata.name=node-b", wantNodes: []string{"node-b"}},
		{name: "name of a node without data", fieldSel: "metadata.name=node-c", wantNodes: nil},
		{name: "unsupported field selector", fieldSel: "spec.unschedulable=false", wantCode: http.StatusBadRequest, wantMsg: `field selector "spec.unschedulable"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := metricsapi.NewNodeStorage(withData("node-a", "node-b"), cluster())
			obj, err := s.List(context.Background(), listOptions(t, tc.labelSel, tc.fieldSel))
			code, msg := statusOf(t, err)
			if code != tc.wantCode || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("List error = %d %q, want %d containing %q", code, msg, tc.wantCode, tc.wantMsg)
			}
			if tc.wantCode != 0 {
				return
			}
			var got []string
			for _, n := range obj.(*metrics.NodeMetricsList).Items {
				got = append(got, n.Name)
			}
			if diff := cmp.Diff(tc.wantNodes, got); diff != "" {
				t.Errorf("nodes listed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGet(t *testing.T) {
	cases := []struct {
		name      string
		storage   func(src metricsapi.Source) rest.Getter
		namespace string
		get       string
		sourceErr error
		want      string // namespace/name of the object returned
		wantCode  int32
		wantMsg   string
	}{{
		name:      "pod with data",
		storage:   func(src metricsapi.Source) rest.Getter { return metricsapi.NewPodStorage(src, cluster()) },
		namespace: "shop", get: "web-1",
		want: "shop/web-1",
	}, {
		name:      "same pod name in another namespace",
		storage:   func(src metricsapi.Source) rest.Getter { return metricsapi.NewPodStorage(src, cluster()) },
		namespace: "other", get: "web-1",
		want: "other/web-1",
	}, {
		name:      "pod without data",
		storage:   func(src metricsapi.Source) rest.Getter { return metricsapi.NewPodStorage(src, cluster()) },
		namespace: "shop", get: "web-3",
		wantCode: http.StatusNotFound,
		wantMsg:  `pods.metrics.k8s.io "web-3" not found`,
	}, {
		name:      "pod that does not exist",
		storage:   func(src metricsapi.Source) rest.Getter { return metricsapi.NewPodStorage(src, cluster()) },
		namespace: "shop", get: "web-9",
		wantCode: http.StatusNotFound,
		wantMsg:  `pods.metrics.k8s.io "web-9" not found`,
	}, {
		name:      "pod of another namespace",
		storage:   func(src metricsapi.Source) rest.Getter { return metricsapi.NewPodStorage(src, cluster()) },
		namespace: "other", get: "db-0",
		wantCode: http.StatusNotFound,
		wantMsg:  `pods.metrics.k8s.io "db-0" not found`,
	}, {
		name:      "source failing",
		storage:   func(src metricsapi.Source) rest.Getter { return metricsapi.NewPodStorage(src, cluster()) },
		namespace: "shop", get: "web-1", sourceErr: apierrors.NewServiceUnavailable("backend unavailable"),
		wantCode: http.StatusServiceUnavailable,
		wantMsg:  "backend unavailable",
	}, {
		name:    "node with data",
		storage: func(src metricsapi.Source) rest.Getter { return metricsapi.NewNodeStorage(src, cluster()) },
		get:     "node-a",
		want:    "node-a",
	}, {
		name:     "node without data",
		storage:  func(src metricsapi.Source) rest.Getter { return metricsapi.NewNodeStorage(src, cluster()) },
		get:      "node-c",
		wantCode: http.StatusNotFound,
		wantMsg:  `nodes.metrics.k8s.io "node-c" not found`,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := withData("shop/web-1", "shop/web-2", "shop/db-0", "other/web-1", "node-a")
			src.err = tc.sourceErr
			obj, err := tc.storage(src).Get(nsContext(tc.namespace), tc.get, &metav1.GetOptions{})
			code, msg := statusOf(t, err)
			if code != tc.wantCode || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("Get error = %d %q, want %d containing %q", code, msg, tc.wantCode, tc.wantMsg)
			}
			if tc.wantCode != 0 {
				return
			}
			var got string
			switch o := obj.(type) {
			case *metrics.PodMetrics:
				got = o.Namespace + "/" + o.Name
			case *metrics.NodeMetrics:
				got = o.Name
			default:
				t.Fatalf("Get returned %T", obj)
			}
			if got != tc.want {
				t.Errorf("Get returned %q, want %q", got, tc.want)
			}
		})
	}
}

func TestConvertToTable(t *testing.T) {
	pod := func(name string, containers ...metrics.ContainerMetrics) metrics.PodMetrics {
		return metrics.PodMetrics{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Window: window, Containers: containers}
	}
	node := func(name, cpu, mem string) metrics.NodeMetrics {
		return metrics.NodeMetrics{ObjectMeta: metav1.ObjectMeta{Name: name}, Window: metav1.Duration{Duration: 30 * time.Second}, Usage: usage(cpu, mem)}
	}
	podColumns := []string{"Name", "CPU", "Memory", "Window"}
	cases := []struct {
		name        string
		convert     func(ctx context.Context, obj, tableOptions runtime.Object) (*metav1.Table, error)
		obj         runtime.Object
		wantColumns []string
		wantRows    [][]any
		wantErr     string
	}{{
		name:    "pod list: containers summed, memory in Mi",
		convert: metricsapi.NewPodStorage(nil, nil).ConvertToTable,
		obj: &metrics.PodMetricsList{Items: []metrics.PodMetrics{
			pod("web-1", metrics.ContainerMetrics{Name: "app", Usage: usage("250m", "64Mi")}, metrics.ContainerMetrics{Name: "sidecar", Usage: usage("10m", "16Mi")}),
			pod("web-2", metrics.ContainerMetrics{Name: "app", Usage: usage("1500m", "1Gi")}),
			pod("idle"),
		}},
		wantColumns: podColumns,
		wantRows: [][]any{
			{"web-1", "260m", "80Mi", "1m0s"},
			{"web-2", "1500m", "1024Mi", "1m0s"},
			{"idle", "0m", "0Mi", "1m0s"},
		},
	}, {
		name:        "one pod",
		convert:     metricsapi.NewPodStorage(nil, nil).ConvertToTable,
		obj:         ptr(pod("web-1", metrics.ContainerMetrics{Name: "app", Usage: usage("0.5", "128Mi")})),
		wantColumns: podColumns,
		wantRows:    [][]any{{"web-1", "500m", "128Mi", "1m0s"}},
	}, {
		name:        "node list",
		convert:     metricsapi.NewNodeStorage(nil, nil).ConvertToTable,
		obj:         &metrics.NodeMetricsList{Items: []metrics.NodeMetrics{node("node-a", "1750m", "3Gi"), node("node-b", "2", "512Mi")}},
		wantColumns: podColumns,
		wantRows:    [][]any{{"node-a", "1750m", "3072Mi", "30s"}, {"node-b", "2000m", "512Mi", "30s"}},
	}, {
		name:        "one node",
		convert:     metricsapi.NewNodeStorage(nil, nil).ConvertToTable,
		obj:         ptr(node("node-a", "100m", "1Gi")),
		wantColumns: podColumns,
		wantRows:    [][]any{{"node-a", "100m", "1024Mi", "30s"}},
	}, {
		name:    "pod storage given a node",
		convert: metricsapi.NewPodStorage(nil, nil).ConvertToTable,
		obj:     ptr(node("node-a", "100m", "1Gi")),
		wantErr: "unexpected object *metrics.NodeMetrics",
	}, {
		name:    "node storage given a pod list",
		convert: metricsapi.NewNodeStorage(nil, nil).ConvertToTable,
		obj:     &metrics.PodMetricsList{},
		wantErr: "unexpected object *metrics.PodMetricsList",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table, err := tc.convert(context.Background(), tc.obj, nil)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cols []string
			for _, c := range table.ColumnDefinitions {
				cols = append(cols, c.Name)
			}
			if diff := cmp.Diff(tc.wantColumns, cols); diff != "" {
				t.Errorf("columns (-want +got):\n%s", diff)
			}
			var rows [][]any
			for _, r := range table.Rows {
				rows = append(rows, r.Cells)
				if r.Object.Object == nil {
					t.Errorf("row %v carries no object", r.Cells)
				}
			}
			if diff := cmp.Diff(tc.wantRows, rows); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestStorageShape pins what the API server reads from the storages.
func TestStorageShape(t *testing.T) {
	pods, nodes := metricsapi.NewPodStorage(nil, nil), metricsapi.NewNodeStorage(nil, nil)
	got := []any{
		pods.Kind(), pods.NamespaceScoped(), pods.GetSingularName(), kindOf(pods.New()), kindOf(pods.NewList()),
		nodes.Kind(), nodes.NamespaceScoped(), nodes.GetSingularName(), kindOf(nodes.New()), kindOf(nodes.NewList()),
	}
	want := []any{
		"PodMetrics", true, "pod", "*metrics.PodMetrics", "*metrics.PodMetricsList",
		"NodeMetrics", false, "node", "*metrics.NodeMetrics", "*metrics.NodeMetricsList",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("storage shape (-want +got):\n%s", diff)
	}
	var _ rest.TableConvertor = pods
	var _ rest.TableConvertor = nodes
}

func kindOf(o runtime.Object) string { return fmt.Sprintf("%T", o) }
