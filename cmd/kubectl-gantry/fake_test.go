package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

// fakeAPI is a kube-apiserver for the plugin's requests: the objects it
// serves by path, the paths that answer 403 or 503, and the requests seen.
type fakeAPI struct {
	t *testing.T

	mu        sync.Mutex
	objects   map[string]any // path → object, served as JSON
	forbidden map[string]bool
	// forbiddenDetails are the details of a path's 403 (the refused
	// resource); without, the Status has none.
	forbiddenDetails map[string]*metav1.StatusDetails
	// unavailable paths answer 503 as the aggregator does for an
	// APIService without endpoints.
	unavailable map[string]bool
	requests    []string // path?query
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{t: t, objects: map[string]any{}, forbidden: map[string]bool{}, unavailable: map[string]bool{},
		forbiddenDetails: map[string]*metav1.StatusDetails{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.serveDiscovery()
	return f, srv
}

// serveDiscovery answers kubectl's discovery for a few resources, enough
// to resolve --resource as kubectl does (short names, groups, scope).
func (f *fakeAPI) serveDiscovery() {
	f.set("/version", map[string]string{"major": "1", "minor": "37", "gitVersion": "v1.37.2"})
	f.set("/api", &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
	f.set("/api/v1", &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "v1",
		APIResources: []metav1.APIResource{
			{Name: "pods", Kind: "Pod", Namespaced: true, ShortNames: []string{"po"}, Verbs: metav1.Verbs{"get", "list"}},
			{Name: "services", Kind: "Service", Namespaced: true, ShortNames: []string{"svc"}, Verbs: metav1.Verbs{"get", "list"}},
			{Name: "nodes", Kind: "Node", Namespaced: false, ShortNames: []string{"no"}, Verbs: metav1.Verbs{"get", "list"}},
		}})
	f.set("/apis", &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{{
		Name:             "apps",
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: "apps/v1", Version: "v1"}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: "apps/v1", Version: "v1"},
	}}})
	f.set("/apis/apps/v1", &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "apps/v1",
		APIResources: []metav1.APIResource{
			{Name: "deployments", Kind: "Deployment", Namespaced: true, ShortNames: []string{"deploy"}, Verbs: metav1.Verbs{"get", "list"}},
		}})
}

func (f *fakeAPI) set(path string, obj any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[path] = obj
}

func (f *fakeAPI) forbid(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forbidden[path] = true
}

func (f *fakeAPI) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	// Every request carries the client's timeout; the rest is what the
	// plugin asked.
	q := r.URL.Query()
	q.Del("timeout")
	seen := r.URL.Path
	if len(q) > 0 {
		seen += "?" + q.Encode()
	}
	f.requests = append(f.requests, seen)
	obj, ok := f.objects[r.URL.Path]
	forbidden := f.forbidden[r.URL.Path]
	details := f.forbiddenDetails[r.URL.Path]
	unavailable := f.unavailable[r.URL.Path]
	f.mu.Unlock()
	switch {
	case forbidden:
		writeStatus(w, metav1.Status{Status: "Failure", Reason: metav1.StatusReasonForbidden, Code: 403, Details: details,
			Message: fmt.Sprintf("%s is forbidden: User \"alice\" cannot get it", r.URL.Path)})
	case unavailable:
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	case !ok:
		writeStatus(w, metav1.Status{Status: "Failure", Reason: metav1.StatusReasonNotFound, Code: 404,
			Message: "the server could not find the requested resource"})
	default:
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(obj); err != nil {
			f.t.Errorf("encoding %s: %v", r.URL.Path, err)
		}
	}
}

func writeStatus(w http.ResponseWriter, st metav1.Status) {
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}

// writeKubeconfig writes a kubeconfig with one context per server, named
// by the map's keys, each with its own default namespace (the context's
// name with "-ns"); the first key is the current context.
func writeKubeconfig(t *testing.T, current string, servers map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Config\ncurrent-context: " + current + "\nclusters:\n")
	for name, url := range servers {
		fmt.Fprintf(&b, "- name: %s\n  cluster:\n    server: %s\n", name, url)
	}
	b.WriteString("users:\n- name: alice\n  user:\n    token: t0ken\ncontexts:\n")
	for name := range servers {
		fmt.Fprintf(&b, "- name: %s\n  context:\n    cluster: %s\n    user: alice\n    namespace: %s-ns\n", name, name, name)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testNow is the time the golden outputs count "ago" from.
var testNow = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

type result struct {
	code           int
	stdout, stderr string
}

// runPlugin runs the plugin against a kubeconfig, as kubectl would.
func runPlugin(t *testing.T, kubeconfig string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	all := append([]string{"--kubeconfig", kubeconfig, "--cache-dir", t.TempDir()}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, all, &out, &errOut, func() time.Time { return testNow })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// Paths the plugin reads.
const (
	apiServicesPath = "/apis/apiregistration.k8s.io/v1/apiservices"
	statusPath      = diagnosticsPrefix + "/statuses/gantry"
)

func hpaExplanationPath(ns, name string) string {
	return diagnosticsPrefix + "/namespaces/" + ns + "/hpaexplanations/" + name
}

func hpaListPath(ns string) string {
	if ns == "" {
		return "/apis/autoscaling/v2/horizontalpodautoscalers"
	}
	return "/apis/autoscaling/v2/namespaces/" + ns + "/horizontalpodautoscalers"
}

func metricRulesPath(ns string) string {
	if ns == "" {
		return "/apis/gantry.dev/v1alpha1/metricrules"
	}
	return "/apis/gantry.dev/v1alpha1/namespaces/" + ns + "/metricrules"
}

func ts(d time.Duration) *metav1.Time { t := metav1.NewTime(testNow.Add(-d)); return &t }

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// healthyMetric is the explanation of a Pods metric Gantry serves well.
func healthyMetric(ns string) v1alpha1.Explanation {
	ratio := 1.5
	return v1alpha1.Explanation{
		Request: v1alpha1.MetricRequest{Type: v1alpha1.MetricTypePods, Metric: "http_requests_per_second", Namespace: ns,
			Resource: "pods", LabelSelector: "app=web",
			Path: "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/http_requests_per_second?labelSelector=app%3Dweb"},
		API: v1alpha1.APIInfo{Group: "custom.metrics.k8s.io", Version: "v1beta2", APIService: "v1beta2.custom.metrics.k8s.io",
			Found: true, Available: true, Reason: "Passed", Service: "gantry/gantry", ServedByGantry: true},
		Rule: &v1alpha1.RuleInfo{ID: "rules[0] (http_requests)", Origin: v1alpha1.RuleOriginConfig, ConfigFile: "/etc/gantry/config.yaml",
			Backend: "prometheus", Series: "http_requests_total", SeriesQuery: `{__name__="http_requests_total"}`,
			ResourceLabel: "pod", NamespaceLabel: "namespace", Window: dur(time.Minute)},
		Discovery: &v1alpha1.DiscoveryInfo{Listed: true, LastSuccess: ts(20 * time.Second), Interval: dur(time.Minute)},
		Query: &v1alpha1.QueryInfo{Backend: "prometheus", Language: "promql", Form: "objects",
			Text: `sum(rate(http_requests_total{namespace="` + ns + `",pod=~"web-1|web-2"}[1m])) by (pod)`, Time: metav1.NewTime(testNow)},
		Result: &v1alpha1.QueryResult{Series: 2, DurationMilliseconds: 4, Samples: []v1alpha1.Sample{
			{Labels: map[string]string{"namespace": ns, "pod": "web-1"}, Value: "2", Age: metav1.Duration{Duration: 5 * time.Second}, Timestamp: metav1.NewTime(testNow.Add(-5 * time.Second))},
			{Labels: map[string]string{"namespace": ns, "pod": "web-2"}, Value: "1", Age: metav1.Duration{Duration: 5 * time.Second}, Timestamp: metav1.NewTime(testNow.Add(-5 * time.Second))},
		}},
		Objects: &v1alpha1.ObjectsInfo{Selector: "app=web", Matched: 2, WithValue: 2, Items: []v1alpha1.ObjectValue{
			{Name: "web-1", Value: "2", Age: dur(5 * time.Second)}, {Name: "web-2", Value: "1", Age: dur(5 * time.Second)}}},
		Cache: &v1alpha1.CacheInfo{Enabled: true, TTL: dur(15 * time.Second), Hit: true, Age: dur(3 * time.Second)},
		Value: &v1alpha1.ServedValue{Found: true, Value: "1500m", Count: 2, Timestamp: ts(5 * time.Second)},
		HPA: &v1alpha1.HPAComputation{TargetType: v1alpha1.TargetAverageValue, Target: "1", Current: "1500m", Ratio: &ratio,
			Tolerance: 0.1, CurrentReplicas: 2, ReadyPods: 2, Replicas: ptr.To[int32](3), HPACurrent: "1500m"},
		Diagnosis: v1alpha1.Diagnosis{Status: v1alpha1.StatusOK, Reason: "served from 2 of 2 pods; the HPA proposes 3 replicas"},
	}
}

// podNameMetric is a metric whose series carry pod_name, not pod.
func podNameMetric(ns string) v1alpha1.Explanation {
	e := healthyMetric(ns)
	e.Request.Metric = "queue_depth"
	e.Result = &v1alpha1.QueryResult{Series: 0, DurationMilliseconds: 3}
	e.Objects = &v1alpha1.ObjectsInfo{Selector: "app=web", Matched: 2, WithValue: 0, Items: []v1alpha1.ObjectValue{
		{Name: "web-1", Reason: v1alpha1.NoValueOtherLabel, Message: `series carry "pod_name", not "pod"`},
		{Name: "web-2", Reason: v1alpha1.NoValueOtherLabel, Message: `series carry "pod_name", not "pod"`}}}
	e.Cache = &v1alpha1.CacheInfo{Enabled: true, TTL: dur(15 * time.Second)}
	e.Value = &v1alpha1.ServedValue{Found: false, Error: `no data for metric "queue_depth" on pods in namespace "` + ns + `"`}
	e.HPA = &v1alpha1.HPAComputation{TargetType: v1alpha1.TargetAverageValue, Target: "10", Tolerance: 0.1, CurrentReplicas: 2}
	e.Diagnosis = v1alpha1.Diagnosis{Status: v1alpha1.StatusFail,
		Reason: `no pod has a value: the series carry "pod_name" where rules[0] maps "pod"`,
		Hint:   `map the label in the rule: resources.overrides: {pod_name: {resource: pod}}`}
	return e
}

func hpaExplanation(ns, name string, metrics ...v1alpha1.Explanation) *v1alpha1.HPAExplanation {
	e := &v1alpha1.HPAExplanation{
		TypeMeta:   metav1.TypeMeta{Kind: v1alpha1.KindHPAExplanation, APIVersion: v1alpha1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		HPA: v1alpha1.HPASummary{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: name, APIVersion: "apps/v1"},
			MinReplicas:    1, MaxReplicas: 10, Selector: "app=web", CurrentReplicas: 2, DesiredReplicas: 3,
			LastScaleTime: ts(2 * time.Minute),
			Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{
				{Type: autoscalingv2.ScalingActive, Status: corev1.ConditionTrue, Reason: "ValidMetricFound", Message: "the HPA was able to successfully calculate a replica count from pods metric http_requests_per_second"},
			},
		},
		Metrics: metrics,
	}
	worst := v1alpha1.Diagnosis{Status: v1alpha1.StatusOK, Reason: "every metric is served"}
	for _, m := range metrics {
		if severity(m.Diagnosis.Status) > severity(worst.Status) {
			worst = m.Diagnosis
		}
		if m.HPA != nil && m.HPA.Replicas != nil {
			e.Replicas = &v1alpha1.ReplicaComputation{Proposed: *m.HPA.Replicas, Bounded: *m.HPA.Replicas, HPADesired: 3}
		}
	}
	e.Diagnosis = worst
	return e
}

func apiServiceObj(name, group, svcNS, svcName string, available bool) map[string]any {
	status := "True"
	reason := "Passed"
	msg := "all checks passed"
	if !available {
		status, reason, msg = "False", "MissingEndpoints", "endpoints for service/gantry in \"gantry\" have no addresses with port name \"https\""
	}
	spec := map[string]any{"group": group, "version": strings.SplitN(name, ".", 2)[0]}
	if svcName != "" {
		spec["service"] = map[string]any{"namespace": svcNS, "name": svcName}
	}
	return map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
		"status":   map[string]any{"conditions": []any{map[string]any{"type": "Available", "status": status, "reason": reason, "message": msg}}},
	}
}

// list is a list of kind (e.g. HorizontalPodAutoscalerList) in its API version.
func list(kind string, items ...any) map[string]any {
	if items == nil {
		items = []any{}
	}
	apiVersion := map[string]string{
		"APIServiceList":              "apiregistration.k8s.io/v1",
		"HorizontalPodAutoscalerList": "autoscaling/v2",
		"MetricRuleList":              "gantry.dev/v1alpha1",
		"DeploymentList":              "apps/v1",
	}[kind]
	return map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{}, "items": items}
}

// healthyCluster fills f with a Gantry that is well: its five APIServices
// Available, two ready replicas, a loaded config, one Ready MetricRule,
// and one HPA per namespace given, each with one healthy metric.
func healthyCluster(f *fakeAPI, namespaces ...string) {
	var svcs []any
	for _, name := range append([]string{diagnosticsAPIService}, metricsAPIServices...) {
		group := strings.SplitN(name, ".", 2)[1]
		svcs = append(svcs, apiServiceObj(name, group, "gantry", "gantry", true))
	}
	f.set(apiServicesPath, list("APIServiceList", svcs...))
	f.set("/apis/apiregistration.k8s.io/v1/apiservices/"+diagnosticsAPIService, svcs[0])
	f.set("/api/v1/namespaces/gantry/services/gantry", &corev1.Service{
		TypeMeta:   metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "gantry", Namespace: "gantry"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app.kubernetes.io/name": "gantry"}},
	})
	f.set("/apis/apps/v1/namespaces/gantry/deployments", &appsv1.DeploymentList{
		TypeMeta: metav1.TypeMeta{Kind: "DeploymentList", APIVersion: "apps/v1"},
		Items: []appsv1.Deployment{{
			ObjectMeta: metav1.ObjectMeta{Name: "gantry", Namespace: "gantry"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "gantry", "pod-template-hash": "abc"}}}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 2},
		}, {
			ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: "gantry"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "other"}}}},
		}},
	})
	f.set(statusPath, &v1alpha1.GantryStatus{
		TypeMeta:  metav1.TypeMeta{Kind: v1alpha1.KindGantryStatus, APIVersion: v1alpha1.SchemeGroupVersion.String()},
		Config:    v1alpha1.ConfigStatus{File: "/etc/gantry/config.yaml", Rules: 3, ExternalRules: 1},
		Discovery: v1alpha1.DiscoveryStatus{Ready: true, LastSuccess: ts(20 * time.Second), CustomMetrics: 12, ExternalMetrics: 2},
		Backends:  []v1alpha1.BackendStatus{{Name: "prometheus", Up: true}},
		Diagnosis: v1alpha1.Diagnosis{Status: v1alpha1.StatusOK, Reason: "serving"},
	})
	var allHPAs []any
	for _, ns := range namespaces {
		hpa := map[string]any{"metadata": map[string]any{"name": "web", "namespace": ns}}
		allHPAs = append(allHPAs, hpa)
		f.set(hpaListPath(ns), list("HorizontalPodAutoscalerList", hpa))
		f.set(hpaExplanationPath(ns, "web"), hpaExplanation(ns, "web", healthyMetric(ns)))
		f.set(metricRulesPath(ns), list("MetricRuleList", metricRule(ns, "web", true)))
	}
	f.set(hpaListPath(""), list("HorizontalPodAutoscalerList", allHPAs...))
	var allRules []any
	for _, ns := range namespaces {
		allRules = append(allRules, metricRule(ns, "web", true))
	}
	f.set(metricRulesPath(""), list("MetricRuleList", allRules...))
}

func metricRule(ns, name string, ready bool) map[string]any {
	readyStatus, reason, message := "True", "Discovered", ""
	if !ready {
		readyStatus, reason, message = "False", "NoSeries", "spec.rules[0]: seriesQuery matches no series"
	}
	return map[string]any{
		"apiVersion": "gantry.dev/v1alpha1", "kind": "MetricRule",
		"metadata": map[string]any{"name": name, "namespace": ns, "generation": 2},
		"status": map[string]any{
			"observedGeneration": 2, "message": message,
			"conditions": []any{
				map[string]any{"type": "Accepted", "status": "True", "reason": "Compiled"},
				map[string]any{"type": "Ready", "status": readyStatus, "reason": reason, "message": message},
			},
		},
	}
}
