package deploy_test

import (
	"bytes"
	"context"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"

	"github.com/gantry-dev/gantry/adapter"
	"github.com/gantry-dev/gantry/adapter/checkconfig"
	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// clusterScoped are the kinds in the manifests that have no namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "APIService": true,
	"CustomResourceDefinition": true, "ValidatingWebhookConfiguration": true,
}

// unknownToClientGo are the kinds of the manifests client-go has no type
// for; the kube-apiserver checks them in TestServerSideDryRun (and the
// MetricRule CRD's schema in TestMetricRuleCRDOnAPIServer).
var unknownToClientGo = map[string]bool{"APIService": true, "CustomResourceDefinition": true}

// builtinRoles are the roles the bindings may reference without the
// manifests defining them: Kubernetes creates them.
var builtinRoles = map[string]bool{
	"ClusterRole/system:auth-delegator":                          true,
	"Role/kube-system/extension-apiserver-authentication-reader": true,
}

// manifests holds the decoded objects, with lookups by kind and name.
type manifests struct {
	objs []*unstructured.Unstructured
}

func load(t *testing.T) manifests {
	t.Helper()
	objs, err := deploy.Objects()
	if err != nil {
		t.Fatal(err)
	}
	return manifests{objs}
}

func (m manifests) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range m.objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m manifests) find(kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range m.objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

// typed converts an object strictly: unknown or misplaced fields fail.
func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func (m manifests) deployment(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	u := m.find("Deployment", deploy.Namespace, deploy.Deployment)
	if u == nil {
		t.Fatalf("no Deployment %s/%s", deploy.Namespace, deploy.Deployment)
	}
	d := typed[appsv1.Deployment](t, u)
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == deploy.Container {
			return d, c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, deploy.Container)
	return nil, nil
}

func TestObjectsDecode(t *testing.T) {
	m := load(t)
	if len(m.objs) == 0 {
		t.Fatal("no objects")
	}
	if first := m.objs[0]; first.GetKind() != "Namespace" || first.GetName() != deploy.Namespace {
		t.Errorf("first object is %s %s, want the Namespace %s so that applying in order works", first.GetKind(), first.GetName(), deploy.Namespace)
	}
	seen := map[string]bool{}
	for _, o := range m.objs {
		gvk := o.GroupVersionKind()
		key := gvk.String() + " " + o.GetNamespace() + "/" + o.GetName()
		if gvk.Kind == "" || gvk.Version == "" || o.GetName() == "" {
			t.Errorf("incomplete object %q", key)
		}
		if seen[key] {
			t.Errorf("duplicate object %q", key)
		}
		seen[key] = true
		if o.GetLabels()["app.kubernetes.io/name"] != "gantry" {
			t.Errorf("%s: missing label app.kubernetes.io/name=gantry", key)
		}
		// Every kind client-go knows must convert strictly to its type.
		if obj, err := scheme.Scheme.New(gvk); err == nil {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, obj, true); err != nil {
				t.Errorf("%s: %v", key, err)
			}
		} else if !unknownToClientGo[gvk.Kind] {
			t.Errorf("%s: kind unknown to client-go: %v", key, err)
		}
	}
	// Objects returns fresh copies.
	again := load(t)
	again.objs[0].SetName("changed")
	if load(t).objs[0].GetName() != deploy.Namespace {
		t.Error("Objects returns shared objects")
	}
}

func TestKustomizationListsFiles(t *testing.T) {
	files, err := deploy.Files()
	if err != nil {
		t.Fatal(err)
	}
	checkListed(t, "manifests", files)

	// Only manifests/*.yaml is embedded: subdirectories other than
	// components would be silently missing from Objects.
	entries, err := os.ReadDir("manifests")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "components" {
			t.Errorf("manifests/%s: directories are not embedded", e.Name())
		}
		if !e.IsDir() && !strings.HasSuffix(e.Name(), ".yaml") {
			t.Errorf("manifests/%s: only .yaml files are embedded", e.Name())
		}
	}

	comps, err := os.ReadDir("manifests/components")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		dir := filepath.Join("manifests/components", c.Name())
		k := readKustomization(t, filepath.Join(dir, "kustomization.yaml"))
		if k.Kind != "Component" || k.APIVersion != "kustomize.config.k8s.io/v1alpha1" {
			t.Errorf("%s: %s %s, want a kustomize Component", dir, k.APIVersion, k.Kind)
		}
		checkListed(t, dir, k.Resources)
	}
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Namespace  string   `json:"namespace"`
}

func readKustomization(t *testing.T, file string) kustomization {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := utilyaml.Unmarshal(data, &k); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return k
}

// checkListed requires listed to name every YAML file of dir but the
// kustomization, once each.
func checkListed(t *testing.T, dir string, listed []string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var present []string
	for _, f := range matches {
		if name := filepath.Base(f); name != "kustomization.yaml" {
			present = append(present, name)
		}
	}
	sort.Strings(present)
	got := slices.Clone(listed)
	sort.Strings(got)
	if !slices.Equal(got, present) {
		t.Errorf("%s/kustomization.yaml lists %v, the directory has %v", dir, got, present)
	}
}

func TestBaseSetsNoNamespace(t *testing.T) {
	// A kustomize "namespace:" would also move the kube-system RoleBinding.
	if k := readKustomization(t, "manifests/kustomization.yaml"); k.Namespace != "" {
		t.Errorf("kustomization.yaml sets namespace %q", k.Namespace)
	}
}

func TestNamespaces(t *testing.T) {
	m := load(t)
	if m.find("Namespace", "", deploy.Namespace) == nil {
		t.Errorf("no Namespace %s", deploy.Namespace)
	}
	for _, o := range m.objs {
		kind, ns := o.GetKind(), o.GetNamespace()
		switch {
		case clusterScoped[kind]:
			if ns != "" {
				t.Errorf("cluster-scoped %s %s has namespace %q", kind, o.GetName(), ns)
			}
		case kind == "RoleBinding" && ns == "kube-system":
			rb := typed[rbacv1.RoleBinding](t, o)
			if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != "extension-apiserver-authentication-reader" {
				t.Errorf("RoleBinding kube-system/%s: only the authentication reader belongs in kube-system, got %s %s", rb.Name, rb.RoleRef.Kind, rb.RoleRef.Name)
			}
		case ns != deploy.Namespace:
			t.Errorf("%s %s is in namespace %q, want %q", kind, o.GetName(), ns, deploy.Namespace)
		}
	}
}

func TestAPIServices(t *testing.T) {
	m := load(t)
	svcObj := m.find("Service", deploy.Namespace, deploy.Service)
	if svcObj == nil {
		t.Fatalf("no Service %s/%s", deploy.Namespace, deploy.Service)
	}
	svc := typed[corev1.Service](t, svcObj)
	hasPort := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == deploy.ServicePort })
	if !hasPort {
		t.Errorf("Service %s has no port %d", svc.Name, deploy.ServicePort)
	}

	type spec struct {
		Group                 string `json:"group"`
		Version               string `json:"version"`
		GroupPriorityMinimum  int32  `json:"groupPriorityMinimum"`
		VersionPriority       int32  `json:"versionPriority"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify"`
		CABundle              []byte `json:"caBundle"`
		Service               *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			Port      *int32 `json:"port"`
		} `json:"service"`
	}
	specs := map[string]spec{}
	var names []string
	for _, o := range m.ofKind("APIService") {
		if o.GetAPIVersion() != "apiregistration.k8s.io/v1" {
			t.Errorf("APIService %s: apiVersion %s", o.GetName(), o.GetAPIVersion())
		}
		var s spec
		raw, _, _ := unstructured.NestedMap(o.Object, "spec")
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(raw, &s, true); err != nil {
			t.Errorf("APIService %s: %v", o.GetName(), err)
			continue
		}
		names = append(names, o.GetName())
		specs[o.GetName()] = s
		if want := s.Version + "." + s.Group; o.GetName() != want {
			t.Errorf("APIService %s serves %s/%s, so must be named %s", o.GetName(), s.Group, s.Version, want)
		}
		if s.Service == nil || s.Service.Port == nil {
			t.Errorf("APIService %s: no service or port", o.GetName())
		} else if s.Service.Namespace != svc.Namespace || s.Service.Name != svc.Name || *s.Service.Port != deploy.ServicePort {
			t.Errorf("APIService %s: service %s/%s port %d, want %s/%s port %d", o.GetName(), s.Service.Namespace, s.Service.Name, *s.Service.Port, svc.Namespace, svc.Name, deploy.ServicePort)
		}
		if s.GroupPriorityMinimum <= 0 || s.VersionPriority <= 0 {
			t.Errorf("APIService %s: priorities must be positive", o.GetName())
		}
		// The base leaves trust to an overlay or component.
		if s.InsecureSkipTLSVerify || len(s.CABundle) > 0 {
			t.Errorf("APIService %s: the base sets insecureSkipTLSVerify or caBundle", o.GetName())
		}
	}
	sort.Strings(names)
	want := append(slices.Clone(deploy.APIServices), deploy.DiagnosticsAPIService)
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("APIServices %v, want %v", names, want)
	}
	if v1, v2 := specs["v1beta1.custom.metrics.k8s.io"], specs["v1beta2.custom.metrics.k8s.io"]; v2.VersionPriority <= v1.VersionPriority {
		t.Errorf("custom.metrics.k8s.io: v1beta2 versionPriority %d must be above v1beta1's %d", v2.VersionPriority, v1.VersionPriority)
	}
}

func TestServiceReachesPods(t *testing.T) {
	m := load(t)
	d, c := m.deployment(t)
	podLabels := labels.Set(d.Spec.Template.Labels)

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v (%v)", d.Spec.Selector, podLabels, err)
	}

	svc := typed[corev1.Service](t, m.find("Service", deploy.Namespace, deploy.Service))
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not select the Deployment's pods %v", svc.Spec.Selector, podLabels)
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != deploy.ServicePort {
			continue
		}
		if got := containerPort(c, p.TargetPort); got != deploy.ContainerPort {
			t.Errorf("Service port %d targets %s, which is container port %d, want %d", p.Port, p.TargetPort.String(), got, deploy.ContainerPort)
		}
		if p.Name != "https" {
			t.Errorf("Service port %d is named %q; the ServiceMonitor component scrapes port \"https\"", p.Port, p.Name)
		}
	}

	pdbs := m.ofKind("PodDisruptionBudget")
	if len(pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
	pdb := typed[policyv1.PodDisruptionBudget](t, pdbs[0])
	psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || psel.Empty() || !psel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the Deployment's pods", pdb.Spec.Selector)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1", pdb.Spec.MinAvailable)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("Deployment replicas %v: the PodDisruptionBudget needs at least 2 to allow evictions", d.Spec.Replicas)
	}
}

// containerPort resolves a Service targetPort or probe port against the
// container; 0 if it names no port.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

func TestRBAC(t *testing.T) {
	m := load(t)
	d, _ := m.deployment(t)
	if d.Spec.Template.Spec.ServiceAccountName != deploy.ServiceAccount {
		t.Errorf("Deployment runs as %q, want %q", d.Spec.Template.Spec.ServiceAccountName, deploy.ServiceAccount)
	}
	if m.find("ServiceAccount", deploy.Namespace, deploy.ServiceAccount) == nil {
		t.Fatalf("no ServiceAccount %s/%s", deploy.Namespace, deploy.ServiceAccount)
	}

	// rolesOf collects, for the Gantry service account, the roles bound to
	// it, as "ClusterRole/name" or "Role/namespace/name".
	gantryRoles := map[string]bool{}
	hpaRoles := map[string]bool{}
	check := func(kind, namespace, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		refKey := ref.Kind + "/" + ref.Name
		if ref.Kind == "Role" {
			refKey = ref.Kind + "/" + namespace + "/" + ref.Name
			if !builtinRoles[refKey] && m.find("Role", namespace, ref.Name) == nil {
				t.Errorf("%s %s references missing %s", kind, name, refKey)
			}
		} else if !builtinRoles[refKey] && m.find("ClusterRole", "", ref.Name) == nil {
			t.Errorf("%s %s references missing %s", kind, name, refKey)
		}
		if len(subjects) == 0 {
			t.Errorf("%s %s has no subjects", kind, name)
		}
		for _, s := range subjects {
			switch {
			case s.Kind == "ServiceAccount" && s.Namespace == deploy.Namespace && s.Name == deploy.ServiceAccount:
				gantryRoles[refKey] = true
			case s.Kind == "ServiceAccount" && s.Namespace == "kube-system" && s.Name == "horizontal-pod-autoscaler":
				hpaRoles[refKey] = true
			case s.Kind == "ServiceAccount" && s.Namespace == deploy.Namespace:
				t.Errorf("%s %s binds service account %s, which does not exist", kind, name, s.Name)
			default:
				t.Errorf("%s %s binds unexpected subject %+v", kind, name, s)
			}
		}
	}
	for _, o := range m.ofKind("ClusterRoleBinding") {
		b := typed[rbacv1.ClusterRoleBinding](t, o)
		if b.RoleRef.Kind != "ClusterRole" {
			t.Errorf("ClusterRoleBinding %s references a %s", b.Name, b.RoleRef.Kind)
		}
		check("ClusterRoleBinding", "", b.Name, b.RoleRef, b.Subjects)
	}
	for _, o := range m.ofKind("RoleBinding") {
		b := typed[rbacv1.RoleBinding](t, o)
		check("RoleBinding", b.Namespace, b.Name, b.RoleRef, b.Subjects)
	}
	for _, want := range []string{
		"ClusterRole/gantry-resource-reader",
		"ClusterRole/gantry-metricrules-controller",
		"ClusterRole/gantry-diagnostics-reader",
		"ClusterRole/system:auth-delegator",
		"Role/kube-system/extension-apiserver-authentication-reader",
	} {
		if !gantryRoles[want] {
			t.Errorf("%s is not bound to %s/%s", want, deploy.Namespace, deploy.ServiceAccount)
		}
	}
	if !hpaRoles["ClusterRole/gantry-metrics-reader"] {
		t.Error("ClusterRole/gantry-metrics-reader is not bound to kube-system/horizontal-pod-autoscaler")
	}

	// Least privilege: the manifests' own roles only read, but for
	// Gantry's writes of MetricRule status and events, and the role that
	// lets namespace admins and editors write MetricRules.
	for _, o := range m.ofKind("ClusterRole") {
		r := typed[rbacv1.ClusterRole](t, o)
		for _, rule := range r.Rules {
			for _, v := range rule.Verbs {
				if !writeAllowed(r.Name, rule, v) {
					t.Errorf("ClusterRole %s grants %q on %v %v", r.Name, v, rule.APIGroups, rule.Resources)
				}
			}
		}
	}
	checkMetricRuleRBAC(t, m, deploy.Namespace, deploy.ServiceAccount, "gantry")

	// The metadata informers list and watch pods and nodes (metrics.k8s.io)
	// and whatever the default rules map.
	reader := typed[rbacv1.ClusterRole](t, m.find("ClusterRole", "", "gantry-resource-reader"))
	for _, gr := range []struct{ group, resource string }{
		{"", "pods"}, {"", "nodes"}, {"", "namespaces"}, {"", "services"},
		{"apps", "deployments"}, {"apps", "statefulsets"}, {"apps", "replicasets"},
	} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allows(reader.Rules, gr.group, gr.resource, verb) {
				t.Errorf("gantry-resource-reader does not allow %s %s.%s", verb, gr.resource, gr.group)
			}
		}
	}
	// The kubelet collector scrapes kubelets directly (nodes/metrics). Not
	// through the kube-apiserver's node proxy: get on nodes/proxy reaches
	// all of a kubelet's API, exec included, and only
	// components/kubelet-via-apiserver-proxy grants it, with the flag.
	if !allows(reader.Rules, "", "nodes/metrics", "get") {
		t.Error("gantry-resource-reader does not allow get nodes/metrics")
	}
	for _, o := range m.ofKind("ClusterRole") {
		if r := typed[rbacv1.ClusterRole](t, o); allows(r.Rules, "", "nodes/proxy", "get") {
			t.Errorf("ClusterRole %s grants get on nodes/proxy by default", r.Name)
		}
	}
	metricsReader := typed[rbacv1.ClusterRole](t, m.find("ClusterRole", "", "gantry-metrics-reader"))
	for _, g := range []string{"custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io"} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allows(metricsReader.Rules, g, "anything", verb) {
				t.Errorf("gantry-metrics-reader does not allow %s on %s", verb, g)
			}
		}
	}
}

// writeAllowed says whether a role of the manifests may grant verb through
// rule: reading anything it names, and only these writes: Gantry's own
// status updates of MetricRules and its events, and MetricRules themselves
// in the role that aggregates to admin and edit.
func writeAllowed(role string, rule rbacv1.PolicyRule, verb string) bool {
	if verb == "get" || verb == "list" || verb == "watch" {
		return true
	}
	only := func(groups, resources []string) bool {
		return len(rule.APIGroups) > 0 && len(rule.Resources) > 0 &&
			!slices.ContainsFunc(rule.APIGroups, func(g string) bool { return !slices.Contains(groups, g) }) &&
			!slices.ContainsFunc(rule.Resources, func(r string) bool { return !slices.Contains(resources, r) })
	}
	switch {
	case strings.HasSuffix(role, "metricrules-edit"):
		return only([]string{"gantry.dev"}, []string{"metricrules"})
	case verb == "update" || verb == "patch":
		return only([]string{"gantry.dev"}, []string{"metricrules/status"}) || only([]string{"", "events.k8s.io"}, []string{"events"})
	case verb == "create":
		return only([]string{"", "events.k8s.io"}, []string{"events"})
	}
	return false
}

// checkMetricRuleRBAC checks the roles of MetricRules and the diagnostics
// API in a rendering whose roles are named <prefix>-...: what users get
// through aggregation to the built-in roles, and what the Gantry service
// account gets.
func checkMetricRuleRBAC(t *testing.T, m manifests, namespace, serviceAccount, prefix string) {
	t.Helper()
	type want struct {
		group, resource string
		verbs           []string
		not             []string
	}
	for _, tc := range []struct {
		role      string
		aggregate []string
		grants    []want
	}{
		{"metricrules-edit", []string{"admin", "edit"}, []want{{"gantry.dev", "metricrules", []string{"create", "update", "patch", "delete", "get", "list", "watch"}, nil}, {"gantry.dev", "metricrules/status", nil, []string{"update", "patch"}}}},
		{"metricrules-view", []string{"view"}, []want{{"gantry.dev", "metricrules", []string{"get", "list", "watch"}, []string{"create", "update", "delete"}}}},
		{"diagnostics-view", []string{"view"}, []want{{"diagnostics.gantry.dev", "hpaexplanations", []string{"get"}, nil}, {"diagnostics.gantry.dev", "metricexplanations", []string{"get"}, nil}, {"diagnostics.gantry.dev", "statuses", nil, []string{"get"}}}},
		{"diagnostics-status", nil, []want{{"diagnostics.gantry.dev", "statuses", []string{"get"}, nil}, {"apiregistration.k8s.io", "apiservices", []string{"get", "list"}, nil}}},
	} {
		o := m.find("ClusterRole", "", prefix+"-"+tc.role)
		if o == nil {
			t.Errorf("no ClusterRole %s-%s", prefix, tc.role)
			continue
		}
		r := typed[rbacv1.ClusterRole](t, o)
		var agg []string
		for _, to := range []string{"admin", "edit", "view"} {
			if r.Labels["rbac.authorization.k8s.io/aggregate-to-"+to] == "true" {
				agg = append(agg, to)
			}
		}
		if !slices.Equal(agg, tc.aggregate) {
			t.Errorf("ClusterRole %s aggregates to %v, want %v", r.Name, agg, tc.aggregate)
		}
		for _, w := range tc.grants {
			for _, v := range w.verbs {
				if !allows(r.Rules, w.group, w.resource, v) {
					t.Errorf("ClusterRole %s does not allow %s %s.%s", r.Name, v, w.resource, w.group)
				}
			}
			for _, v := range w.not {
				if allows(r.Rules, w.group, w.resource, v) {
					t.Errorf("ClusterRole %s allows %s %s.%s", r.Name, v, w.resource, w.group)
				}
			}
		}
	}
	rules := grantedTo(t, m, namespace, serviceAccount)
	for _, g := range []struct {
		group, resource string
		verbs           []string
	}{
		{"gantry.dev", "metricrules", []string{"get", "list", "watch"}},
		{"gantry.dev", "metricrules/status", []string{"update", "patch"}},
		{"", "namespaces", []string{"list", "watch"}},
		{"autoscaling", "horizontalpodautoscalers", []string{"get", "list", "watch"}},
		{"apiregistration.k8s.io", "apiservices", []string{"get", "list"}},
		{"apps", "deployments/scale", []string{"get"}},
	} {
		for _, v := range g.verbs {
			if !allows(rules, g.group, g.resource, v) {
				t.Errorf("Gantry's service account %s/%s may not %s %s.%s", namespace, serviceAccount, v, g.resource, g.group)
			}
		}
	}
	// Gantry writes status, never a team's spec.
	for _, v := range []string{"create", "update", "patch", "delete"} {
		if allows(rules, "gantry.dev", "metricrules", v) {
			t.Errorf("Gantry's service account may %s metricrules", v)
		}
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	match := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	// As RBAC reads it, */scale names the scale subresource of every resource.
	matchResource := func(list []string, v string) bool {
		_, sub, ok := strings.Cut(v, "/")
		return match(list, v) || ok && slices.Contains(list, "*/"+sub)
	}
	for _, r := range rules {
		if match(r.APIGroups, group) && matchResource(r.Resources, resource) && match(r.Verbs, verb) && len(r.ResourceNames) == 0 {
			return true
		}
	}
	return false
}

// parseArgs parses a container's args with Gantry's own flag set, as
// cmd/gantry does, so that a misspelt or removed flag fails here.
func parseArgs(t *testing.T, args []string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("gantry", pflag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	srv := adapter.NewServer(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("gantry does not accept the Deployment's args %q: %v\n%s", args, err, out.String())
	}
	if fs.NArg() > 0 {
		t.Errorf("stray arguments %q", fs.Args())
	}
	if err := srv.Options.Validate(); err != nil {
		t.Errorf("args %q: %v", args, err)
	}
	return fs
}

func flagValue(fs *pflag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil && f.Changed {
		return f.Value.String()
	}
	return ""
}

func TestDeployment(t *testing.T) {
	m := load(t)
	d, c := m.deployment(t)
	pod := d.Spec.Template.Spec
	if len(c.Command) > 0 {
		t.Errorf("container sets command %q; the image's entrypoint is /gantry", c.Command)
	}
	if c.Image == "" {
		t.Error("no image")
	}
	fs := parseArgs(t, c.Args)

	if got := flagValue(fs, "secure-port"); got != "6443" || deploy.ContainerPort != 6443 {
		t.Errorf("--secure-port=%s, want %d", got, deploy.ContainerPort)
	}
	if containerPort(c, intstr.FromString("https")) != deploy.ContainerPort {
		t.Errorf("container port \"https\" is not %d", deploy.ContainerPort)
	}
	if flagValue(fs, "prometheus-url") == "" {
		t.Error("no --prometheus-url")
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}

	// --config is a file of the ConfigMap, mounted whole.
	configFile := flagValue(fs, "config")
	if configFile != deploy.ConfigPath {
		t.Errorf("--config=%s, want %s", configFile, deploy.ConfigPath)
	}
	vm, ok := mounts[path.Dir(configFile)]
	if !ok {
		t.Fatalf("nothing is mounted at %s, the directory of --config", path.Dir(configFile))
	}
	if vm.SubPath != "" || !vm.ReadOnly {
		t.Errorf("config mount %+v: want the whole volume, read-only (subPath mounts miss ConfigMap updates)", vm)
	}
	vol := volumes[vm.Name]
	if vol.ConfigMap == nil || vol.ConfigMap.Name != deploy.ConfigMap || len(vol.ConfigMap.Items) > 0 {
		t.Fatalf("volume %q at %s is not the whole ConfigMap %s: %+v", vm.Name, vm.MountPath, deploy.ConfigMap, vol.VolumeSource)
	}
	cm := typed[corev1.ConfigMap](t, m.find("ConfigMap", deploy.Namespace, deploy.ConfigMap))
	if path.Base(configFile) != deploy.ConfigKey || cm.Data[deploy.ConfigKey] == "" {
		t.Errorf("--config names %s, ConfigMap %s has keys %v", path.Base(configFile), cm.Name, slices.Sorted(maps.Keys(cm.Data)))
	}

	// --cert-dir is writable even though the root filesystem is not.
	certDir := flagValue(fs, "cert-dir")
	if certDir == "" {
		t.Error("no --cert-dir")
	} else if vm, ok := mounts[certDir]; !ok || vm.ReadOnly || volumes[vm.Name].EmptyDir == nil {
		t.Errorf("--cert-dir=%s is not a writable emptyDir mount", certDir)
	}

	// Probes: /livez and /readyz over HTTPS on the serving port.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/livez"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Scheme != corev1.URISchemeHTTPS || containerPort(c, g.Port) != deploy.ContainerPort {
			t.Errorf("%s probe %s %s port %s, want %s HTTPS on %d", p.name, g.Scheme, g.Path, g.Port.String(), p.path, deploy.ContainerPort)
		}
	}

	// Resources.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}

	// Security: the restricted Pod Security Standard, plus a read-only root.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod: runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod: seccompProfile is not RuntimeDefault")
	}
	if sc == nil {
		t.Fatal("container: no securityContext")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container: readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container: allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Error("container: capabilities do not drop ALL")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container: privileged")
	}

	// Priority: as metrics-server, with the ResourceQuota that admits it.
	if pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName %q, want system-cluster-critical", pod.PriorityClassName)
	}
	checkPriority(t, m, d)

	// Spread: preferred anti-affinity by hostname against its own pods.
	aa := pod.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Fatal("no preferred pod anti-affinity")
	}
	term := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if term.TopologyKey != "kubernetes.io/hostname" || err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("anti-affinity term %+v does not spread Gantry's pods by hostname", term)
	}
}

func TestNamespaceEnforcesRestricted(t *testing.T) {
	ns := load(t).find("Namespace", "", deploy.Namespace)
	if got := ns.GetLabels()["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace pod-security enforce %q, want restricted", got)
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := deploy.Config()
	if len(cfg) == 0 {
		t.Fatal("empty config")
	}
	file := filepath.Join(t.TempDir(), deploy.ConfigKey)
	if err := os.WriteFile(file, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := checkconfig.CheckFile(context.Background(), file, nil, 0)
	if err != nil {
		t.Fatalf("gantry check-config fails on the default config:\n%v", err)
	}
	if res.Rules == 0 || res.ExternalRules == 0 || !res.ResourceRules {
		t.Errorf("default config: %d rules, %d external rules, resource rules %v; want all three kinds", res.Rules, res.ExternalRules, res.ResourceRules)
	}
	// Config returns a copy.
	cfg[0] = '!'
	if deploy.Config()[0] == '!' {
		t.Error("Config returns shared bytes")
	}
}

// kustomize renders the base with the named components (directories of
// manifests/components) as `kubectl apply -k` on an overlay would, with the
// kubectl `make tools` builds.
func kustomize(t *testing.T, components ...string) manifests {
	t.Helper()
	kubectl, err := toolbin.Path(toolbin.Require(t, "kubectl"), "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Abs("manifests")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	// kustomize wants paths relative to the overlay.
	rel, err := filepath.Rel(overlay, base)
	if err != nil {
		t.Fatal(err)
	}
	rel = filepath.ToSlash(rel)
	k := "resources: [" + rel + "]\n"
	if len(components) > 0 {
		k += "components:\n"
		for _, c := range components {
			k += "  - " + rel + "/components/" + c + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectl, "kustomize", overlay)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize with components %v: %v\n%s", components, err, stderr.String())
	}
	return decodeAll(t, out)
}

// kustomizeCases are the renderings of the base with components, each with
// what must hold of it beyond what every rendering must (checkRendered).
var kustomizeCases = []struct {
	name       string
	components []string
	// removes are the base's objects ("Kind namespace/name") the
	// components take out; every other one must stay.
	removes []string
	check   func(t *testing.T, m manifests)
}{
	{
		name: "base",
		check: func(t *testing.T, m manifests) {
			if got, want := keys(m), keys(load(t)); !slices.Equal(got, want) {
				t.Errorf("kustomize renders\n%v\nObjects returns\n%v", got, want)
			}
		},
	},
	{
		name:       "cert-manager",
		components: []string{"cert-manager"},
		check: func(t *testing.T, m manifests) {
			checkAPIServiceTrust(t, m)
			checkWebhookTrust(t, m)
			if n := len(m.ofKind("ValidatingWebhookConfiguration")); n != 1 {
				t.Errorf("%d ValidatingWebhookConfigurations, want the MetricRule webhook", n)
			}
			for _, o := range m.ofKind("APIService") {
				if o.GetAnnotations()["cert-manager.io/inject-ca-from"] == "" {
					t.Errorf("APIService %s: no cainjector annotation", o.GetName())
				}
			}
			d, c := m.deployment(t)
			fs := parseArgs(t, c.Args)
			if flagValue(fs, "cert-dir") != "" {
				t.Error("--cert-dir is still set next to the issued certificate")
			}
			secret := servingCertSecret(t, m)
			for _, flag := range []string{"tls-cert-file", "tls-private-key-file"} {
				f := flagValue(fs, flag)
				if got, want := fileSource(t, d, c, f), "secret "+secret+"/"+path.Base(f); got != want {
					t.Errorf("--%s=%s is %s, want %s", flag, f, got, want)
				}
			}
			for _, vm := range c.VolumeMounts {
				if vm.MountPath == path.Dir(flagValue(fs, "tls-cert-file")) && !vm.ReadOnly {
					t.Errorf("the serving certificate is mounted writable at %s", vm.MountPath)
				}
			}
		},
	},
	{
		name:       "insecure-skip-tls-verify",
		components: []string{"insecure-skip-tls-verify"},
		removes:    []string{"ValidatingWebhookConfiguration /" + deploy.Webhook},
		check: func(t *testing.T, m manifests) {
			checkAPIServiceTrust(t, m)
			checkWebhookTrust(t, m)
			if n := len(m.ofKind("ValidatingWebhookConfiguration")); n != 0 {
				t.Errorf("%d ValidatingWebhookConfigurations: webhooks cannot skip TLS verification", n)
			}
			for _, o := range m.ofKind("APIService") {
				if v, _, _ := unstructured.NestedBool(o.Object, "spec", "insecureSkipTLSVerify"); !v {
					t.Errorf("APIService %s: insecureSkipTLSVerify not set", o.GetName())
				}
			}
		},
	},
	{
		name:       "servicemonitor with cert-manager",
		components: []string{"cert-manager", "servicemonitor"},
		check: func(t *testing.T, m manifests) {
			if n := len(m.ofKind("ServiceMonitor")); n != 1 {
				t.Errorf("%d ServiceMonitors, want 1", n)
			}
		},
	},
	{
		name:       "backend-secrets",
		components: []string{"backend-secrets"},
		check: func(t *testing.T, m manifests) {
			d, c := m.deployment(t)
			// The ConfigMap's commented backends example, once
			// uncommented, reads its files from the Secret the component
			// mounts.
			cfg, err := config.Parse([]byte(commentedBlock(t, string(deploy.Config()), "backends")), "configmap.yaml example")
			if err != nil {
				t.Fatal(err)
			}
			got := checkBackendFiles(t, d, c, cfg)
			want := []string{"secret gantry-backends/thanos-token", "secret gantry-backends/thanos-ca.crt", "secret gantry-backends/loki-password"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("backend files (-want +got):\n%s", diff)
			}
		},
	},
	{name: "prometheusrule", components: []string{"prometheusrule"}},
	{name: "grafana-dashboards", components: []string{"grafana-dashboards"}},
	{
		name:       "kubelet-via-apiserver-proxy",
		components: []string{"kubelet-via-apiserver-proxy"},
		check: func(t *testing.T, m manifests) {
			_, c := m.deployment(t)
			if flagValue(parseArgs(t, c.Args), "kubelet-via-apiserver-proxy") != "true" {
				t.Error("--kubelet-via-apiserver-proxy is not set")
			}
			// checkRendered checks the grant comes with the flag.
		},
	},
	{
		name:       "networkpolicy",
		components: []string{"networkpolicy"},
		check: func(t *testing.T, m manifests) {
			if n := len(m.ofKind("NetworkPolicy")); n != 1 {
				t.Fatalf("%d NetworkPolicies, want 1", n)
			}
			// The kube-apiserver by address, Prometheus by selectors.
			rules := checkNetworkPolicy(t, m)
			if len(rules) != 2 {
				t.Fatalf("%d ingress rules, want 2 (kube-apiserver, Prometheus)", len(rules))
			}
			for _, p := range rules[0].From {
				if p.IPBlock == nil || p.PodSelector != nil || p.NamespaceSelector != nil {
					t.Errorf("kube-apiserver peer %+v is not an ipBlock", p)
				}
			}
			for _, p := range rules[1].From {
				if p.IPBlock != nil || p.PodSelector == nil || p.NamespaceSelector == nil {
					t.Errorf("Prometheus peer %+v does not select pods in a namespace", p)
				}
			}
		},
	},
}

// TestKustomize renders the base, and the base with each component, with
// kubectl's kustomize: every component must apply, keep the Deployment's
// args valid and hold to what it is for.
func TestKustomize(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range kustomizeCases {
		for _, c := range tc.components {
			covered[c] = true
		}
	}
	comps, err := os.ReadDir("manifests/components")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		if !covered[c.Name()] {
			t.Errorf("component %s is in no kustomizeCases rendering", c.Name())
		}
	}

	baseKeys := keys(load(t))
	for _, tc := range kustomizeCases {
		t.Run(tc.name, func(t *testing.T) {
			m := kustomize(t, tc.components...)
			got := keys(m)
			for _, k := range baseKeys {
				if removed := slices.Contains(tc.removes, k); slices.Contains(got, k) == removed {
					t.Errorf("%s: rendered %v, removed by the components %v", k, !removed, removed)
				}
			}
			checkRendered(t, m)
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}
