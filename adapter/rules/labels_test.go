package rules

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

var (
	deployments  = schema.GroupResource{Group: "apps", Resource: "deployments"}
	statefulsets = schema.GroupResource{Group: "apps", Resource: "statefulsets"}
	services     = schema.GroupResource{Resource: "services"}
	ingresses    = schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}
	brands       = schema.GroupResource{Group: "cheese.io", Resource: "brands"}
	widgets      = schema.GroupResource{Group: "my-group.example.com", Resource: "widgets"}
	otherWidgets = schema.GroupResource{Group: "other.example.com", Resource: "widgets"}
	monitors     = schema.GroupResource{Group: "monitoring.coreos.com", Resource: "servicemonitors"}
)

func TestLabelMapLabelFor(t *testing.T) {
	tests := []struct {
		name    string
		mapping config.ResourceMapping
		gr      schema.GroupResource
		want    model.LabelName
		wantErr string
	}{
		{
			name:    "override, singular resource",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{"kubernetes_pod_name": {Resource: "pod"}}},
			gr:      Pods,
			want:    "kubernetes_pod_name",
		},
		{
			name:    "override, plural resource",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{"kubernetes_namespace": {Resource: "namespaces"}}},
			gr:      Namespaces,
			want:    "kubernetes_namespace",
		},
		{
			name:    "override with a group, from config.md",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{"microservice": {Group: "apps", Resource: "deployment"}}},
			gr:      deployments,
			want:    "microservice",
		},
		{
			name:    "override without a group finds the only group serving it",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{"workload": {Resource: "deployments"}}},
			gr:      deployments,
			want:    "workload",
		},
		{
			name:    "template with the resource only",
			mapping: config.ResourceMapping{Template: "<<.Resource>>"},
			gr:      Pods,
			want:    "pod",
		},
		{
			name:    "template from the config walkthrough",
			mapping: config.ResourceMapping{Template: "kubernetes_<<.Resource>>"},
			gr:      Namespaces,
			want:    "kubernetes_namespace",
		},
		{
			name:    "template with a group, from config.md",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			gr:      deployments,
			want:    "kube_apps_deployment",
		},
		{
			name:    "dots and dashes of a group become underscores",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			gr:      widgets,
			want:    "kube_my_group_example_com_widget",
		},
		{
			name:    "the core group renders empty",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			gr:      Pods,
			want:    "kube__pod",
		},
		{
			name: "an override wins over the template",
			mapping: config.ResourceMapping{
				Template:  "<<.Resource>>",
				Overrides: map[string]config.GroupResource{"exported_pod": {Resource: "pod"}},
			},
			gr:   Pods,
			want: "exported_pod",
		},
		{
			name: "two overrides for one resource: the first label, every time",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{
				"pod_name": {Resource: "pod"}, "pod": {Resource: "pods"}, "z_pod": {Resource: "pod"},
			}},
			gr:   Pods,
			want: "pod",
		},
		{
			name:    "no template, no override",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{"pod": {Resource: "pod"}}},
			gr:      Namespaces,
			wantErr: `no label is mapped to resource "namespaces" (add it to the rule's resources.overrides or set resources.template)`,
		},
		{
			name:    "template, but the resource is unknown",
			mapping: config.ResourceMapping{Template: "<<.Resource>>"},
			gr:      schema.GroupResource{Resource: "gadgets"},
			wantErr: `resource "gadgets": no matches for /, Resource=gadgets`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Map order must not matter: build it several times.
			for range 10 {
				lm, err := NewLabelMap(tc.mapping, testMapper())
				if err != nil {
					t.Fatalf("NewLabelMap: %v", err)
				}
				got, err := lm.LabelFor(tc.gr)
				if tc.wantErr != "" {
					if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
						t.Fatalf("LabelFor error = %v, want prefix %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("LabelFor: %v", err)
				}
				if got != tc.want {
					t.Fatalf("LabelFor(%s) = %q, want %q", tc.gr, got, tc.want)
				}
			}
		})
	}
}

func TestLabelMapResourceForLabel(t *testing.T) {
	tests := []struct {
		name    string
		mapping config.ResourceMapping
		labels  []model.LabelName
		want    []schema.GroupResource // ResourcesFor, in label order
	}{
		{
			name: "overrides from the config walkthrough",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{
				"kubernetes_namespace": {Resource: "namespace"},
				"kubernetes_pod_name":  {Resource: "pod"},
			}},
			labels: []model.LabelName{"__name__", "method", "kubernetes_namespace", "kubernetes_pod_name"},
			want:   []schema.GroupResource{Namespaces, Pods},
		},
		{
			name:    "the <<.Resource>> template of sample-config.yaml",
			mapping: config.ResourceMapping{Template: "<<.Resource>>"},
			labels:  []model.LabelName{"namespace", "pod", "service", "ingress", "verb", "container", "node", "deployment"},
			want:    []schema.GroupResource{Namespaces, Pods, services, ingresses, Nodes, deployments},
		},
		{
			// prometheus-adapter maps these, then queries by "pod" and
			// finds nothing.
			name:    "only the label the template renders names a resource, not its plural",
			mapping: config.ResourceMapping{Template: "<<.Resource>>"},
			labels:  []model.LabelName{"pods", "nodes", "Pod"},
			want:    nil,
		},
		{
			name:    "a group template reads back a plain group",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			labels:  []model.LabelName{"kube_apps_deployment", "kube_apps_statefulset"},
			want:    []schema.GroupResource{deployments, statefulsets},
		},
		{
			name:    "a group template reads back sanitised dotted and dashed groups",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			labels:  []model.LabelName{"kube_my_group_example_com_widget", "kube_other_example_com_widget", "kube_monitoring_coreos_com_servicemonitor", "kube_cheese_io_brand"},
			want:    []schema.GroupResource{widgets, otherWidgets, monitors, brands},
		},
		{
			name:    "a group template reads back the core group",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			labels:  []model.LabelName{"kube__pod", "kube__namespace"},
			want:    []schema.GroupResource{Pods, Namespaces},
		},
		{
			name:    "a group template does not guess a group the label does not name",
			mapping: config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"},
			labels:  []model.LabelName{"kube_extensions_deployment", "kube__deployment", "kube_example_com_widget"},
			want:    nil,
		},
		{
			name:    "without a group in the template, a resource served by two groups is ambiguous",
			mapping: config.ResourceMapping{Template: "<<.Resource>>"},
			labels:  []model.LabelName{"widget"},
			want:    nil,
		},
		{
			name:    "literal text of the template is not a regexp",
			mapping: config.ResourceMapping{Template: "k8s.<<.Resource>>"},
			labels:  []model.LabelName{"k8sXpod"},
			want:    nil,
		},
		{
			name: "overrides and template together",
			mapping: config.ResourceMapping{
				Template:  "kubernetes_<<.Resource>>",
				Overrides: map[string]config.GroupResource{"microservice": {Group: "apps", Resource: "deployment"}},
			},
			labels: []model.LabelName{"microservice", "kubernetes_pod", "kubernetes_namespace", "pod"},
			want:   []schema.GroupResource{deployments, Pods, Namespaces},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lm, err := NewLabelMap(tc.mapping, testMapper())
			if err != nil {
				t.Fatalf("NewLabelMap: %v", err)
			}
			// Twice: the second answer comes from the caches.
			for range 2 {
				if diff := cmp.Diff(tc.want, lm.ResourcesFor(tc.labels)); diff != "" {
					t.Errorf("ResourcesFor(%v) (-want +got):\n%s", tc.labels, diff)
				}
			}
			// Every resource found maps back to the label it was found on,
			// unless an override names another label for it.
			for _, l := range tc.labels {
				gr, ok := lm.ResourceForLabel(l)
				if !ok {
					continue
				}
				back, err := lm.LabelFor(gr)
				if err != nil {
					t.Errorf("LabelFor(%s), found on label %q: %v", gr, l, err)
				} else if back != l && tc.mapping.Overrides[string(back)].Resource == "" {
					t.Errorf("label %q names %s, whose label is %q", l, gr, back)
				}
			}
		})
	}
}

func TestNewLabelMapErrors(t *testing.T) {
	tests := []struct {
		name    string
		mapping config.ResourceMapping
		wantErr string
	}{
		{
			name:    "override naming an unknown resource",
			mapping: config.ResourceMapping{Overrides: map[string]config.GroupResource{"brand": {Group: "cheddar.io", Resource: "brand"}}},
			wantErr: `overrides.brand: resource "brand" not known to the cluster: `,
		},
		{
			name:    "template with another field",
			mapping: config.ResourceMapping{Template: "<<.Namespace>>_<<.Resource>>"},
			wantErr: `template: only <<.Group>> and <<.Resource>> may appear in a label template, found <<.Namespace>>`,
		},
		{
			name:    "template that does not parse",
			mapping: config.ResourceMapping{Template: "<<.Resource"},
			wantErr: `template: template: template:1: unclosed action`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLabelMap(tc.mapping, testMapper())
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Fatalf("NewLabelMap error = %v, want prefix %q", err, tc.wantErr)
			}
		})
	}
}

func TestLabelMapConcurrentUse(t *testing.T) {
	lm, err := NewLabelMap(config.ResourceMapping{Template: "kube_<<.Group>>_<<.Resource>>"}, testMapper())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if l, err := lm.LabelFor(deployments); err != nil || l != "kube_apps_deployment" {
					t.Errorf("LabelFor = %q, %v", l, err)
				}
				if gr, ok := lm.ResourceForLabel("kube_apps_deployment"); !ok || gr != deployments {
					t.Errorf("ResourceForLabel = %v, %v", gr, ok)
				}
				lm.ResourceForLabel(model.LabelName("kube_x_" + string(rune('a'+i))))
			}
		}()
	}
	wg.Wait()
}

func TestNamespaced(t *testing.T) {
	tests := []struct {
		gr   schema.GroupResource
		want bool
	}{
		{Pods, true},
		{services, true},
		{deployments, true},
		{ingresses, true},
		{widgets, true},
		{Namespaces, false},
		{Nodes, false},
		{PersistentVolumes, false},
		{schema.GroupResource{Group: "storage.k8s.io", Resource: "storageclasses"}, false},
		{brands, false},
		// Unknown to the cluster: assume namespaced, the common case.
		{schema.GroupResource{Group: "gadgets.io", Resource: "gadgets"}, true},
	}
	mapper := testMapper()
	for _, tc := range tests {
		t.Run(tc.gr.String(), func(t *testing.T) {
			if got := Namespaced(mapper, tc.gr); got != tc.want {
				t.Errorf("Namespaced(%s) = %v, want %v", tc.gr, got, tc.want)
			}
		})
	}
}
