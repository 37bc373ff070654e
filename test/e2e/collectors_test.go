package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	custommetricsv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/gantry-dev/gantry/test/cadvisor"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/ksm"
	"github.com/gantry-dev/gantry/test/stack"
)

// ksmRule is the README's kube-state-metrics rule, answered from Gantry's
// local store: the Deployment's unavailable replicas as an Object metric.
const ksmRule = `rules:
- seriesQuery: 'kube_deployment_status_replicas_unavailable{namespace!="",deployment!=""}'
  source: local
  resources:
    overrides:
      namespace: {resource: namespace}
      deployment: {group: apps, resource: deployment}
  name: {as: unavailable_replicas}
  metricsQuery: 'max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
`

// cadvisorRule is a Pods metric over the kubelets' /metrics/cadvisor, which
// Gantry scrapes into its local store (--kubelet-cadvisor).
const cadvisorRule = `rules:
- seriesQuery: 'container_cpu_usage_seconds_total{namespace!="",pod!=""}'
  source: local
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name: {as: cpu_cores}
  metricsQuery: 'sum by (pod) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[30s]))'
# How many samples of the counter the store holds in the rate's window: the
# scrape interval's doing, logged beside each reading.
- seriesQuery: 'container_cpu_usage_seconds_total{namespace!="",pod!=""}'
  source: local
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name: {as: cpu_samples_in_window}
  metricsQuery: 'sum by (pod) (count_over_time(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[30s]))'
`

// TestKubeStateMetricsObjectMetric scales a Deployment on another
// Deployment's unavailable replicas as the real kube-state-metrics reports
// them, scraped by Gantry itself (--kube-state-metrics-url) into its local
// store and queried there (source: local): the stack's Prometheus holds no
// kube_* series, so the value cannot have come from it.
func TestKubeStateMetricsObjectMetric(t *testing.T) {
	begin := time.Now()
	// kube-state-metrics needs the cluster, which the stack starts just
	// before Gantry: Gantry is pointed at a forwarder that answers 503 until
	// kube-state-metrics is up, and Gantry's scrapes retry every interval.
	fwd := newLateForwarder(t)
	// The stack's resourceRules keep metrics.k8s.io (which the stack waits
	// for) on Prometheus; without them Gantry would scrape kubelets this
	// cluster's fake node does not have. The Object metric is local only.
	resourceRules := "resourceRules:" + strings.SplitN(stack.DefaultRules, "\nresourceRules:", 2)[1]
	e := startEnv(t, stack.Options{
		Rules: ksmRule + resourceRules,
		GantryArgs: []string{
			"--kube-state-metrics-url=" + fwd.URL() + "/metrics",
			"--kube-state-metrics-scrape-interval=2s",
		},
	}, false)
	k := ksm.StartT(t, e.st.Cluster.KubeconfigPath(), func(o *ksm.Options) { o.Resources = []string{"deployments"} })
	fwd.setUpstream(t, k.URL())
	ctx := context.Background()
	t.Logf("stack and kube-state-metrics up in %s", time.Since(begin).Round(100*time.Millisecond))

	// backend's pods are bound to a node that does not exist: they stay
	// Pending, so every replica is unavailable.
	backend := "backend"
	labels := map[string]string{"app": backend}
	one := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: backend, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:   "no-such-node",
					Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/backend:1"}},
				},
			},
		},
	}
	if _, err := e.client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	worker := "worker"
	e.deployment(t, worker, 1, "")
	// AverageValue 1: the HPA wants one worker per unavailable backend
	// replica (desired = ceil(value / 1)).
	e.hpa(t, worker, 1, 6, autoscalingv2.MetricSpec{
		Type: autoscalingv2.ObjectMetricSourceType,
		Object: &autoscalingv2.ObjectMetricSource{
			DescribedObject: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: backend, APIVersion: "apps/v1"},
			Metric:          autoscalingv2.MetricIdentifier{Name: "unavailable_replicas"},
			Target:          autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("1")},
		},
	})

	path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/deployments.apps/" + backend + "/unavailable_replicas"
	agg := e.aggregatorClient(t)
	e.sameAsKubeStateMetrics(ctx, t, agg, k, path, backend, 1)
	e.waitHPA(ctx, t, worker, "ScalingActive=True reading unavailable_replicas = 1 of deployment backend", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue && objectValue(h) == "1" && h.Status.DesiredReplicas == 1
	})

	e.scaleDeployment(ctx, t, backend, 4)
	e.waitReplicas(ctx, t, worker, 4, "deployment backend has 4 unavailable replicas, AverageValue target 1")
	if got := objectValue(e.getHPA(ctx, t, worker)); got != "4" {
		t.Errorf("HPA %s reports unavailable_replicas %q, want 4", worker, got)
	}
	e.sameAsKubeStateMetrics(ctx, t, agg, k, path, backend, 4)
	// And back: the store follows kube-state-metrics down as well.
	e.scaleDeployment(ctx, t, backend, 1)
	e.sameAsKubeStateMetrics(ctx, t, agg, k, path, backend, 1)
	e.waitReplicas(ctx, t, worker, 1, "deployment backend has 1 unavailable replica again")

	// Nobody scrapes kube-state-metrics into Prometheus: it has no kube_*
	// series, so the values above came from Gantry's store.
	pc, err := api.NewClient(api.Config{Address: e.st.Prom.URL()})
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	series, _, _, err := promv1.NewAPI(pc).Series(qctx, []string{`{__name__=~"kube_.+"}`}, begin.Add(-time.Minute), time.Now())
	if err != nil {
		t.Fatalf("listing kube_* series in Prometheus: %v", err)
	}
	if len(series) != 0 {
		t.Errorf("Prometheus holds %d kube_* series (first %v); the test needs it out of the data path", len(series), series[0])
	}
	// Gantry did scrape kube-state-metrics itself.
	x := e.gantryMetrics(ctx, t, e.st.GantryURL)
	if x.sum("gantry_kubestate_last_success_timestamp_seconds") < float64(begin.Unix()) {
		t.Errorf("gantry_kubestate_last_success_timestamp_seconds = %v, want a scrape after the test began (%d)",
			x.sum("gantry_kubestate_last_success_timestamp_seconds"), begin.Unix())
	}
	if n := fwd.requests.Load(); n < 3 {
		t.Errorf("Gantry scraped kube-state-metrics %d times through the forwarder, want several", n)
	}
	t.Logf("total %s; Gantry scraped kube-state-metrics %d times", time.Since(begin).Round(100*time.Millisecond), fwd.requests.Load())
	e.logGantryHealth(ctx, t)
}

func (e *env) scaleDeployment(ctx context.Context, t *testing.T, name string, replicas int32) {
	t.Helper()
	scale, err := e.client.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = replicas
	if _, err := e.client.AppsV1().Deployments(ns).UpdateScale(ctx, name, scale, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("scaling %s to %d: %v", name, replicas, err)
	}
}

// logGantryHealth logs Gantry's readiness checks and the error lines of
// its log, for the report on the collectors.
func (e *env) logGantryHealth(ctx context.Context, t *testing.T) {
	t.Helper()
	r := e.gantryGet(ctx, t, e.st.GantryURL, "/readyz?verbose")
	t.Logf("gantry /readyz?verbose: %d\n%s", r.code, strings.TrimSpace(string(r.body)))
	counts := map[string]int{}
	var order []string
	for _, line := range strings.Split(readFrom(e.st.GantryLog, 0), "\n") {
		// klog error lines start with E and the date.
		if len(line) < 30 || line[0] != 'E' {
			continue
		}
		msg := line
		if i := strings.Index(line, "] "); i >= 0 {
			msg = line[i+2:]
		}
		if len(msg) > 200 {
			msg = msg[:200]
		}
		if counts[msg] == 0 {
			order = append(order, msg)
		}
		counts[msg]++
	}
	for _, msg := range order {
		t.Logf("gantry log: %d× %s", counts[msg], msg)
	}
}

// sameAsKubeStateMetrics waits until kube-state-metrics reports want
// unavailable replicas of the Deployment and the custom metrics API,
// through the aggregator, answers the same value for it.
func (e *env) sameAsKubeStateMetrics(ctx context.Context, t *testing.T, agg *rawClient, k *ksm.Server, path, deployment string, want float64) {
	t.Helper()
	begin := time.Now()
	var last apiResult
	var ksmValue, apiValue float64
	var mv custommetricsv1beta2.MetricValue
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		ksmValue = ksmUnavailable(ctx, t, k, deployment)
		last = agg.get(ctx, path)
		apiValue = math.NaN()
		if v, ok := oneMetricValue(last); ok {
			mv, apiValue = v, v.Value.AsApproximateFloat64()
		}
		if ksmValue == want && apiValue == want {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("unavailable replicas of %s: want %v from kube-state-metrics and from %s; kube-state-metrics says %v, the API %d %s",
				deployment, want, path, ksmValue, last.code, last.message())
		case <-time.After(500 * time.Millisecond):
		}
	}
	if mv.DescribedObject.Kind != "Deployment" || mv.DescribedObject.Name != deployment || mv.DescribedObject.Namespace != ns || mv.Metric.Name != "unavailable_replicas" {
		t.Errorf("%s: describedObject %+v, metric %q; want Deployment %s/%s, unavailable_replicas", path, mv.DescribedObject, mv.Metric.Name, ns, deployment)
	}
	if age := time.Since(mv.Timestamp.Time); age < -5*time.Second || age > time.Minute {
		t.Errorf("%s: timestamp %s is %s old", path, mv.Timestamp, age)
	}
	t.Logf("unavailable replicas of %s: kube-state-metrics %v, %s %v, equal after %s", deployment, ksmValue, path, apiValue, time.Since(begin).Round(100*time.Millisecond))
}

// ksmUnavailable reads kube_deployment_status_replicas_unavailable of the
// Deployment straight from kube-state-metrics; NaN if it has none.
func ksmUnavailable(ctx context.Context, t *testing.T, k *ksm.Server, deployment string) float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Logf("scraping kube-state-metrics: %v", err)
		return math.NaN()
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing kube-state-metrics' /metrics: %v", err)
	}
	mf := mfs["kube_deployment_status_replicas_unavailable"]
	if mf == nil {
		return math.NaN()
	}
	for _, m := range mf.GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		if l["namespace"] == ns && l["deployment"] == deployment {
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// oneMetricValue is the single item of a custom metrics API answer about
// one object (a MetricValueList, as the API serves for a named object).
func oneMetricValue(r apiResult) (custommetricsv1beta2.MetricValue, bool) {
	var l custommetricsv1beta2.MetricValueList
	if r.code != http.StatusOK || json.Unmarshal(r.body, &l) != nil || len(l.Items) != 1 {
		return custommetricsv1beta2.MetricValue{}, false
	}
	return l.Items[0], true
}

func objectValue(h *autoscalingv2.HorizontalPodAutoscaler) string {
	for _, m := range h.Status.CurrentMetrics {
		if m.Object == nil {
			continue
		}
		switch {
		case m.Object.Current.Value != nil:
			return m.Object.Current.Value.String()
		case m.Object.Current.AverageValue != nil:
			// AverageValue targets report value/replicas; recompute the total.
			q := m.Object.Current.AverageValue.MilliValue() * int64(h.Status.CurrentReplicas)
			return fmt.Sprint(float64(q) / 1000)
		}
	}
	return ""
}

// lateForwarder stands for kube-state-metrics' address before it runs:
// it answers 503 until setUpstream, then forwards every request to it.
type lateForwarder struct {
	srv      *http.Server
	url      string
	upstream atomic.Pointer[url.URL]
	requests atomic.Int64
}

func newLateForwarder(t *testing.T) *lateForwarder {
	t.Helper()
	f := &lateForwarder{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(f.upstream.Load())
		},
	}
	f.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if f.upstream.Load() == nil {
				http.Error(w, "kube-state-metrics not started yet", http.StatusServiceUnavailable)
				return
			}
			f.requests.Add(1)
			rp.ServeHTTP(w, r)
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + ln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = f.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = f.srv.Close()
		wg.Wait()
	})
	return f
}

func (f *lateForwarder) URL() string { return f.url }

func (f *lateForwarder) setUpstream(t *testing.T, base string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	f.upstream.Store(u)
}

// TestKubeletCadvisorLocalRule serves a Pods metric from the kubelets'
// /metrics/cadvisor as Gantry scrapes it (--kubelet-cadvisor) into its local
// store: one fake node's kubelet endpoint forwards /metrics/cadvisor to a
// real cAdvisor that measures a pod-like cgroup, named after a real pod on
// that node, whose busy loop is held to a 20% CPU quota. The custom metrics
// API, through the aggregator, must answer that pod's cpu_cores as the
// quota, as the kernel counted it.
func TestKubeletCadvisorLocalRule(t *testing.T) {
	if err := cadvisor.Available(); err != nil {
		t.Skipf("needs root and the cgroup v1 cpu, cpuacct and memory controllers: %v", err)
	}
	const (
		quota     = 0.20
		tolerance = 0.04
		// agreement bounds how far the served rate may be from the kernel's
		// count over the same window (cAdvisor's samples lag up to 2s).
		agreement = 0.03
		window    = 30 * time.Second
		// readingCount calm readings of the API (see below) are wanted
		// within readFor, at least minCalm.
		readingCount = 5
		minCalm      = 3
		readFor      = 80 * time.Second
		calmWithin   = 0.02
		pod          = "burner"
		container    = "app"
	)
	begin := time.Now()
	// The cluster CA's file is known only once the cluster runs, after
	// Gantry's command line is made: its path follows from the work dir
	// (checked below).
	workDir := t.TempDir()
	caFile := filepath.Join(workDir, "cluster", "pki", "ca.crt")
	e := startEnv(t, stack.Options{
		WorkDir: workDir,
		Rules:   cadvisorRule,
		Cluster: cluster.Options{KubeletMetrics: true},
		GantryArgs: []string{
			"--kubelet-cadvisor",
			"--kubelet-use-node-status-port",
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-certificate-authority=" + caFile,
			"--kubelet-scrape-interval=2s",
		},
	}, false)
	if got := e.st.Cluster.CAFile(); got != caFile {
		t.Fatalf("the cluster CA is at %s, Gantry was given %s", got, caFile)
	}
	ctx := context.Background()
	srv := cadvisor.StartT(t, cadvisor.Options{})
	if err := e.st.Cluster.KubeletProxy().SetCadvisorUpstream(nodeName, srv.MetricsURL()); err != nil {
		t.Fatal(err)
	}

	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:    nodeName,
			Containers:  []corev1.Container{{Name: container, Image: "registry.invalid/burner:1"}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
	if _, err := e.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cg := cadvisor.NewPodCgroup(t, srv.Parent(), ns, pod, container, quota, 64<<20)
	kernel := sampleCPU(t, cg)
	t.Logf("stack, cAdvisor and pod cgroup up in %s", time.Since(begin).Round(100*time.Millisecond))

	agg := e.aggregatorClient(t)
	path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/" + pod + "/cpu_cores"
	read := func() (custommetricsv1beta2.MetricValue, apiResult, bool) {
		r := agg.get(ctx, path)
		mv, ok := oneMetricValue(r)
		return mv, r, ok
	}
	first := time.Now()
	waitFor(ctx, t, 90*time.Second, "a first value of "+path, func() bool {
		_, _, ok := read()
		if !ok {
			time.Sleep(500 * time.Millisecond)
		}
		return ok
	})
	t.Logf("%s answered %.1fs after the pod cgroup started", path, time.Since(first).Seconds())

	// rate() over a counter younger than the window reads low (it
	// extrapolates to the window's start no further than the counter's
	// zero): read once the window holds samples all along, then take the
	// kernel's count over the same window, ending at the value's timestamp.
	time.Sleep(window + 5*time.Second)
	// One reading says little on a shared, busy machine, where the loop
	// does not always get its quota: read at distinct evaluation times
	// until readingCount readings fall in windows in which the kernel
	// counted the quota (calm), or readFor ends. The served value must
	// follow the kernel's count in every window (median difference), and
	// be the quota in the calm ones (median). A collector that is wrong is
	// wrong in all of them.
	type reading struct{ api, kernel float64 }
	var all, calm []reading
	var log strings.Builder
	seenAt := map[time.Time]bool{}
	readUntil := time.Now().Add(readFor)
	for len(calm) < readingCount && time.Now().Before(readUntil) {
		mv, r, ok := read()
		if !ok {
			t.Fatalf("%s: %d %s", path, r.code, r.message())
		}
		if mv.DescribedObject.Kind != "Pod" || mv.DescribedObject.Name != pod || mv.DescribedObject.Namespace != ns {
			t.Fatalf("%s: describedObject %+v, want Pod %s/%s", path, mv.DescribedObject, ns, pod)
		}
		end := mv.Timestamp.Time
		if seenAt[end] {
			time.Sleep(time.Second)
			continue
		}
		seenAt[end] = true
		k, err := kernel.rate(end.Add(-window), end)
		if err != nil {
			t.Fatal(err)
		}
		rd := reading{api: mv.Value.AsApproximateFloat64(), kernel: k}
		all = append(all, rd)
		mark := ""
		if math.Abs(k-quota) <= calmWithin {
			calm = append(calm, rd)
			mark = " (calm)"
		}
		samples := "?"
		if sv, ok := oneMetricValue(agg.get(ctx, strings.TrimSuffix(path, "cpu_cores")+"cpu_samples_in_window")); ok {
			samples = sv.Value.String()
		}
		fmt.Fprintf(&log, "\n  at %s: served %s, kernel %.4f, %s samples in the window%s", end.Format(time.TimeOnly), mv.Value.String(), k, samples, mark)
		time.Sleep(2 * time.Second)
	}
	diff, calmAPI := make([]float64, len(all)), make([]float64, len(calm))
	for i, r := range all {
		diff[i] = r.api - r.kernel
	}
	for i, r := range calm {
		calmAPI[i] = r.api
	}
	x := e.gantryMetrics(ctx, t, e.st.GantryURL)
	scrapes := x.sum("gantry_kubelet_scrape_duration_seconds_count", `endpoint="cadvisor"`)
	t.Logf("cpu quota %.2f: %s: %d readings, %d calm (kernel within %.2f of the quota); %s after the test began; %v cAdvisor scrapes, %.3fs each on average%s",
		quota, path, len(all), len(calm), calmWithin, time.Since(begin).Round(100*time.Millisecond),
		scrapes, x.sum("gantry_kubelet_scrape_duration_seconds_sum", `endpoint="cadvisor"`)/scrapes, log.String())
	if gap := median(diff); math.Abs(gap) > agreement {
		t.Errorf("%s differs from the kernel's count over the same window by %+.4f (median of %d), more than %.2f", path, gap, len(all), agreement)
	}
	switch {
	case len(calm) < minCalm:
		t.Errorf("the kernel gave the busy loop its quota %.2f (± %.2f) in %d of %d windows within %s, want %d: machine too busy to check the value against the quota",
			quota, calmWithin, len(calm), len(all), readFor, minCalm)
	case math.Abs(median(calmAPI)-quota) > tolerance:
		t.Errorf("%s = %.4f (median of %d calm readings), want the cgroup's CPU quota %.2f ± %.2f", path, median(calmAPI), len(calm), quota, tolerance)
	default:
		t.Logf("%s = %.4f (median of %d calm readings) against a quota of %.2f", path, median(calmAPI), len(calm), quota)
	}
	if scrapes == 0 {
		t.Errorf("gantry /metrics: no scrape of /metrics/cadvisor counted (gantry_kubelet_scrape_duration_seconds_count{endpoint=\"cadvisor\"})")
	}

	// The value came over the fake node's kubelet endpoint, from Gantry.
	seen, n := e.st.Cluster.KubeletProxy().LastRequest(nodeName)
	if n == 0 || !strings.HasPrefix(seen.Authorization, "Bearer ") {
		t.Errorf("node %s's kubelet endpoint saw %d requests, the last with a bearer token: %t", nodeName, n, strings.HasPrefix(seen.Authorization, "Bearer "))
	}
	e.logGantryHealth(ctx, t)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cpuSamples is the kernel's CPU time count of a pod cgroup, read every
// 250ms for the rest of the test.
type cpuSamples struct {
	mu sync.Mutex
	at []time.Time
	v  []time.Duration
}

func sampleCPU(t *testing.T, cg *cadvisor.PodCgroup) *cpuSamples {
	t.Helper()
	s := &cpuSamples{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if d, err := cg.CPUUsage(); err == nil {
				s.mu.Lock()
				s.at, s.v = append(s.at, time.Now()), append(s.v, d)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	// Registered after NewPodCgroup's cleanup, so it runs before it.
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// rate is the CPUs used between from and to, from the samples interpolated
// at both ends. It waits up to 2s for a sample after to.
func (s *cpuSamples) rate(from, to time.Time) (float64, error) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		s.mu.Lock()
		have := len(s.at) > 0 && s.at[len(s.at)-1].After(to)
		s.mu.Unlock()
		if have {
			break
		}
	}
	a, err := s.countAt(from)
	if err != nil {
		return 0, err
	}
	b, err := s.countAt(to)
	if err != nil {
		return 0, err
	}
	return (b - a) / to.Sub(from).Seconds(), nil
}

// countAt is the CPU seconds counted at t, interpolated between two samples.
func (s *cpuSamples) countAt(t time.Time) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(s.at); i++ {
		if !s.at[i].Before(t) {
			if s.at[i-1].After(t) {
				break
			}
			f := t.Sub(s.at[i-1]).Seconds() / s.at[i].Sub(s.at[i-1]).Seconds()
			return s.v[i-1].Seconds() + f*(s.v[i]-s.v[i-1]).Seconds(), nil
		}
	}
	if len(s.at) == 0 {
		return 0, fmt.Errorf("no kernel CPU samples")
	}
	return 0, fmt.Errorf("no kernel CPU samples around %s (samples from %s to %s)", t.Format(time.RFC3339Nano),
		s.at[0].Format(time.RFC3339Nano), s.at[len(s.at)-1].Format(time.RFC3339Nano))
}
