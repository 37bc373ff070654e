package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	diag "github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// The namespaces of TestExplain: every case lives in explainNS; a user
// allowed there only asks about explainOtherNS.
const (
	explainNS      = "explain-a"
	explainOtherNS = "explain-b"
	// diagnosticsAPIService is Gantry's diagnostics API.
	diagnosticsAPIService = "v1alpha1.diagnostics.gantry.dev"
	externalAPIService    = "v1beta1.external.metrics.k8s.io"
	// healthyLoad is the in-flight requests of the healthy app, spread
	// over its pods; with a target of 10 per pod the HPA settles at 3.
	healthyLoad     = 30
	healthyReplicas = 3
)

// explainRules is Gantry's config in TestExplain: one rule per case, in the
// order the cases are numbered. %s is the URL of the "edge" backend, a
// proxy to the stack's Prometheus that the test takes down.
const explainRules = `backends:
- name: edge
  type: prometheus
  url: %s
rules:
# rules[0]: in-flight requests of each pod (healthy; the selector with no pods).
- seriesQuery: 'inflight_requests{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# rules[1]: maps pod, but the series carry pod_name.
- seriesQuery: 'legacy_inflight{namespace!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# rules[2]: its series have only samples older than the lookback.
- seriesQuery: 'stale_inflight{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
# rules[3]: requests per second through a Service (an Object metric).
- seriesQuery: 'ingress_requests_total{namespace!="",service!=""}'
  resources:
    template: "<<.Resource>>"
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s])) by (<<.GroupBy>>)'
# rules[4]: on the edge backend, which goes down.
- seriesQuery: 'edge_inflight{namespace!="",pod!=""}'
  backend: edge
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
# externalRules[0]: a queue's depth, served through the external metrics API.
- seriesQuery: '{__name__="queue_depth",queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
  resources:
    overrides:
      namespace: {resource: "namespace"}
`

// TestExplain is issue 17 on the real kube-apiserver, HPA controller and
// Prometheus: one stack holds an HPA for each case, kubectl-gantry (built
// by make build) is run as a user runs it, with a kubeconfig, and each
// explanation is checked on its -o json form while the text form goes to
// the test log:
//
//  1. a healthy HPA: OK, and the replica count the explanation computes is
//     the one the HPA controller settled at;
//  2. series labelled pod_name where the rule maps pod;
//  3. no rule for the metric; 4. a rule, but no sample in the lookback;
//  5. the HPA's selector matches no pods; 6. an Object metric asked as Pods;
//  7. the backend of a rule down; 8. an APIService of Gantry unavailable:
//     the external metrics one (its HPA fails, doctor fails) and the
//     diagnostics one (explain and doctor say so);
//  9. a user with RBAC in one namespace asks about another: refused.
//
// doctor -A over all of them lists each with its reason and exits 1.
func TestExplain(t *testing.T) {
	binDir := toolbin.Require(t, "kubectl-gantry")
	edge, err := newSwitchProxy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edge.close)
	e := startEnv(t, stack.Options{
		Rules: fmt.Sprintf(explainRules, edge.url()),
		Cluster: clusterOptionsWith(
			// The shipped gantry-diagnostics-view is aggregated to view by
			// the clusterrole-aggregation controller, which the stack's
			// controller manager does not run by default.
			"--controllers=horizontalpodautoscaling,deployment,replicaset,garbagecollector,namespace,serviceaccount,clusterrole-aggregation",
		),
	}, true)
	edge.setTarget(hostPort(e.st.Prom.URL()))
	x := &explainEnv{env: e, plugin: filepath.Join(binDir, "kubectl-gantry"), home: t.TempDir()}
	x.admin = e.st.Cluster.KubeconfigPath()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, n := range []string{explainNS, explainOtherNS} {
		if err := e.st.EnsureNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	x.waitAPIService(ctx, t, diagnosticsAPIService, true)

	// The cases' workloads and HPAs; series are fed for each app's pods
	// as they come and go.
	stopFeed := x.feedApps(ctx)
	t.Cleanup(stopFeed)
	avg := func(v string) autoscalingv2.MetricTarget {
		return autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty(v)}
	}
	pods := func(metric string) autoscalingv2.MetricSpec {
		return autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: metric}, Target: avg("10"),
		}}
	}
	deploy := func(ns, name string) autoscalingv2.CrossVersionObjectReference {
		e.deploymentIn(t, ns, name, 1, "")
		return autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name}
	}
	x.hpa(ctx, t, explainNS, "web", deploy(explainNS, "web"), 1, 6, pods("inflight_requests"))
	x.hpa(ctx, t, explainNS, "legacy", deploy(explainNS, "legacy"), 1, 3, pods("legacy_inflight"))
	x.hpa(ctx, t, explainNS, "norule", deploy(explainNS, "norule"), 1, 3, pods("checkout_latency_seconds"))
	x.hpa(ctx, t, explainNS, "stale", deploy(explainNS, "stale"), 1, 3, pods("stale_inflight"))
	x.hpa(ctx, t, explainNS, "nopods", x.statefulSet(ctx, t, explainNS, "nopods"), 1, 3, pods("inflight_requests"))
	x.service(ctx, t, explainNS, "wrongtype")
	x.hpa(ctx, t, explainNS, "wrongtype", deploy(explainNS, "wrongtype"), 1, 3, pods("ingress_requests_per_second"))
	x.hpa(ctx, t, explainNS, "edge", deploy(explainNS, "edge"), 1, 3, pods("edge_inflight"))
	x.hpa(ctx, t, explainNS, "queue", deploy(explainNS, "queue"), 1, 5, autoscalingv2.MetricSpec{
		Type: autoscalingv2.ExternalMetricSourceType,
		External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "orders"}}},
			Target: avg("40"),
		},
	})
	x.hpa(ctx, t, explainOtherNS, "web", deploy(explainOtherNS, "web"), 1, 6, pods("inflight_requests"))

	// The stale rule's series: samples of the stale app's pod, ten
	// minutes old, beyond Prometheus' five-minute lookback but within
	// Gantry's --metrics-max-age, so discovery lists the metric.
	stalePod := e.waitNamespacePods(ctx, t, explainNS, "stale", 1)[0]
	var old []prom.Sample
	for i := 12; i >= 10; i-- {
		old = append(old, prom.Sample{
			Labels: map[string]string{"__name__": "stale_inflight", "namespace": explainNS, "pod": stalePod},
			Value:  7, Time: time.Now().Add(-time.Duration(i) * time.Minute),
		})
	}
	if err := e.st.Prom.Write(ctx, old); err != nil {
		t.Fatal(err)
	}

	// The healthy HPA settles at 3 replicas of 10 in-flight requests each;
	// the edge and queue HPAs get their values before their faults.
	x.waitSettled(ctx, t, explainNS, "web", healthyReplicas)
	e.waitHPAIn(ctx, t, explainNS, "edge", "ScalingActive=True on the edge backend before it goes down", scalingActive)
	e.waitHPAIn(ctx, t, explainNS, "queue", "ScalingActive=True on the external metric", scalingActive)

	t.Run("kubectl runs the plugin from PATH as kubectl gantry", func(t *testing.T) { x.testKubectlPlugin(t, binDir) })
	t.Run("1 healthy HPA: OK, and the replicas the HPA settled at", func(t *testing.T) { x.testHealthy(ctx, t) })
	t.Run("doctor of a namespace where all is well exits 0", func(t *testing.T) { x.testDoctorHealthy(t) })
	t.Run("9 a user of one namespace asks about another: refused", func(t *testing.T) { x.testRBAC(ctx, t) })

	// The faults: the edge backend down, the external metrics APIService
	// pointed at a closed port.
	edge.down()
	deadPort := explainDeadPort(t)
	restoreExternal := x.patchAPIServicePort(ctx, t, externalAPIService, deadPort)
	x.waitAPIService(ctx, t, externalAPIService, false)

	cases := []struct {
		num, hpa, name string
		check          func(t *testing.T, h *diag.HPAExplanation)
	}{
		{"2", "legacy", "series labelled pod_name where the rule maps pod", checkOtherLabel},
		{"3", "norule", "no rule for the metric", checkNoRule},
		{"4", "stale", "rule exists but no data in the lookback", checkStale},
		{"5", "nopods", "the HPA's selector matches no pods", checkNoPods},
		{"6", "wrongtype", "Object metric asked as Pods", checkWrongType},
		{"7", "edge", "backend down", func(t *testing.T, h *diag.HPAExplanation) { checkBackendDown(t, h, edge) }},
		{"8", "queue", "external metrics APIService unavailable", checkAPIServiceDown},
	}
	for _, tc := range cases {
		t.Run(tc.num+" "+tc.name, func(t *testing.T) {
			h := x.waitExplain(ctx, t, x.admin, explainNS, tc.hpa, diag.StatusFail)
			x.logText(t, x.admin, "explain", "hpa", tc.hpa, "-n", explainNS)
			tc.check(t, h)
			if t.Failed() {
				j, _ := json.MarshalIndent(h, "", "  ")
				t.Logf("explain hpa %s -n %s -o json:\n%s", tc.hpa, explainNS, j)
			}
		})
	}

	t.Run("doctor -A lists every case with its reason and exits 1", func(t *testing.T) { x.testDoctor(ctx, t) })

	restoreExternal()
	x.waitAPIService(ctx, t, externalAPIService, true)
	t.Run("8 diagnostics APIService unavailable: explain and doctor say so", func(t *testing.T) { x.testDiagnosticsDown(ctx, t) })
}

// explainEnv is TestExplain's stack and plugin.
type explainEnv struct {
	*env
	plugin string
	// home is the plugin's $HOME (its discovery cache).
	home string
	// admin is the cluster admin's kubeconfig.
	admin string
}

// --- the cases ---

func (x *explainEnv) testHealthy(ctx context.Context, t *testing.T) {
	h := x.explain(t, x.admin, explainNS, "web")
	x.logText(t, x.admin, "explain", "hpa", "web", "-n", explainNS)
	hpa := x.getHPAIn(ctx, t, explainNS, "web")
	if h.Diagnosis.Status != diag.StatusOK {
		t.Errorf("diagnosis %s: %s, want OK", h.Diagnosis.Status, h.Diagnosis.Reason)
	}
	if len(h.Metrics) != 1 {
		t.Fatalf("%d metric explanations, want 1", len(h.Metrics))
	}
	m := h.Metrics[0]
	if m.Diagnosis.Status != diag.StatusOK {
		t.Errorf("metric diagnosis %s: %s", m.Diagnosis.Status, m.Diagnosis.Reason)
	}
	if m.API.APIService != "v1beta2.custom.metrics.k8s.io" && m.API.APIService != "v1beta1.custom.metrics.k8s.io" || !m.API.Available || !m.API.ServedByGantry {
		t.Errorf("API %+v, want a custom metrics APIService, Available and served by Gantry", m.API)
	}
	if m.Rule == nil || !strings.HasPrefix(m.Rule.ID, "rules[0]") || m.Rule.Origin != diag.RuleOriginConfig || m.Rule.Backend != "prometheus" {
		t.Errorf("rule %+v, want rules[0] of the config file on backend prometheus", m.Rule)
	}
	if m.Discovery == nil || !m.Discovery.Listed {
		t.Errorf("discovery %+v, want the metric listed", m.Discovery)
	}
	if m.Query == nil || !strings.Contains(m.Query.Text, "inflight_requests") || !strings.Contains(m.Query.Text, explainNS) {
		t.Errorf("query %+v, want inflight_requests with the namespace filled in", m.Query)
	}
	if m.Result == nil || m.Result.Error != "" || m.Result.Series < healthyReplicas {
		t.Errorf("result %+v, want a series of each of the %d pods, without error", m.Result, healthyReplicas)
	}
	if m.Objects == nil || m.Objects.Matched != healthyReplicas || m.Objects.WithValue != healthyReplicas {
		t.Errorf("objects %+v, want %d pods matched, all with a value", m.Objects, healthyReplicas)
	}
	if m.Value == nil || !m.Value.Found || !sameQuantity(m.Value.Value, "10") {
		t.Errorf("value %+v, want 10 (%d in flight over %d pods)", m.Value, healthyLoad, healthyReplicas)
	}
	// What the HPA does with it: what the controller did.
	if m.HPA == nil || m.HPA.Replicas == nil {
		t.Fatalf("no HPA computation: %+v", m.HPA)
	}
	if *m.HPA.Replicas != hpa.Status.DesiredReplicas || !m.HPA.WithinTolerance {
		t.Errorf("the metric proposes %d replicas (ratio %v, within tolerance %v); the HPA controller settled at %d",
			*m.HPA.Replicas, deref(m.HPA.Ratio), m.HPA.WithinTolerance, hpa.Status.DesiredReplicas)
	}
	if h.Replicas == nil {
		t.Fatal("no replica computation over the HPA's metrics")
	}
	if h.Replicas.Bounded != hpa.Status.DesiredReplicas || h.Replicas.HPADesired != hpa.Status.DesiredReplicas || hpa.Status.DesiredReplicas != healthyReplicas {
		t.Errorf("explanation computes %d (proposed %d) and reads the HPA's desired as %d; the HPA controller settled at %d, want all %d",
			h.Replicas.Bounded, h.Replicas.Proposed, h.Replicas.HPADesired, hpa.Status.DesiredReplicas, healthyReplicas)
	}
	if h.HPA.CurrentReplicas != hpa.Status.CurrentReplicas || h.HPA.Selector != "app=web" {
		t.Errorf("HPA summary %+v, want currentReplicas %d and selector app=web", h.HPA, hpa.Status.CurrentReplicas)
	}
}

func checkOtherLabel(t *testing.T, h *diag.HPAExplanation) {
	m := onlyMetric(t, h)
	if m.Rule == nil || !strings.HasPrefix(m.Rule.ID, "rules[1]") {
		t.Errorf("rule %+v, want rules[1]", m.Rule)
	}
	if m.Objects == nil || m.Objects.WithValue != 0 || len(m.Objects.Items) == 0 {
		t.Fatalf("objects %+v, want the pod without a value", m.Objects)
	}
	it := m.Objects.Items[0]
	if it.Reason != diag.NoValueOtherLabel || !strings.Contains(it.Message, "pod_name") {
		t.Errorf("pod %s: %s %q, want %s naming pod_name", it.Name, it.Reason, it.Message, diag.NoValueOtherLabel)
	}
	if !strings.Contains(h.Diagnosis.Reason+h.Diagnosis.Hint, "pod_name") {
		t.Errorf("diagnosis %+v does not name pod_name", h.Diagnosis)
	}
}

func checkNoRule(t *testing.T, h *diag.HPAExplanation) {
	m := onlyMetric(t, h)
	if m.Rule != nil {
		t.Errorf("rule %+v, want none", m.Rule)
	}
	if !containsFold(h.Diagnosis.Reason, "no rule") {
		t.Errorf("diagnosis reason %q, want it to say no rule serves the metric", h.Diagnosis.Reason)
	}
}

func checkStale(t *testing.T, h *diag.HPAExplanation) {
	m := onlyMetric(t, h)
	if m.Rule == nil || !strings.HasPrefix(m.Rule.ID, "rules[2]") {
		t.Errorf("rule %+v, want rules[2]", m.Rule)
	}
	if m.Discovery == nil || !m.Discovery.Listed {
		t.Errorf("discovery %+v, want the metric listed (its series are within --metrics-max-age)", m.Discovery)
	}
	if m.Objects == nil || m.Objects.WithValue != 0 || len(m.Objects.Items) == 0 {
		t.Fatalf("objects %+v, want the pod without a value", m.Objects)
	}
	if it := m.Objects.Items[0]; it.Reason != diag.NoValueStale {
		t.Errorf("pod %s: %s %q, want %s", it.Name, it.Reason, it.Message, diag.NoValueStale)
	}
	if it := m.Objects.Items[0]; it.Age == nil || it.Age.Duration < 9*time.Minute {
		t.Errorf("pod %s: sample age %v, want the ten minutes the test wrote", it.Name, it.Age)
	}
}

func checkNoPods(t *testing.T, h *diag.HPAExplanation) {
	m := onlyMetric(t, h)
	if h.HPA.Selector != "app=nopods" {
		t.Errorf("HPA selector %q (%s), want app=nopods from the StatefulSet's scale subresource", h.HPA.Selector, h.HPA.SelectorError)
	}
	if m.Objects == nil || m.Objects.Matched != 0 {
		t.Errorf("objects %+v, want no pod matched", m.Objects)
	}
	if !containsFold(h.Diagnosis.Reason, "no pod") {
		t.Errorf("diagnosis reason %q, want it to say the selector matches no pods", h.Diagnosis.Reason)
	}
}

func checkWrongType(t *testing.T, h *diag.HPAExplanation) {
	m := onlyMetric(t, h)
	if text := h.Diagnosis.Reason + " " + h.Diagnosis.Hint; !containsFold(text, "object metric") {
		t.Errorf("diagnosis %+v, want it to say to ask for an Object metric", h.Diagnosis)
	}
	if m.Discovery == nil || m.Discovery.Listed {
		t.Fatalf("discovery %+v, want ingress_requests_per_second not listed for pods", m.Discovery)
	}
	services := false
	for _, s := range m.Discovery.Similar {
		services = services || strings.Contains(s, "services")
	}
	if !services {
		t.Errorf("discovery: similar metrics %q, want ingress_requests_per_second of services among them", m.Discovery.Similar)
	}
}

func checkBackendDown(t *testing.T, h *diag.HPAExplanation, edge *switchProxy) {
	m := onlyMetric(t, h)
	if m.Rule == nil || !strings.HasPrefix(m.Rule.ID, "rules[4]") || m.Rule.Backend != "edge" {
		t.Errorf("rule %+v, want rules[4] on backend edge", m.Rule)
	}
	if m.Result == nil || m.Result.Error == "" {
		t.Errorf("result %+v, want the backend's error", m.Result)
	}
	if !strings.Contains(h.Diagnosis.Reason, "edge") {
		t.Errorf("diagnosis reason %q does not name the backend edge", h.Diagnosis.Reason)
	}
	// The backend by name only: never its address.
	raw, _ := json.Marshal(h)
	if bytes.Contains(raw, []byte(edge.addr())) {
		t.Errorf("the explanation holds the backend's address %s", edge.addr())
	}
}

func checkAPIServiceDown(t *testing.T, h *diag.HPAExplanation) {
	m := onlyMetric(t, h)
	if m.API.APIService != externalAPIService || m.API.Available || !m.API.Found {
		t.Errorf("API %+v, want %s found and not Available", m.API, externalAPIService)
	}
	if !strings.Contains(h.Diagnosis.Reason, externalAPIService) {
		t.Errorf("diagnosis reason %q does not name %s", h.Diagnosis.Reason, externalAPIService)
	}
}

// testKubectlPlugin runs kubectl gantry explain through kubectl, which
// finds kubectl-gantry on PATH.
func (x *explainEnv) testKubectlPlugin(t *testing.T, binDir string) {
	kubectl, err := toolbin.Path(binDir, "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// kubectl takes no flags before a plugin's name: the kubeconfig
	// comes from $KUBECONFIG, as for most users.
	cmd := exec.CommandContext(ctx, kubectl, "gantry", "explain", "hpa", "web", "-n", explainNS, "-o", "json")
	cmd.Env = append(os.Environ(), "HOME="+x.home, "KUBECONFIG="+x.admin, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl gantry explain hpa web: %v\n%s%s", err, out, stderr.String())
	}
	var h diag.HPAExplanation
	if err := json.Unmarshal(out, &h); err != nil || h.Kind != diag.KindHPAExplanation || h.Name != "web" {
		t.Errorf("kubectl gantry explain hpa web -o json: %v (kind %q, name %q)\n%s", err, h.Kind, h.Name, out)
	}
}

// testRBAC: a ServiceAccount with the built-in view role in explainNS
// only (which the shipped gantry-diagnostics-view is aggregated to)
// explains its own HPA, and is refused the same HPA name in explainOtherNS,
// which the admin explains.
func (x *explainEnv) testRBAC(ctx context.Context, t *testing.T) {
	client := x.client
	x.waitAggregatedToView(ctx, t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: explainNS}}
	if _, err := client.CoreV1().ServiceAccounts(explainNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "alice-view", Namespace: explainNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: explainNS, Name: sa.Name}},
	}
	if _, err := client.RbacV1().RoleBindings(explainNS).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	alice := x.userKubeconfig(ctx, t, sa)

	// Allowed in explainNS (RBAC may take a moment to see the binding).
	var own pluginResult
	waitFor(ctx, t, time.Minute, "alice to explain an HPA of her namespace", func() bool {
		own = x.run(t, alice, "explain", "hpa", "web", "-n", explainNS, "-o", "json")
		return own.code == 0
	})
	var h diag.HPAExplanation
	if err := json.Unmarshal([]byte(own.stdout), &h); err != nil || h.Name != "web" || h.Namespace != explainNS {
		t.Fatalf("alice's explanation of %s/web: %v\n%s", explainNS, err, own.stdout)
	}
	// The admin explains explainOtherNS's web: there is something to refuse.
	if h := x.explain(t, x.admin, explainOtherNS, "web"); h.Name != "web" || h.Namespace != explainOtherNS {
		t.Fatalf("admin's explanation of %s/web names %s/%s", explainOtherNS, h.Namespace, h.Name)
	}

	r := x.run(t, alice, "explain", "hpa", "web", "-n", explainOtherNS)
	t.Logf("$ kubectl gantry explain hpa web -n %s   (as %s/alice, view in %s only)\nexit %d\n%s%s", explainOtherNS, explainNS, explainNS, r.code, r.stdout, r.stderr)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	out := r.stdout + r.stderr
	if !containsFold(out, "forbidden") && !containsFold(out, "permission") {
		t.Errorf("output does not say the request was refused:\n%s", out)
	}
	if !strings.Contains(out, explainOtherNS) || !strings.Contains(out, "hpaexplanations") {
		t.Errorf("output does not name what was refused (hpaexplanations in %s):\n%s", explainOtherNS, out)
	}
	if strings.Contains(out, "inflight_requests") || strings.Contains(out, "rules[0]") {
		t.Errorf("the refusal shows something of %s's HPA:\n%s", explainOtherNS, out)
	}
	r = x.run(t, alice, "explain", "hpa", "web", "-n", explainOtherNS, "-o", "json")
	if r.code != 1 || strings.Contains(r.stdout, "inflight_requests") {
		t.Errorf("-o json as alice in %s: exit %d, stdout %q, want exit 1 and nothing of the HPA", explainOtherNS, r.code, r.stdout)
	}
}

// testDoctorHealthy runs doctor on explainOtherNS before any fault: only
// OK and WARN, exit 0, so that the exit 1 of the broken cases is theirs.
func (x *explainEnv) testDoctorHealthy(t *testing.T) {
	r := x.run(t, x.admin, "doctor", "-n", explainOtherNS)
	t.Logf("$ kubectl gantry doctor -n %s\nexit %d\n%s%s", explainOtherNS, r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Errorf("doctor -n %s: exit %d, want 0", explainOtherNS, r.code)
	}
	rep := parseDoctor(t, x.run(t, x.admin, "doctor", "-n", explainOtherNS, "-o", "json").stdout)
	if d, ok := rep.hpa(explainOtherNS, "web"); !ok || d.Status != diag.StatusOK {
		t.Errorf("doctor -n %s: HPA web %+v (listed %v), want OK", explainOtherNS, d, ok)
	}
	for _, c := range rep.Cluster {
		if c.Status == diag.StatusFail {
			t.Errorf("doctor -n %s: %s %s FAIL: %s", explainOtherNS, c.Check, c.Subject, c.Reason)
		}
	}
}

// testDoctor runs doctor -A with every case in place: it exits 1 and lists
// each HPA with its status and reason.
func (x *explainEnv) testDoctor(ctx context.Context, t *testing.T) {
	r := x.run(t, x.admin, "doctor", "-A")
	t.Logf("$ kubectl gantry doctor -A\nexit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 1 {
		t.Errorf("doctor -A: exit %d, want 1", r.code)
	}
	text := r.stdout
	r = x.run(t, x.admin, "doctor", "-A", "-o", "json")
	if r.code != 1 {
		t.Errorf("doctor -A -o json: exit %d, want 1\n%s", r.code, r.stderr)
	}
	rep := parseDoctor(t, r.stdout)
	if rep.Status != diag.StatusFail {
		t.Errorf("doctor -A: status %s, want FAIL", rep.Status)
	}
	want := map[string]diag.DiagnosisStatus{
		explainNS + "/web":       diag.StatusOK,
		explainNS + "/legacy":    diag.StatusFail,
		explainNS + "/norule":    diag.StatusFail,
		explainNS + "/stale":     diag.StatusFail,
		explainNS + "/nopods":    diag.StatusFail,
		explainNS + "/wrongtype": diag.StatusFail,
		explainNS + "/edge":      diag.StatusFail,
		explainNS + "/queue":     diag.StatusFail,
		explainOtherNS + "/web":  diag.StatusOK,
	}
	for key, status := range want {
		ns, name, _ := strings.Cut(key, "/")
		got, ok := rep.hpa(ns, name)
		if !ok {
			t.Errorf("doctor -A does not list HPA %s", key)
			continue
		}
		if got.Status != status {
			t.Errorf("HPA %s: %s %q, want %s", key, got.Status, got.Reason, status)
		}
		if status != diag.StatusOK && got.Reason == "" {
			t.Errorf("HPA %s: %s without a reason", key, got.Status)
		}
	}
	// The cluster checks: the external metrics APIService is down.
	if c, ok := rep.findCheck(externalAPIService); !ok || c.Status != diag.StatusFail {
		t.Errorf("doctor -A: the check of %s is %+v (found %v), want FAIL", externalAPIService, c, ok)
	}
	// The text names each failing HPA.
	for key, status := range want {
		if status == diag.StatusFail && !strings.Contains(text, strings.SplitN(key, "/", 2)[1]) {
			t.Errorf("doctor -A text does not mention %s", key)
		}
	}
}

// testDiagnosticsDown points the diagnostics APIService at a closed port:
// explain cannot reach Gantry and says which APIService is unavailable, and
// doctor fails on it. Then it is restored.
func (x *explainEnv) testDiagnosticsDown(ctx context.Context, t *testing.T) {
	restore := x.patchAPIServicePort(ctx, t, diagnosticsAPIService, explainDeadPort(t))
	defer func() {
		restore()
		x.waitAPIService(ctx, t, diagnosticsAPIService, true)
		// Back: explanations are served again.
		waitFor(ctx, t, time.Minute, "explain to work again once the APIService is restored", func() bool {
			return x.run(t, x.admin, "explain", "hpa", "web", "-n", explainNS, "-o", "json").code == 0
		})
	}()
	x.waitAPIService(ctx, t, diagnosticsAPIService, false)

	r := x.run(t, x.admin, "explain", "hpa", "web", "-n", explainNS)
	t.Logf("$ kubectl gantry explain hpa web -n %s   (APIService %s on a closed port)\nexit %d\n%s%s", explainNS, diagnosticsAPIService, r.code, r.stdout, r.stderr)
	if r.code != 1 {
		t.Errorf("explain: exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stdout+r.stderr, diagnosticsAPIService) {
		t.Errorf("explain does not name the unavailable APIService %s", diagnosticsAPIService)
	}
	r = x.run(t, x.admin, "doctor", "-n", explainNS)
	t.Logf("$ kubectl gantry doctor -n %s   (APIService %s on a closed port)\nexit %d\n%s%s", explainNS, diagnosticsAPIService, r.code, r.stdout, r.stderr)
	if r.code != 1 {
		t.Errorf("doctor: exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stdout+r.stderr, diagnosticsAPIService) {
		t.Errorf("doctor does not name the unavailable APIService %s", diagnosticsAPIService)
	}
	r = x.run(t, x.admin, "doctor", "-n", explainNS, "-o", "json")
	if c, ok := parseDoctor(t, r.stdout).findCheck(diagnosticsAPIService); !ok || c.Status != diag.StatusFail {
		t.Errorf("doctor -o json: the check of %s is %+v (found %v), want FAIL", diagnosticsAPIService, c, ok)
	}
}

// --- doctor's report ---

// doctorReport is what the test reads of doctor -o json (kind
// DoctorReport): each HPA's worst diagnosis by namespace/name, and the
// cluster checks.
type doctorReport struct {
	Kind   string               `json:"kind"`
	Status diag.DiagnosisStatus `json:"status"`
	// Cluster are the checks of Gantry itself.
	Cluster []doctorCheck `json:"cluster"`
	// HPAs has one entry per metric of every HPA in scope.
	HPAs []struct {
		Namespace string               `json:"namespace"`
		HPA       string               `json:"hpa"`
		Metric    string               `json:"metric"`
		Status    diag.DiagnosisStatus `json:"status"`
		Reason    string               `json:"reason"`
	} `json:"hpas"`
}

type doctorCheck struct {
	Check   string               `json:"check"`
	Subject string               `json:"subject"`
	Status  diag.DiagnosisStatus `json:"status"`
	Reason  string               `json:"reason"`
}

// hpa is the worst status of the HPA's entries, with its reason.
func (r doctorReport) hpa(ns, name string) (diag.Diagnosis, bool) {
	var d diag.Diagnosis
	found := false
	for _, h := range r.HPAs {
		if h.Namespace != ns || h.HPA != name {
			continue
		}
		if !found || statusRank(h.Status) > statusRank(d.Status) {
			d = diag.Diagnosis{Status: h.Status, Reason: h.Reason}
		}
		found = true
	}
	return d, found
}

// findCheck is the cluster check of subject.
func (r doctorReport) findCheck(subject string) (doctorCheck, bool) {
	for _, c := range r.Cluster {
		if c.Subject == subject {
			return c, true
		}
	}
	return doctorCheck{}, false
}

func statusRank(s diag.DiagnosisStatus) int {
	switch s {
	case diag.StatusOK:
		return 0
	case diag.StatusWarn:
		return 1
	}
	return 2
}

// parseDoctor reads doctor -o json.
func parseDoctor(t *testing.T, out string) doctorReport {
	t.Helper()
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Kind != "DoctorReport" {
		t.Fatalf("doctor -o json: %v (kind %q)\n%s", err, rep.Kind, out)
	}
	return rep
}

// --- the plugin ---

type pluginResult struct {
	stdout, stderr string
	code           int
}

// run runs kubectl-gantry with a kubeconfig, as a user would.
func (x *explainEnv) run(t *testing.T, kubeconfig string, args ...string) pluginResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, x.plugin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+x.home, "KUBECONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := pluginResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		r.code = exit.ExitCode()
	default:
		t.Fatalf("kubectl-gantry %s: %v\n%s%s", strings.Join(args, " "), err, r.stdout, r.stderr)
	}
	return r
}

// logText runs a command for its text output and puts it in the test log.
func (x *explainEnv) logText(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	r := x.run(t, kubeconfig, args...)
	t.Logf("$ kubectl gantry %s\nexit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r.stdout
}

// explain runs explain hpa -o json and decodes it.
func (x *explainEnv) explain(t *testing.T, kubeconfig, ns, name string) *diag.HPAExplanation {
	t.Helper()
	r := x.run(t, kubeconfig, "explain", "hpa", name, "-n", ns, "-o", "json")
	if r.code != 0 {
		t.Fatalf("explain hpa %s -n %s: exit %d\n%s%s", name, ns, r.code, r.stdout, r.stderr)
	}
	var h diag.HPAExplanation
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		t.Fatalf("explain hpa %s -n %s -o json: %v\n%s", name, ns, err, r.stdout)
	}
	if h.Kind != diag.KindHPAExplanation {
		t.Errorf("explain hpa -o json: kind %q, want %s", h.Kind, diag.KindHPAExplanation)
	}
	return &h
}

// waitExplain explains an HPA until its diagnosis is status (the faults
// take a relist or a cache TTL to show), and returns the last explanation;
// if it never is, the test is marked failed and goes on, so that the
// explanation can be shown and checked.
func (x *explainEnv) waitExplain(ctx context.Context, t *testing.T, kubeconfig, ns, name string, status diag.DiagnosisStatus) *diag.HPAExplanation {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		h := x.explain(t, kubeconfig, ns, name)
		if h.Diagnosis.Status == status {
			return h
		}
		select {
		case <-ctx.Done():
			t.Errorf("explain hpa %s/%s: %s %q after 90s, want %s", ns, name, h.Diagnosis.Status, h.Diagnosis.Reason, status)
			return h
		case <-time.After(time.Second):
		}
	}
}

// userKubeconfig writes a kubeconfig holding a token of the ServiceAccount.
func (x *explainEnv) userKubeconfig(ctx context.Context, t *testing.T, sa *corev1.ServiceAccount) string {
	t.Helper()
	expiry := int64(3600)
	tr, err := x.client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: x.st.Cluster.URL(), CertificateAuthorityData: x.st.Cluster.CAPEM()}
	kc.AuthInfos[sa.Name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts[sa.Name] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa.Name, Namespace: sa.Namespace}
	kc.CurrentContext = sa.Name
	path := filepath.Join(t.TempDir(), sa.Name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// --- the cluster ---

func clusterOptionsWith(controllerManagerFlags ...string) cluster.Options {
	return cluster.Options{ControllerManagerFlags: controllerManagerFlags}
}

func (x *explainEnv) hpa(ctx context.Context, t *testing.T, ns, name string, target autoscalingv2.CrossVersionObjectReference, min, max int32, metric autoscalingv2.MetricSpec) {
	t.Helper()
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: target,
			MinReplicas:    &min,
			MaxReplicas:    max,
			Metrics:        []autoscalingv2.MetricSpec{metric},
		},
	}
	if _, err := x.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// statefulSet creates a StatefulSet of one replica. The stack runs no
// StatefulSet controller, so it never has a pod: its selector matches none.
func (x *explainEnv) statefulSet(ctx context.Context, t *testing.T, ns, name string) autoscalingv2.CrossVersionObjectReference {
	t.Helper()
	one := int32(1)
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
			},
		},
	}
	if _, err := x.client.AppsV1().StatefulSets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: name}
}

func (x *explainEnv) service(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": name}},
	}
	if _, err := x.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// feedApps writes the series of every case while the test runs: each
// second it lists the pods of the apps and sets their gauges, and stops
// writing the series of pods that are gone. The healthy app's load is
// spread over its pods.
func (x *explainEnv) feedApps(ctx context.Context) (stop func()) {
	x.feed.SetRate(map[string]string{"__name__": "ingress_requests_total", "namespace": explainNS, "service": "wrongtype"}, 50)
	x.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": explainNS, "queue": "orders"}, 120)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fed := map[string]map[string]string{} // series key → labels
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			now := map[string]map[string]string{}
			set := func(labels map[string]string, v float64) {
				x.feed.SetGauge(labels, v)
				now[fmt.Sprint(labels)] = labels
			}
			for _, ns := range []string{explainNS, explainOtherNS} {
				pods, err := x.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					continue
				}
				byApp := map[string][]string{}
				for _, p := range pods.Items {
					if p.DeletionTimestamp == nil {
						byApp[p.Labels["app"]] = append(byApp[p.Labels["app"]], p.Name)
					}
				}
				for app, names := range byApp {
					for _, pod := range names {
						l := map[string]string{"namespace": ns, "pod": pod}
						switch {
						case app == "web" && ns == explainNS:
							set(with(l, "__name__", "inflight_requests"), healthyLoad/float64(len(names)))
						case app == "web":
							set(with(l, "__name__", "inflight_requests"), 10)
						case app == "legacy":
							set(map[string]string{"__name__": "legacy_inflight", "namespace": ns, "pod_name": pod}, 5)
						case app == "norule":
							set(with(l, "__name__", "checkout_latency_seconds"), 0.25)
						case app == "edge":
							set(with(l, "__name__", "edge_inflight"), 4)
						}
					}
				}
			}
			for k, l := range fed {
				if _, ok := now[k]; !ok {
					x.feed.Remove(l)
				}
			}
			fed = now
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// waitSettled waits until the HPA has settled at n replicas: desired and
// current n, the Deployment at n, the metric read from every pod, and the
// same for three HPA syncs in a row.
func (x *explainEnv) waitSettled(ctx context.Context, t *testing.T, ns, name string, n int32) {
	t.Helper()
	begin := time.Now()
	var stableSince time.Time
	x.waitHPAIn(ctx, t, ns, name, fmt.Sprintf("to settle at %d replicas", n), func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		d, err := x.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		ok := err == nil && h.Status.DesiredReplicas == n && h.Status.CurrentReplicas == n &&
			d.Spec.Replicas != nil && *d.Spec.Replicas == n && d.Status.ReadyReplicas == n && scalingActive(h)
		if ok {
			for _, m := range h.Status.CurrentMetrics {
				ok = ok && m.Pods != nil && m.Pods.Current.AverageValue != nil && sameQuantity(m.Pods.Current.AverageValue.String(), "10")
			}
		}
		if !ok {
			stableSince = time.Time{}
			return false
		}
		if stableSince.IsZero() {
			stableSince = time.Now()
		}
		return time.Since(stableSince) >= 15*time.Second
	})
	t.Logf("%s/%s: settled at %d replicas after %s", ns, name, n, time.Since(begin).Round(100*time.Millisecond))
}

func scalingActive(h *autoscalingv2.HorizontalPodAutoscaler) bool {
	c := condition(h, autoscalingv2.ScalingActive)
	return c != nil && c.Status == corev1.ConditionTrue
}

var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

func (x *explainEnv) dynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(x.st.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// waitAPIService waits until the APIService's Available condition is
// available.
func (x *explainEnv) waitAPIService(ctx context.Context, t *testing.T, name string, available bool) {
	t.Helper()
	want := map[bool]string{true: "True", false: "False"}[available]
	dyn := x.dynamic(t)
	poll(ctx, t, 2*time.Minute, fmt.Sprintf("APIService %s Available=%s", name, want), func() (bool, string) {
		obj, err := dyn.Resource(apiServicesGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Available" {
				return m["status"] == want, fmt.Sprintf("%v: %v", m["status"], m["message"])
			}
		}
		return false, "no Available condition"
	})
}

// patchAPIServicePort points the APIService at port and returns what puts
// it back.
func (x *explainEnv) patchAPIServicePort(ctx context.Context, t *testing.T, name string, port int) (restore func()) {
	t.Helper()
	ri := x.dynamic(t).Resource(apiServicesGVR)
	obj, err := ri.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	was, _, _ := unstructured.NestedInt64(obj.Object, "spec", "service", "port")
	patch := func(p int64) error {
		_, err := ri.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"service":{"port":`+strconv.FormatInt(p, 10)+`}}}`), metav1.PatchOptions{})
		return err
	}
	if err := patch(int64(port)); err != nil {
		t.Fatal(err)
	}
	t.Logf("APIService %s: port %d → %d (closed)", name, was, port)
	return func() {
		if err := patch(was); err != nil {
			t.Errorf("restoring APIService %s: %v", name, err)
		}
	}
}

// waitAggregatedToView waits until the view ClusterRole holds the shipped
// gantry-diagnostics-view rule (the clusterrole-aggregation controller).
func (x *explainEnv) waitAggregatedToView(ctx context.Context, t *testing.T) {
	t.Helper()
	waitFor(ctx, t, time.Minute, "gantry-diagnostics-view to be aggregated to view", func() bool {
		role, err := x.client.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, r := range role.Rules {
			for _, g := range r.APIGroups {
				if g == diag.GroupName {
					return true
				}
			}
		}
		return false
	})
}

// explainDeadPort is a loopback port nothing listens on.
func explainDeadPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// --- the edge backend ---

// switchProxy is a TCP proxy on loopback in front of a backend, which the
// test takes down for good: its port then refuses connections, as a
// stopped backend's does, and open connections are cut.
type switchProxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

func newSwitchProxy() (*switchProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &switchProxy{ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *switchProxy) addr() string { return p.ln.Addr().String() }
func (p *switchProxy) url() string  { return "http://" + p.addr() }

func (p *switchProxy) setTarget(hostPort string) {
	p.mu.Lock()
	p.target = hostPort
	p.mu.Unlock()
}

func (p *switchProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target, closed := p.target, p.closed
		if !closed {
			p.conns[c] = true
		}
		p.mu.Unlock()
		if closed || target == "" {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.forget(c)
			b, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[b] = true
			p.mu.Unlock()
			defer p.forget(b)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
			<-done
		}()
	}
}

func (p *switchProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// down closes the port and every connection through it.
func (p *switchProxy) down() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
}

func (p *switchProxy) close() {
	p.down()
	p.wg.Wait()
}

// --- small helpers ---

func onlyMetric(t *testing.T, h *diag.HPAExplanation) diag.Explanation {
	t.Helper()
	if len(h.Metrics) != 1 {
		t.Fatalf("%d metric explanations, want 1", len(h.Metrics))
	}
	if h.Diagnosis.Status != diag.StatusFail || h.Metrics[0].Diagnosis.Status != diag.StatusFail {
		t.Errorf("diagnosis %s (metric: %s), want FAIL", h.Diagnosis.Status, h.Metrics[0].Diagnosis.Status)
	}
	if h.Diagnosis.Reason == "" || strings.Contains(h.Diagnosis.Reason, "\n") {
		t.Errorf("diagnosis reason %q, want one line", h.Diagnosis.Reason)
	}
	return h.Metrics[0]
}

// poll calls ok every second until it holds, failing the test after within
// with the last state ok described.
func poll(ctx context.Context, t *testing.T, within time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		done, last := ok()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: not within %s; last: %s", what, within, last)
		case <-time.After(time.Second):
		}
	}
}

func containsFold(s, substr string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(substr))
}

// sameQuantity reports whether two quantities are equal to the milli-unit.
func sameQuantity(a, b string) bool {
	qa, errA := resource.ParseQuantity(a)
	qb, errB := resource.ParseQuantity(b)
	return errA == nil && errB == nil && qa.MilliValue() == qb.MilliValue()
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
