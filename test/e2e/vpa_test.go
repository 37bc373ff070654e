package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/vpa"
)

// VPA's --use-external-metrics mode asks external.metrics.k8s.io for these
// metrics (--external-metrics-cpu-metric, --external-metrics-memory-metric).
const (
	vpaCPUMetric    = "vpa_container_cpu_cores"
	vpaMemoryMetric = "vpa_container_memory_bytes"
	// vpaWait bounds one wait for the recommender; measured: the first
	// recommendation in 6-7s, a rise followed in about 30s.
	vpaWait = 2 * time.Minute
)

// vpaExternalRules answer what the VPA recommender asks in
// --use-external-metrics mode: for every pod of a VPA,
//
//	GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>?labelSelector=<VPA's pod selector>,pod=<pod>
//
// and it reads one item per container, the container's name in the `name`
// label (its --container-name-label) and the usage as the value (cores,
// bytes). cAdvisor's series carry the namespace and the pod but not the
// pod's own labels, which are in the selector too, so the queries match on
// namespace and pod (which name exactly one pod) rather than on every
// requirement of the selector.
const vpaExternalRules = `# VPA recommender, --use-external-metrics: per-container usage of one pod,
# the container name in the "name" label.
- seriesQuery: 'container_cpu_usage_seconds_total{namespace!="",pod!="",container!=""}'
  name:
    matches: "^container_cpu_usage_seconds_total$"
    as: "` + vpaCPUMetric + `"
  resources:
    overrides:
      namespace: {resource: "namespace"}
  metricsQuery: 'sum by (pod, name) (label_replace(rate(<<.Series>>{namespace=~"<<index .LabelValuesByName "namespace">>",pod=~"<<index .LabelValuesByName "pod">>",container!=""}[30s]), "name", "$1", "container", "(.+)"))'
- seriesQuery: 'container_memory_working_set_bytes{namespace!="",pod!="",container!=""}'
  name:
    matches: "^container_memory_working_set_bytes$"
    as: "` + vpaMemoryMetric + `"
  resources:
    overrides:
      namespace: {resource: "namespace"}
  metricsQuery: 'max by (pod, name) (label_replace(<<.Series>>{namespace=~"<<index .LabelValuesByName "namespace">>",pod=~"<<index .LabelValuesByName "pod">>",container!=""}, "name", "$1", "container", "(.+)"))'
`

// TestVPA runs the real VPA recommender against Gantry: a
// VerticalPodAutoscaler gets a recommendation that follows the CPU and
// memory usage the test sets, read through metrics.k8s.io (resourceRules)
// and, in a second recommender, through external.metrics.k8s.io
// (--use-external-metrics, externalRules).
func TestVPA(t *testing.T) {
	rules := strings.Replace(stack.DefaultRules, "externalRules:\n", "externalRules:\n"+vpaExternalRules, 1)
	if rules == stack.DefaultRules {
		t.Fatal("stack.DefaultRules has no externalRules section to extend")
	}
	e := startEnv(t, stack.Options{Rules: rules}, true)
	t.Run("group", func(t *testing.T) {
		t.Run("recommendation from metrics.k8s.io", e.testVPAResourceMetrics)
		t.Run("recommendation from external metrics", e.testVPAExternalMetrics)
	})
}

func (e *env) testVPAResourceMetrics(t *testing.T) {
	t.Parallel()
	const ns = "vpa-resource"
	e.vpaScenario(t, ns, vpa.Options{Namespace: ns}, func(ctx context.Context, t *testing.T) {
		// Only metrics.k8s.io: Gantry counts the recommender's PodMetrics
		// lists (kubectl top and the HPA are not used in this test).
		x := e.gantryMetrics(ctx, t, e.st.GantryURL)
		if n := x.sum("gantry_requests_total", `api="metrics.k8s.io"`, `code="200"`, `metric="pods"`); n == 0 {
			t.Errorf("gantry served no PodMetrics to the recommender (gantry_requests_total{api=\"metrics.k8s.io\",code=\"200\",metric=\"pods\"} = 0)")
		}
	})
}

func (e *env) testVPAExternalMetrics(t *testing.T) {
	t.Parallel()
	const ns = "vpa-external"
	opts := vpa.Options{Namespace: ns, ExternalCPUMetric: vpaCPUMetric, ExternalMemoryMetric: vpaMemoryMetric}
	e.vpaScenario(t, ns, opts, func(ctx context.Context, t *testing.T) {
		x := e.gantryMetrics(ctx, t, e.st.GantryURL)
		for _, m := range []string{vpaCPUMetric, vpaMemoryMetric} {
			if n := x.sum("gantry_requests_total", `api="external.metrics.k8s.io"`, `code="200"`, `metric="`+m+`"`); n == 0 {
				t.Errorf("gantry served no external metric %s to the recommender", m)
			}
		}
	})
}

// vpaScenario runs a two-pod Deployment whose container "app" uses 200m CPU
// and 300Mi memory, a recommender with opts, and a VPA (updateMode Off) on
// the Deployment; it waits for a recommendation near the usage, raises the
// usage to 600m and 600Mi, and waits for the recommendation to follow. check
// runs at the end, for what only one source can show.
func (e *env) vpaScenario(t *testing.T, ns string, opts vpa.Options, check func(context.Context, *testing.T)) {
	ctx := context.Background()
	const name = "web"
	if err := e.st.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	e.vpaDeployment(t, ns, name, 2)
	cpu, mem := newValue(0.2), newValue(300<<20)
	stop := e.feedNamespacePods(ns, name, func(pod string) {
		l := map[string]string{"namespace": ns, "pod": pod, "container": "app", "node": nodeName}
		e.feed.SetRate(with(l, "__name__", "container_cpu_usage_seconds_total"), cpu.get())
		e.feed.SetGauge(with(l, "__name__", "container_memory_working_set_bytes"), mem.get())
	})
	defer stop()

	pods := e.waitNamespacePods(ctx, t, ns, name, 2)
	if opts.ExternalCPUMetric != "" {
		// The request the recommender makes, through the aggregator.
		e.checkVPAExternalRequest(ctx, t, ns, "app="+name, pods[0], 0.2)
	}

	opts.Kubeconfig = e.st.Cluster.KubeconfigPath()
	rec := vpa.StartT(t, opts)
	dyn, err := dynamic.NewForConfig(e.st.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if _, err := dyn.Resource(vpa.GVR).Namespace(ns).Create(ctx, vpa.New(ns, name, name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := e.waitRecommendation(ctx, t, dyn, ns, name, "a target near 200m CPU and 300Mi memory", func(r vpa.ContainerRecommendation) bool {
		return inRange(r.Target, corev1.ResourceCPU, 0.2) && inRange(r.Target, corev1.ResourceMemory, 300<<20)
	})
	t.Logf("%s: first recommendation in %s for 200m CPU, 300Mi memory: target cpu=%s memory=%s (lower %s/%s, upper %s/%s)", ns,
		time.Since(begin).Round(100*time.Millisecond), r.Target.Cpu(), r.Target.Memory(),
		r.LowerBound.Cpu(), r.LowerBound.Memory(), r.UpperBound.Cpu(), r.UpperBound.Memory())

	cpu.set(0.6)
	mem.set(600 << 20)
	begin = time.Now()
	// Memory follows at the next loop (the recommender keeps the peak);
	// CPU once the 30s rate window has moved and the new usage holds more
	// than a tenth of the samples (target at the 90th percentile).
	e.waitRecommendation(ctx, t, dyn, ns, name, "a memory target near 600Mi", func(r vpa.ContainerRecommendation) bool {
		return inRange(r.Target, corev1.ResourceMemory, 600<<20)
	})
	memTook := time.Since(begin)
	r = e.waitRecommendation(ctx, t, dyn, ns, name, "a target near 600m CPU and 600Mi memory", func(r vpa.ContainerRecommendation) bool {
		return inRange(r.Target, corev1.ResourceCPU, 0.6) && inRange(r.Target, corev1.ResourceMemory, 600<<20)
	})
	t.Logf("%s: recommendation followed the rise to 600m CPU, 600Mi memory: memory in %s, CPU in %s: target cpu=%s memory=%s (lower %s/%s, upper %s/%s)", ns,
		memTook.Round(100*time.Millisecond), time.Since(begin).Round(100*time.Millisecond), r.Target.Cpu(), r.Target.Memory(),
		r.LowerBound.Cpu(), r.LowerBound.Memory(), r.UpperBound.Cpu(), r.UpperBound.Memory())

	ok, failed, err := rec.MetricsClientResponses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: recommender metrics fetches: %v ok, %v failed", ns, ok, failed)
	if ok == 0 {
		t.Errorf("the recommender counts no successful metrics fetch")
	}
	check(ctx, t)
}

// inRange reports whether the recommended quantity is the usage plus the
// recommender's safety margin (15%), allowing for its histogram buckets (5%
// wide) and for samples taken while a rate was still rising: between 1.05
// and 1.35 times usage.
func inRange(l corev1.ResourceList, res corev1.ResourceName, usage float64) bool {
	q, ok := l[res]
	if !ok {
		return false
	}
	v := q.AsApproximateFloat64()
	return v >= 1.05*usage && v <= 1.35*usage
}

// waitRecommendation polls the VPA until its recommendation for container
// "app" satisfies ok, and returns it.
func (e *env) waitRecommendation(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns, name, what string, ok func(vpa.ContainerRecommendation) bool) vpa.ContainerRecommendation {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, vpaWait)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := "no VPA read"
	for {
		obj, err := dyn.Resource(vpa.GVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			s, err := vpa.StatusOf(obj)
			if err != nil {
				t.Fatal(err)
			}
			last = s.String()
			if r, found := s.For("app"); found && ok(r) {
				return r
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("VPA %s/%s: waiting for %s: %v; last status: %s", ns, name, what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// checkVPAExternalRequest sends the request the recommender sends in
// external mode and checks Gantry's answer: one item per container, named
// in the "name" label, with the usage as its value.
func (e *env) checkVPAExternalRequest(ctx context.Context, t *testing.T, ns, podSelector, pod string, cores float64) {
	t.Helper()
	sel := podSelector + ",pod=" + pod
	path := fmt.Sprintf("/apis/external.metrics.k8s.io/v1beta1/namespaces/%s/%s?labelSelector=%s", ns, vpaCPUMetric, url.QueryEscape(sel))
	c := e.aggregatorClient(t)
	var res apiResult
	var list v1beta1.ExternalMetricValueList
	// The pod's series appear with the feeder's next writes and the rate
	// needs two samples.
	waitFor(ctx, t, 30*time.Second, "GET "+path+" to answer the usage", func() bool {
		res = c.get(ctx, path)
		if res.code != http.StatusOK || json.Unmarshal(res.body, &list) != nil || len(list.Items) != 1 {
			return false
		}
		v := list.Items[0].Value.AsApproximateFloat64()
		return v > 0.95*cores && v < 1.05*cores
	})
	it := list.Items[0]
	t.Logf("GET %s: %s %v = %s", path, it.MetricName, it.MetricLabels, it.Value.String())
	if it.MetricLabels["name"] != "app" || it.MetricLabels["pod"] != pod {
		t.Errorf("external metric labels %v, want name=app (the container) and pod=%s", it.MetricLabels, pod)
	}
}

func (e *env) vpaDeployment(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	c := corev1.Container{Name: "app", Image: "registry.invalid/app:1", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}}
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

// feedNamespacePods keeps calling set for every pod of the Deployment in
// namespace ns as pods come and go, until the returned stop is called.
func (e *env) feedNamespacePods(ns, name string, set func(pod string)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			pods, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": name}.String()})
			if err == nil {
				for _, p := range pods.Items {
					set(p.Name)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// waitNamespacePods waits until n pods of the Deployment are Running and
// returns their names.
func (e *env) waitNamespacePods(ctx context.Context, t *testing.T, ns, name string, n int) []string {
	t.Helper()
	var running []string
	waitFor(ctx, t, time.Minute, fmt.Sprintf("%d running pods of %s/%s", n, ns, name), func() bool {
		pods, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false
		}
		running = running[:0]
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running = append(running, p.Name)
			}
		}
		return len(running) >= n
	})
	return running
}
