// Package e2e drives the real HorizontalPodAutoscaler controller through the
// aggregation layer to Gantry and a real Prometheus, on a local control
// plane with kwok nodes (test/stack). Tests assert on HPA status and
// Deployment replicas, waiting with deadlines and polling.
package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	ns       = "e2e"
	nodeName = "fake-1"
	// waitScale bounds one HPA reaction; measured reactions are 5-30s.
	waitScale = 3 * time.Minute
)

type env struct {
	st     *stack.Stack
	client kubernetes.Interface
	feed   *stack.Feeder
}

// startEnv starts a stack with opts, a fake node, the test namespace and a
// feeder writing every 2s until the test ends. Feeder errors are logged when
// logFeed is set (fault tests stop Prometheus on purpose and leave it off).
func startEnv(t *testing.T, opts stack.Options, logFeed bool) *env {
	t.Helper()
	st := stack.StartT(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	if err := st.Cluster.AddFakeNode(ctx, nodeName, "32", "64Gi"); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, client: st.Cluster.Client(), feed: stack.NewFeeder(st.Prom, 2*time.Second)}
	var onErr func(error)
	if logFeed {
		onErr = func(err error) { t.Logf("feeder: %v", err) }
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.feed.Run(ctx, onErr)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return e
}

func TestE2E(t *testing.T) {
	e := startEnv(t, stack.Options{}, true)

	// Node-level series for metrics.k8s.io NodeMetrics.
	e.feed.SetRate(map[string]string{"__name__": "container_cpu_usage_seconds_total", "id": "/", "node": nodeName}, 1.5)
	e.feed.SetGauge(map[string]string{"__name__": "container_memory_working_set_bytes", "id": "/", "node": nodeName}, 2<<30)

	t.Run("group", func(t *testing.T) {
		t.Run("unauthenticated request is refused", e.testUnauthenticated)
		t.Run("pods metric scales up and down", e.testPodsMetric)
		t.Run("object metric", e.testObjectMetric)
		t.Run("external metric", e.testExternalMetric)
		t.Run("resource metric and kubectl top", e.testResourceMetric)
		t.Run("no data shows ScalingActive=False and recovers", e.testNoData)
	})
	// Sequential after the HPAs: discovery and self-metrics have seen traffic.
	t.Run("discovery through the aggregator", e.testDiscovery)
	t.Run("gantry /metrics counts requests", e.testSelfMetrics)
}

func (e *env) testUnauthenticated(t *testing.T) {
	t.Parallel()
	resp, err := e.st.GantryClient().Get(e.st.GantryURL + "/apis/custom.metrics.k8s.io/v1beta2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Fatalf("anonymous request straight to gantry: %d %s, want 401 or 403", resp.StatusCode, body)
	}
}

// testPodsMetric: per-pod request rate above target scales up to max, then
// below target scales back down to min.
func (e *env) testPodsMetric(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := "pods-rps"
	perPod := newValue(30)
	stop := e.rpsApp(t, name, 1, 1, 4, perPod.get)
	defer stop()
	e.waitReplicas(ctx, t, name, 4, "30 req/s per pod against a target of 10")
	perPod.set(2)
	e.waitReplicas(ctx, t, name, 1, "2 req/s per pod against a target of 10")
}

func (e *env) testObjectMetric(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt(8080)}}, Selector: map[string]string{"app": "web"}},
	}
	if _, err := e.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.feed.SetRate(map[string]string{"__name__": "ingress_requests_total", "namespace": ns, "service": "web"}, 300)
	object := autoscalingv2.CrossVersionObjectReference{Kind: "Service", Name: "web", APIVersion: "v1"}
	cases := []struct {
		name      string
		target    autoscalingv2.MetricTarget
		max, want int32
		why       string
	}{
		// Value: desired = ceil(current × 300/100) → capped at max 3.
		{"object-value", autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: qty("100")}, 3, 3, "300 req/s against a Value target of 100"},
		// AverageValue: desired = ceil(300/75) = 4, below max 6.
		{"object-avg", autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("75")}, 6, 4, "300 req/s against an AverageValue target of 75"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e.deployment(t, tc.name, 1, "")
			e.hpa(t, tc.name, 1, tc.max, autoscalingv2.MetricSpec{
				Type:   autoscalingv2.ObjectMetricSourceType,
				Object: &autoscalingv2.ObjectMetricSource{DescribedObject: object, Metric: autoscalingv2.MetricIdentifier{Name: "ingress_requests_per_second"}, Target: tc.target},
			})
			e.waitReplicas(ctx, t, tc.name, tc.want, tc.why)
		})
	}
}

func (e *env) testExternalMetric(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": "orders"}, 250)
	// Same metric, another queue and another namespace: the selector and
	// the namespace must keep them out.
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": "audit"}, 100000)
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": "elsewhere", "queue": "orders"}, 100000)
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "orders"}}
	cases := []struct {
		name   string
		target autoscalingv2.MetricTarget
		max    int32
		want   int32
		why    string
	}{
		// AverageValue: desired = ceil(250/50) = 5.
		{"external-avg", autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("50")}, 8, 5, "queue depth 250 against an AverageValue target of 50"},
		// Value: desired = ceil(current × 250/100) → capped at 3.
		{"external-value", autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: qty("100")}, 3, 3, "queue depth 250 against a Value target of 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e.deployment(t, tc.name, 1, "")
			e.hpa(t, tc.name, 1, tc.max, autoscalingv2.MetricSpec{
				Type: autoscalingv2.ExternalMetricSourceType,
				External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth", Selector: selector},
					Target: tc.target,
				},
			})
			e.waitReplicas(ctx, t, tc.name, tc.want, tc.why)
			hpa := e.getHPA(ctx, t, tc.name)
			if got := externalValue(hpa); got != "250" {
				t.Errorf("HPA reports external metric %q, want 250 (selector must keep the other queues out)", got)
			}
		})
	}
}

// testResourceMetric: CPU utilization from cAdvisor-shaped series through
// metrics.k8s.io, against the pods' requests; kubectl top prints it.
func (e *env) testResourceMetric(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := "cpu-util"
	e.deployment(t, name, 1, "100m")
	stop := e.feedPods(name, func(pod string) {
		l := map[string]string{"namespace": ns, "pod": pod, "container": "app", "node": nodeName}
		e.feed.SetRate(with(l, "__name__", "container_cpu_usage_seconds_total"), 0.2)
		e.feed.SetGauge(with(l, "__name__", "container_memory_working_set_bytes"), 48<<20)
	})
	defer stop()
	util := int32(50)
	e.hpa(t, name, 1, 4, autoscalingv2.MetricSpec{
		Type: autoscalingv2.ResourceMetricSourceType,
		Resource: &autoscalingv2.ResourceMetricSource{
			Name:   corev1.ResourceCPU,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &util},
		},
	})
	// 200m used of 100m requested = 200% against 50%: desired 4× → max 4.
	e.waitReplicas(ctx, t, name, 4, "200% CPU utilization against a target of 50%")
	if got := e.getHPA(ctx, t, name); resourceUtilization(got) != 200 {
		t.Errorf("HPA reports CPU utilization %d%%, want 200%%", resourceUtilization(got))
	}

	kubectl, err := toolbin.Path(mustBinDir(t), "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	// Pods that just started have series only after the feeder's next
	// write: poll until every ready pod shows, within a deadline.
	pods := e.waitPodsReady(ctx, t, name, 4)
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		out = run(t, kubectl, "--kubeconfig", e.st.Cluster.KubeconfigPath(), "top", "pods", "-n", ns, "-l", "app="+name)
		missing := 0
		for _, p := range pods {
			if !containsLine(out, p, "200m", "48Mi") {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("kubectl top pods: %d of %d pods lack a line with 200m and 48Mi:\n%s", missing, len(pods), out)
			break
		}
		time.Sleep(time.Second)
	}
	out = run(t, kubectl, "--kubeconfig", e.st.Cluster.KubeconfigPath(), "top", "nodes")
	if !containsLine(out, nodeName, "1500m", "2048Mi") {
		t.Errorf("kubectl top nodes: no line for %s with 1500m and 2048Mi:\n%s", nodeName, out)
	}
}

// testNoData: an HPA whose pods have no series reports ScalingActive=False
// with Gantry's reason, and recovers once data arrives.
func (e *env) testNoData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := "no-data"
	e.deployment(t, name, 1, "")
	e.hpa(t, name, 1, 3, autoscalingv2.MetricSpec{
		Type: autoscalingv2.PodsMetricSourceType,
		Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "http_requests_per_second"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("10")},
		},
	})
	e.waitHPA(ctx, t, name, "ScalingActive=False with gantry's no-data reason", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, `no data for metric "http_requests_per_second"`)
	})
	stop := e.feedPods(name, func(pod string) {
		e.feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": ns, "pod": pod}, 5)
	})
	defer stop()
	e.waitHPA(ctx, t, name, "ScalingActive=True once data arrives", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue
	})
}

func (e *env) testDiscovery(t *testing.T) {
	ctx := context.Background()
	rc := e.client.Discovery().RESTClient()
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/apis/custom.metrics.k8s.io/v1beta2", []string{"pods/http_requests_per_second", "namespaces/http_requests_per_second", "services/ingress_requests_per_second"}},
		{"/apis/custom.metrics.k8s.io/v1beta1", []string{"pods/http_requests_per_second"}},
		{"/apis/external.metrics.k8s.io/v1beta1", []string{"queue_depth"}},
		{"/apis/metrics.k8s.io/v1beta1", []string{"pods", "nodes"}},
	} {
		raw, err := rc.Get().AbsPath(tc.path).DoRaw(ctx)
		if err != nil {
			t.Errorf("GET %s through the aggregator: %v", tc.path, err)
			continue
		}
		var list metav1.APIResourceList
		if err := json.Unmarshal(raw, &list); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range list.APIResources {
			have[r.Name] = true
		}
		for _, w := range tc.want {
			if !have[w] {
				t.Errorf("%s does not list %q; it lists %d resources", tc.path, w, len(list.APIResources))
			}
		}
	}
}

func (e *env) testSelfMetrics(t *testing.T) {
	cfg := e.st.Cluster.RESTConfig()
	cert, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	hc := e.st.GantryClient()
	tr := hc.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	hc.Transport = tr
	resp, err := hc.Get(e.st.GantryURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics as admin: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`gantry_requests_total{api="custom.metrics.k8s.io",code="200",metric="http_requests_per_second"}`,
		`gantry_requests_total{api="external.metrics.k8s.io",code="200",metric="queue_depth"}`,
		`gantry_requests_total{api="metrics.k8s.io",code="200",metric="pods"}`,
		`gantry_backend_request_duration_seconds_count{backend="prometheus",call="query",outcome="success"}`,
		`gantry_discovery_metrics{api="custom"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// --- helpers ---

func (e *env) deployment(t *testing.T, name string, replicas int32, cpuRequest string) {
	t.Helper()
	e.deploymentIn(t, ns, name, replicas, cpuRequest)
}

// deploymentIn is deployment in namespace ns.
func (e *env) deploymentIn(t *testing.T, ns, name string, replicas int32, cpuRequest string) {
	t.Helper()
	c := corev1.Container{Name: "app", Image: "registry.invalid/app:1"}
	if cpuRequest != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuRequest), corev1.ResourceMemory: resource.MustParse("64Mi")}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					NodeName:    nodeName, // no scheduler: bind to the kwok node
					Containers:  []corev1.Container{c},
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
	if _, err := e.client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) hpa(t *testing.T, name string, min, max int32, metric autoscalingv2.MetricSpec) {
	t.Helper()
	e.hpaIn(t, ns, name, min, max, metric)
}

// hpaIn is hpa in namespace ns.
func (e *env) hpaIn(t *testing.T, ns, name string, min, max int32, metric autoscalingv2.MetricSpec) {
	t.Helper()
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: name, APIVersion: "apps/v1"},
			MinReplicas:    &min,
			MaxReplicas:    max,
			Metrics:        []autoscalingv2.MetricSpec{metric},
		},
	}
	if _, err := e.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(context.Background(), h, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// rpsApp runs a Deployment whose pods each serve perPod() requests per
// second (http_requests_total, fed while the test runs) and an HPA on
// http_requests_per_second with an AverageValue target of 10 per pod. stop
// ends the feeding.
func (e *env) rpsApp(t *testing.T, name string, replicas, min, max int32, perPod func() float64) (stop func()) {
	t.Helper()
	e.deployment(t, name, replicas, "")
	stop = e.feedPods(name, func(pod string) {
		e.feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": ns, "pod": pod}, perPod())
	})
	e.hpa(t, name, min, max, autoscalingv2.MetricSpec{
		Type: autoscalingv2.PodsMetricSourceType,
		Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "http_requests_per_second"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("10")},
		},
	})
	return stop
}

// feedPods keeps calling set for every pod of the Deployment as pods come
// and go, until the returned stop is called.
func (e *env) feedPods(name string, set func(pod string)) (stop func()) {
	return e.feedNamespacePods(ns, name, set)
}

func (e *env) getHPA(ctx context.Context, t *testing.T, name string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	return e.getHPAIn(ctx, t, ns, name)
}

// getHPAIn is getHPA in namespace ns.
func (e *env) getHPAIn(ctx context.Context, t *testing.T, ns, name string) *autoscalingv2.HorizontalPodAutoscaler {
	t.Helper()
	h, err := e.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitReplicas waits until the HPA wants n replicas and the Deployment has
// them, logging how long the HPA took.
func (e *env) waitReplicas(ctx context.Context, t *testing.T, name string, n int32, why string) {
	t.Helper()
	e.waitReplicasIn(ctx, t, ns, name, n, why)
}

// waitReplicasIn is waitReplicas in namespace ns.
func (e *env) waitReplicasIn(ctx context.Context, t *testing.T, ns, name string, n int32, why string) {
	t.Helper()
	begin := time.Now()
	e.waitHPAIn(ctx, t, ns, name, fmt.Sprintf("%d replicas (%s)", n, why), func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		if h.Status.DesiredReplicas != n {
			return false
		}
		d, err := e.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Spec.Replicas != nil && *d.Spec.Replicas == n
	})
	t.Logf("%s: HPA reached %d replicas in %s (%s)", name, n, time.Since(begin).Round(100*time.Millisecond), why)
}

func (e *env) waitHPA(ctx context.Context, t *testing.T, name, what string, ok func(*autoscalingv2.HorizontalPodAutoscaler) bool) {
	t.Helper()
	e.waitHPAIn(ctx, t, ns, name, what, ok)
}

// waitHPAIn is waitHPA in namespace ns.
func (e *env) waitHPAIn(ctx context.Context, t *testing.T, ns, name, what string, ok func(*autoscalingv2.HorizontalPodAutoscaler) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitScale)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last *autoscalingv2.HorizontalPodAutoscaler
	for {
		h, err := e.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = h
			if ok(h) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("HPA %s: waiting for %s: %v; last status:\n%s", name, what, ctx.Err(), describeHPA(last))
		case <-tick.C:
		}
	}
}

func (e *env) waitPodsReady(ctx context.Context, t *testing.T, name string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		pods, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		var ready []string
		if err == nil {
			for _, p := range pods.Items {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ready = append(ready, p.Name)
					}
				}
			}
		}
		if len(ready) >= n {
			return ready
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pods of %s: %d ready, want %d", name, len(ready), n)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func describeHPA(h *autoscalingv2.HorizontalPodAutoscaler) string {
	if h == nil {
		return "(no HPA read)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  replicas current=%d desired=%d\n", h.Status.CurrentReplicas, h.Status.DesiredReplicas)
	for _, m := range h.Status.CurrentMetrics {
		j, _ := json.Marshal(m)
		fmt.Fprintf(&b, "  metric %s\n", j)
	}
	for _, c := range h.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func condition(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) *autoscalingv2.HorizontalPodAutoscalerCondition {
	for i := range h.Status.Conditions {
		if h.Status.Conditions[i].Type == typ {
			return &h.Status.Conditions[i]
		}
	}
	return nil
}

func externalValue(h *autoscalingv2.HorizontalPodAutoscaler) string {
	for _, m := range h.Status.CurrentMetrics {
		if m.External != nil {
			if m.External.Current.AverageValue != nil {
				// AverageValue targets report value/replicas; recompute the total.
				q := m.External.Current.AverageValue.MilliValue() * int64(h.Status.CurrentReplicas)
				return resource.NewMilliQuantity(q, resource.DecimalSI).String()
			}
			if m.External.Current.Value != nil {
				return m.External.Current.Value.String()
			}
		}
	}
	return ""
}

func resourceUtilization(h *autoscalingv2.HorizontalPodAutoscaler) int32 {
	for _, m := range h.Status.CurrentMetrics {
		if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
			return *m.Resource.Current.AverageUtilization
		}
	}
	return -1
}

func qty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

func with(l map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range l {
		out[a] = b
	}
	return out
}

type value struct {
	mu sync.Mutex
	v  float64
}

func newValue(v float64) *value { return &value{v: v} }
func (v *value) set(x float64)  { v.mu.Lock(); v.v = x; v.mu.Unlock() }
func (v *value) get() float64   { v.mu.Lock(); defer v.mu.Unlock(); return v.v }

func mustBinDir(t *testing.T) string {
	d, err := toolbin.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// containsLine reports whether a line of out holds every field.
func containsLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		all := true
		for _, want := range fields {
			found := false
			for _, got := range f {
				if got == want {
					found = true
				}
			}
			all = all && found
		}
		if all {
			return true
		}
	}
	return false
}
