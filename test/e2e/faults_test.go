package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/gantry-dev/gantry/test/stack"
)

// The stack's timings, which bound how fast Gantry and the HPA can react to
// a fault: kube-controller-manager's HPA sync period and Gantry's relist
// and config reload intervals (the stack's and Gantry's defaults), and
// Gantry's value cache TTL and backend timeout (Gantry's defaults).
const (
	hpaSync        = 5 * time.Second
	relist         = 5 * time.Second
	reloadInterval = 5 * time.Second
	valueCacheTTL  = 5 * time.Second
	backendTimeout = 10 * time.Second
	// slack is added to every bound derived from the timings above: the
	// feeder's next write, the HPA's own requests and a loaded machine.
	slack = 10 * time.Second
)

// TestFaults breaks what Gantry depends on, one thing at a time, on one
// stack, and checks what an HPA and a client see while it is broken and
// after it is repaired.
func TestFaults(t *testing.T) {
	e := startEnv(t, stack.Options{}, false)
	e.feed.SetGauge(map[string]string{"__name__": "container_memory_working_set_bytes", "id": "/", "node": nodeName}, 2<<30)
	e.feed.SetRate(map[string]string{"__name__": "container_cpu_usage_seconds_total", "id": "/", "node": nodeName}, 1.5)
	t.Run("config reload", e.testConfigReload)
	t.Run("backend down", e.testBackendDown)
}

// jobsRule is an external rule the stack's default config lacks.
const jobsRule = `externalRules:
# Added by the reload test.
- seriesQuery: '{__name__="jobs_waiting",queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
  resources:
    overrides:
      namespace: {resource: "namespace"}
`

// testConfigReload rewrites the config file under a running Gantry: a
// valid change (a new external rule, a changed resource rule) takes effect
// without a restart, a broken one is rejected with an error naming file,
// rule and field, counted, and the last good config keeps serving.
func (e *env) testConfigReload(t *testing.T) {
	ctx := context.Background()
	pid := e.st.GantryPID()
	admin := e.aggregatorClient(t)
	const nodePath = "/apis/metrics.k8s.io/v1beta1/nodes/" + nodeName
	const extPath = "/apis/external.metrics.k8s.io/v1beta1"
	// The node's series reach Prometheus with the feeder's next write.
	waitFor(ctx, t, 30*time.Second, "node memory 2Gi before the reload", func() bool {
		return nodeMemory(t, admin.get(ctx, nodePath)) == "2Gi"
	})

	// An HPA on a metric no rule serves yet: it cannot scale.
	e.feed.SetGauge(map[string]string{"__name__": "jobs_waiting", "namespace": ns, "queue": "batch"}, 40)
	name := "reload-jobs"
	e.deployment(t, name, 1, "")
	e.hpa(t, name, 1, 5, autoscalingv2.MetricSpec{
		Type: autoscalingv2.ExternalMetricSourceType,
		External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "jobs_waiting", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"queue": "batch"}}},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("10")},
		},
	})
	e.waitHPA(ctx, t, name, "ScalingActive=False: no rule serves jobs_waiting yet", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	if listed(t, admin.get(ctx, extPath), "jobs_waiting") {
		t.Fatal("jobs_waiting is listed before the config names it")
	}

	// A valid change: a new external rule, and node memory doubled.
	good := strings.Replace(stack.DefaultRules, "externalRules:\n", jobsRule, 1)
	good = strings.Replace(good, `nodeQuery: 'sum(container_memory_working_set_bytes{<<.LabelMatchers>>,id="/"}) by (<<.GroupBy>>)'`,
		`nodeQuery: '2 * sum(container_memory_working_set_bytes{<<.LabelMatchers>>,id="/"}) by (<<.GroupBy>>)'`, 1)
	if good == stack.DefaultRules {
		t.Fatal("the test's edit of the default rules changed nothing")
	}
	begin := time.Now()
	if err := e.st.WriteConfig(good); err != nil {
		t.Fatal(err)
	}
	within := reloadInterval + relist + slack
	waitFor(ctx, t, within, "jobs_waiting listed in external.metrics.k8s.io after a valid config change", func() bool {
		return listed(t, admin.get(ctx, extPath), "jobs_waiting")
	})
	discovered := time.Since(begin)
	waitFor(ctx, t, within, "node memory from the changed resource rule", func() bool {
		return nodeMemory(t, admin.get(ctx, nodePath)) == "4Gi"
	})
	e.waitReplicas(ctx, t, name, 4, "jobs_waiting 40 against an AverageValue target of 10, after the rule was added")
	t.Logf("config reload: new external metric discoverable %s after the file changed (reload interval %s, relist %s); HPA scaled on it %s after",
		discovered.Round(100*time.Millisecond), reloadInterval, relist, time.Since(begin).Round(100*time.Millisecond))
	e.checkGantryMetrics(ctx, t, e.st.GantryURL, map[string]float64{
		`gantry_config_reloads_total{result="success"}`: 1,
		`gantry_config_reloads_total{result="failure"}`: 0,
		`gantry_config_last_reload_successful`:          1,
	})

	// A broken change that, applied, would drop jobs_waiting: it is
	// rejected, and jobs_waiting keeps being served.
	broken := strings.Replace(stack.DefaultRules, `    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s])) by (<<.GroupBy>>)'
externalRules:`, `    as: "${1}_per_second"
  metricQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s])) by (<<.GroupBy>>)'
externalRules:`, 1)
	if broken == stack.DefaultRules {
		t.Fatal("the test's breakage of the default rules changed nothing")
	}
	logStart := fileSize(e.st.GantryLog)
	if err := e.st.WriteConfig(broken); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, reloadInterval+slack, "the broken config counted as a failed reload", func() bool {
		m := e.gantryMetrics(ctx, t, e.st.GantryURL)
		return m[`gantry_config_reloads_total{result="failure"}`] == 1 && m[`gantry_config_last_reload_successful`] == 0
	})
	line := strings.Count(broken[:strings.Index(broken, "metricQuery:")], "\n") + 1
	wantLog := fmt.Sprintf(`%s:%d: rules[1] (ingress_requests_total): unknown field "metricQuery", did you mean "metricsQuery"?`, e.st.ConfigPath(), line)
	// klog quotes a one-line error, escaping its quotes.
	quoted := strings.Trim(strconv.Quote(wantLog), `"`)
	if log := readFrom(e.st.GantryLog, logStart); !strings.Contains(log, wantLog) && !strings.Contains(log, quoted) {
		t.Errorf("gantry's log does not name file, line, rule and field of the broken config; want %q in:\n%s", wantLog, log)
	}
	// Two relists later the last good config still serves.
	time.Sleep(2 * relist) // not for correctness: lets relists run with whatever config is in use
	if !listed(t, admin.get(ctx, extPath), "jobs_waiting") {
		t.Error("jobs_waiting is no longer listed after a rejected config change")
	}
	res := admin.get(ctx, "/apis/external.metrics.k8s.io/v1beta1/namespaces/"+ns+"/jobs_waiting")
	if res.code != http.StatusOK {
		t.Errorf("jobs_waiting after a rejected config change: %d %s", res.code, res.body)
	}
	if got := nodeMemory(t, admin.get(ctx, nodePath)); got != "4Gi" {
		t.Errorf("node memory after a rejected config change = %q, want 4Gi from the last good resource rule", got)
	}
	if h := e.getHPA(ctx, t, name); h.Status.DesiredReplicas != 4 || condition(h, autoscalingv2.ScalingActive).Status != corev1.ConditionTrue {
		t.Errorf("HPA after a rejected config change:\n%s", describeHPA(h))
	}

	// Back to the default rules: jobs_waiting goes away, node memory is
	// single again.
	if err := e.st.WriteConfig(stack.DefaultRules); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, within, "jobs_waiting gone after the rule was removed", func() bool {
		return !listed(t, admin.get(ctx, extPath), "jobs_waiting")
	})
	waitFor(ctx, t, within, "node memory back to the default rule", func() bool {
		return nodeMemory(t, admin.get(ctx, nodePath)) == "2Gi"
	})
	e.checkGantryMetrics(ctx, t, e.st.GantryURL, map[string]float64{
		`gantry_config_reloads_total{result="success"}`: 2,
		`gantry_config_reloads_total{result="failure"}`: 1,
		`gantry_config_last_reload_successful`:          1,
	})
	if got := e.st.GantryPID(); got != pid {
		t.Errorf("gantry's pid changed from %d to %d: the reload restarted it", pid, got)
	}
	if err := e.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}

// testBackendDown stops Prometheus under an HPA and a client, then starts it
// again on the same address with the same data: requests fail fast with
// 503 naming the backend, Gantry stays live and counts the errors, and the
// HPA scales on fresh data within one HPA sync and one relist of
// Prometheus' return, with no Gantry restart.
func (e *env) testBackendDown(t *testing.T) {
	ctx := context.Background()
	pid := e.st.GantryPID()
	admin := e.aggregatorClient(t)
	name := "down-pods"
	perPod := newValue(2)
	stop := e.rpsApp(t, name, 1, 1, 4, perPod.get)
	defer stop()
	e.waitHPA(ctx, t, name, "ScalingActive=True at 2 req/s per pod", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue && h.Status.DesiredReplicas == 1
	})
	podsPath := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/http_requests_per_second?labelSelector=app%3D" + name
	extPath := "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + ns + "/queue_depth"
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": "orders"}, 3)
	waitFor(ctx, t, relist+slack, "a 200 for the pods and the external metric before the fault", func() bool {
		return admin.get(ctx, podsPath).code == http.StatusOK && admin.get(ctx, extPath).code == http.StatusOK
	})
	before := e.gantryMetrics(ctx, t, e.st.GantryURL)
	errorsBefore := before.sum("gantry_backend_errors_total", `backend="prometheus"`)
	relistFailuresBefore := before.sum("gantry_discovery_relist_failures_total")

	// Down.
	if err := e.st.Prom.Halt(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// The first requests may be answered from the value cache, with a
	// value no older than its TTL; then every request fails, fast.
	var first503 apiResult
	waitFor(ctx, t, valueCacheTTL+slack, "503 for the pods metric with Prometheus down", func() bool {
		r := admin.get(ctx, podsPath)
		switch r.code {
		case http.StatusOK:
			var list v1beta2.MetricValueList
			if err := json.Unmarshal(r.body, &list); err != nil || len(list.Items) == 0 {
				t.Fatalf("200 with Prometheus down, but not a metric list: %s", r.body)
			}
			if age := time.Since(list.Items[0].Timestamp.Time); age > valueCacheTTL+time.Second {
				t.Errorf("with Prometheus down, a value %s old was served (value cache TTL %s)", age.Round(time.Millisecond), valueCacheTTL)
			}
			return false
		case http.StatusServiceUnavailable:
			first503 = r
			return true
		default:
			t.Fatalf("with Prometheus down: %d %s, want 503 (or a cached 200)", r.code, r.body)
			return false
		}
	})
	t.Logf("backend down: first 503 %s after the halt: %s", time.Since(down).Round(10*time.Millisecond), first503.message())
	for _, path := range []string{podsPath, extPath} {
		r := admin.get(ctx, path)
		if r.code != http.StatusServiceUnavailable {
			t.Errorf("GET %s with Prometheus down: %d %s, want 503", path, r.code, r.body)
			continue
		}
		if msg := r.message(); !strings.Contains(msg, "prometheus: unreachable") {
			t.Errorf("GET %s with Prometheus down: message %q does not name the backend and the reason", path, msg)
		}
		if r.took > backendTimeout {
			t.Errorf("GET %s with Prometheus down took %s, more than the backend timeout %s", path, r.took, backendTimeout)
		}
		t.Logf("backend down: %s answered %d in %s: %s", path, r.code, r.took.Round(time.Millisecond), r.message())
	}
	// A relist fails, and discovery keeps the last good list: the metrics
	// stay listed.
	waitFor(ctx, t, relist+slack, "a failed relist", func() bool {
		return e.gantryMetrics(ctx, t, e.st.GantryURL).sum("gantry_discovery_relist_failures_total") > relistFailuresBefore
	})
	if !listed(t, admin.get(ctx, "/apis/custom.metrics.k8s.io/v1beta2"), "pods/http_requests_per_second") {
		t.Error("with Prometheus down, pods/http_requests_per_second is no longer listed after a failed relist")
	}
	if r := e.gantryGet(ctx, t, e.st.GantryURL, "/livez"); r.code != http.StatusOK {
		t.Errorf("gantry /livez with Prometheus down: %d %s", r.code, r.body)
	}
	waitFor(ctx, t, slack, "gantry_backend_errors_total{backend=\"prometheus\"} growing", func() bool {
		return e.gantryMetrics(ctx, t, e.st.GantryURL).sum("gantry_backend_errors_total", `backend="prometheus"`, `reason="unreachable"`) > errorsBefore
	})
	// The HPA sees the failure: it keeps its replicas and says why.
	e.waitHPA(ctx, t, name, "ScalingActive=False while Prometheus is down", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	t.Logf("backend down: the HPA says: %s", condition(e.getHPA(ctx, t, name), autoscalingv2.ScalingActive).Message)

	// While it is down the load rises; after it returns the HPA must act
	// on it.
	perPod.set(30)
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.st.Prom.Restart(upCtx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("backend down: Prometheus was down for %s", up.Sub(down).Round(100*time.Millisecond))
	waitFor(ctx, t, hpaSync+relist+slack, "a 200 for the pods metric after Prometheus returned", func() bool {
		return admin.get(ctx, podsPath).code == http.StatusOK
	})
	clientBack := time.Since(up)
	// The HPA's next sync gets a value: recovered.
	e.waitHPA(ctx, t, name, "ScalingActive=True after Prometheus returned", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue
	})
	hpaBack := time.Since(up)
	if limit := hpaSync + relist + slack; hpaBack > limit {
		t.Errorf("the HPA took %s to get metrics again after Prometheus returned, more than %s", hpaBack, limit)
	}
	// And it acts on data written after the return: the rate reaches 30
	// req/s per pod as the 30s rate window fills, one scaling step per
	// sync.
	e.waitHPA(ctx, t, name, "4 replicas at 30 req/s per pod after Prometheus returned", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		return h.Status.DesiredReplicas == 4
	})
	scaled := time.Since(up)
	t.Logf("backend down: after Prometheus was ready, a client got a 200 in %s, the HPA had metrics again in %s and scaled to 4 for the load that rose meanwhile in %s (HPA sync %s, relist %s, rate window 30s)",
		clientBack.Round(100*time.Millisecond), hpaBack.Round(100*time.Millisecond), scaled.Round(100*time.Millisecond), hpaSync, relist)
	if got := e.st.GantryPID(); got != pid {
		t.Errorf("gantry's pid changed from %d to %d", pid, got)
	}
}

// --- helpers for the fault tests ---

// apiResult is what a client saw of one request.
type apiResult struct {
	code int // 0: no response
	body []byte
	err  error
	took time.Duration
}

// message is the Status message of an error response, else the body or
// the transport error.
func (r apiResult) message() string {
	if r.err != nil {
		return r.err.Error()
	}
	var s metav1.Status
	if json.Unmarshal(r.body, &s) == nil && s.Message != "" {
		return s.Message
	}
	return strings.TrimSpace(string(r.body))
}

// rawClient sends requests as the cluster admin, without client-go's rate
// limiting or retries, so that a test sees each response as it came.
type rawClient struct {
	hc   *http.Client
	host string
}

// aggregatorClient calls the kube-apiserver, which proxies the metrics APIs
// to Gantry.
func (e *env) aggregatorClient(t *testing.T) *rawClient {
	t.Helper()
	cfg := e.st.Cluster.RESTConfig()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc.Timeout = 2 * time.Minute
	return &rawClient{hc: hc, host: cfg.Host}
}

func (c *rawClient) get(ctx context.Context, path string) apiResult {
	begin := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.host+path, nil)
	if err != nil {
		return apiResult{err: err}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return apiResult{err: err, took: time.Since(begin)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return apiResult{code: resp.StatusCode, body: body, err: err, took: time.Since(begin)}
}

// gantryClient calls a Gantry replica directly, as the cluster admin.
func (e *env) gantryClient(t *testing.T) *http.Client {
	t.Helper()
	cfg := e.st.Cluster.RESTConfig()
	cert, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	hc := e.st.GantryClient()
	tr := hc.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	hc.Transport = tr
	return hc
}

func (e *env) gantryGet(ctx context.Context, t *testing.T, base, path string) apiResult {
	t.Helper()
	c := &rawClient{hc: e.gantryClient(t), host: base}
	return c.get(ctx, path)
}

// exposition is a scrape of /metrics: value by series, written as in the
// exposition format (name{label="value",...}, labels in its order).
type exposition map[string]float64

// sum adds the values of the series of metric name whose labels include
// every one of labels (each `name="value"`).
func (x exposition) sum(name string, labels ...string) float64 {
	total := 0.0
	for series, v := range x {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if all {
			total += v
		}
	}
	return total
}

func (e *env) gantryMetrics(ctx context.Context, t *testing.T, base string) exposition {
	t.Helper()
	x, err := scrape(ctx, e.gantryClient(t), base)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// scrape reads a replica's /metrics; unlike gantryMetrics it may run
// outside the test's goroutine.
func scrape(ctx context.Context, hc *http.Client, base string) (exposition, error) {
	r := (&rawClient{hc: hc, host: base}).get(ctx, "/metrics")
	if r.code != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %d %s %v", base, r.code, r.body, r.err)
	}
	x := exposition{}
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		x[line[:i]] = v
	}
	return x, nil
}

// checkGantryMetrics compares series of a replica's /metrics with want.
func (e *env) checkGantryMetrics(ctx context.Context, t *testing.T, base string, want map[string]float64) {
	t.Helper()
	got := e.gantryMetrics(ctx, t, base)
	for series, v := range want {
		if got[series] != v {
			t.Errorf("gantry /metrics: %s = %v, want %v", series, got[series], v)
		}
	}
}

// waitFor polls ok every 200ms until it holds, failing the test after
// within.
func waitFor(ctx context.Context, t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: not within %s", what, within)
		case <-tick.C:
		}
	}
}

// listed reports whether a discovery response lists resource name.
func listed(t *testing.T, r apiResult, name string) bool {
	t.Helper()
	if r.code != http.StatusOK {
		t.Logf("discovery: %d %s", r.code, r.message())
		return false
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("discovery response: %v", err)
	}
	for _, res := range list.APIResources {
		if res.Name == name {
			return true
		}
	}
	return false
}

// nodeMemory is the memory usage of a NodeMetrics response, "" without one.
func nodeMemory(t *testing.T, r apiResult) string {
	t.Helper()
	if r.code != http.StatusOK {
		t.Logf("node metrics: %d %s", r.code, r.message())
		return ""
	}
	var nm struct {
		Usage map[string]string `json:"usage"`
	}
	if err := json.Unmarshal(r.body, &nm); err != nil {
		t.Fatalf("node metrics response: %v", err)
	}
	return nm.Usage["memory"]
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// TestFaultBackendSlow puts a proxy between Gantry and Prometheus that
// answers 10–30 s late, then sends a burst of identical requests through
// the aggregator: each times out within --backend-timeout with a 503 that
// says so, they share one backend query, and Gantry's goroutines come back
// to where they were once the burst is over. Without the delay, the HPA
// recovers at its next sync.
func TestFaultBackendSlow(t *testing.T) {
	e := startEnv(t, stack.Options{BackendProxy: true}, false)
	ctx := context.Background()
	proxy := e.st.BackendProxy
	admin := e.aggregatorClient(t)
	name := "slow-pods"
	stop := e.rpsApp(t, name, 2, 2, 4, func() float64 { return 5 })
	defer stop()
	e.waitHPA(ctx, t, name, "ScalingActive=True before the slowdown", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue
	})
	podsPath := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/http_requests_per_second?labelSelector=app%3D" + name
	extPath := "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + ns + "/queue_depth?labelSelector=queue%3Dorders"
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": "orders"}, 3)
	waitFor(ctx, t, relist+slack, "a 200 for the pods and the external metric before the slowdown", func() bool {
		return admin.get(ctx, podsPath).code == http.StatusOK && admin.get(ctx, extPath).code == http.StatusOK
	})
	before := e.gantryMetrics(ctx, t, e.st.GantryURL)
	baseline := before["go_goroutines"]

	proxy.SetDelay(10*time.Second, 30*time.Second)
	// Values cached before the slowdown are served for their TTL; wait
	// until they are gone, so that the burst needs the backend.
	waitFor(ctx, t, valueCacheTTL+backendTimeout+slack, "the pods metric no longer answered from the value cache", func() bool {
		return admin.get(ctx, podsPath).code != http.StatusOK
	})
	proxy.ResetMaxInFlight()
	stats0 := proxy.Stats()

	// The burst: 30 identical custom metrics requests and 10 identical
	// external ones, at once.
	const nPods, nExt = 30, 10
	results := make([]apiResult, nPods+nExt)
	var wg sync.WaitGroup
	var peak float64
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	hc := e.gantryClient(t)
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if x, err := scrape(ctx, hc, e.st.GantryURL); err == nil {
				peak = max(peak, x["go_goroutines"])
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	burst := time.Now()
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := podsPath
			if i >= nPods {
				path = extPath
			}
			results[i] = admin.get(ctx, path)
		}()
	}
	wg.Wait()
	stopSampling()
	<-sampled
	burstTook := time.Since(burst)
	stats1 := proxy.Stats()

	var longest time.Duration
	reasons := map[string]int{}
	for i, r := range results {
		longest = max(longest, r.took)
		msg := r.message()
		reasons[msg]++
		// A request that joined a shared query started before it may
		// reach its own deadline first: "gave up waiting for the query".
		if r.code != http.StatusServiceUnavailable || !strings.Contains(msg, "backend unavailable") ||
			!strings.Contains(msg, "timeout") && !strings.Contains(msg, "deadline exceeded") {
			t.Errorf("request %d with Prometheus slow: %d %q, want 503 saying the backend timed out", i, r.code, msg)
		}
		if r.took > backendTimeout+3*time.Second {
			t.Errorf("request %d with Prometheus slow took %s, longer than the backend timeout %s", i, r.took.Round(time.Millisecond), backendTimeout)
		}
	}
	t.Logf("backend slow: %d requests got 503 in at most %s (burst over in %s)", len(results), longest.Round(time.Millisecond), burstTook.Round(time.Millisecond))
	for msg, n := range reasons {
		t.Logf("backend slow: %d× %s", n, msg)
	}

	// What reached Prometheus: the pods requests share one namespace
	// query; the HPA's own requests may add one per sync.
	var podsQueries, extQueries int
	for q, n := range stats1.Queries {
		switch {
		case strings.Contains(q, "http_requests_total"):
			podsQueries += n - stats0.Queries[q]
		case strings.Contains(q, "queue_depth"):
			extQueries += n - stats0.Queries[q]
		}
	}
	after := e.gantryMetrics(ctx, t, e.st.GantryURL)
	shared := after.sum("gantry_backend_shared_queries_total") - before.sum("gantry_backend_shared_queries_total")
	t.Logf("backend slow: backend queries for %d identical pods requests: %d; for %d identical external requests: %d; at most %d requests in flight at the proxy; gantry_backend_shared_queries_total +%v",
		nPods, podsQueries, nExt, extQueries, stats1.MaxInFlight, shared)
	if limit := 1 + int(burstTook/hpaSync) + 1; podsQueries > limit {
		t.Errorf("%d identical pods requests made %d backend queries, want at most %d (one, plus the HPA's)", nPods, podsQueries, limit)
	}
	if extQueries > 1 {
		// Not shared: the collector shares a query in flight only when
		// its evaluation time is the same millisecond, and each external
		// request is evaluated at its own now.
		t.Logf("backend slow: note: %d identical external requests were not shared (%d backend queries)", nExt, extQueries)
	}

	// Goroutines: bounded during the burst, back near the baseline after.
	t.Logf("backend slow: gantry goroutines %v before the slowdown, at most %v during the burst", baseline, peak)
	waitFor(ctx, t, backendTimeout+slack, "gantry's goroutines back near the baseline after the burst", func() bool {
		g := e.gantryMetrics(ctx, t, e.st.GantryURL)["go_goroutines"]
		return g <= baseline+20
	})
	t.Logf("backend slow: gantry goroutines %v after the burst", e.gantryMetrics(ctx, t, e.st.GantryURL)["go_goroutines"])

	// The HPA sees the timeouts, and recovers once the backend is fast.
	e.waitHPA(ctx, t, name, "ScalingActive=False while Prometheus is slow", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	t.Logf("backend slow: the HPA says: %s", condition(e.getHPA(ctx, t, name), autoscalingv2.ScalingActive).Message)
	proxy.SetDelay(0, 0)
	fast := time.Now()
	e.waitHPA(ctx, t, name, "ScalingActive=True once Prometheus is fast again", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue
	})
	// A query sent before the delay was removed is still held and may be
	// joined until it times out; the HPA's next sync after that succeeds.
	recovered := time.Since(fast)
	if limit := backendTimeout + hpaSync + slack; recovered > limit {
		t.Errorf("the HPA took %s to get metrics again after the delay was removed, more than %s", recovered, limit)
	}
	t.Logf("backend slow: the HPA had metrics again %s after the delay was removed (backend timeout %s, HPA sync %s)", recovered.Round(100*time.Millisecond), backendTimeout, hpaSync)
}

// TestFaultHA runs two Gantry replicas behind a round-robin balancer, as a
// Deployment of two behind a Service, and kills the one the aggregator is
// talking to while an HPA and a client keep asking: the HPA misses at most
// one sync, and no request answered by the survivor fails. A request that
// was in flight on the killed replica may fail.
func TestFaultHA(t *testing.T) {
	e := startEnv(t, stack.Options{Replicas: 2}, false)
	ctx := context.Background()
	admin := e.aggregatorClient(t)
	name := "ha-pods"
	stop := e.rpsApp(t, name, 1, 1, 4, func() float64 { return 30 })
	defer stop()
	e.waitReplicas(ctx, t, name, 4, "30 req/s per pod against a target of 10")
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": "orders"}, 3)
	podsPath := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/http_requests_per_second?labelSelector=app%3D" + name
	extPath := "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + ns + "/queue_depth?labelSelector=queue%3Dorders"
	waitFor(ctx, t, relist+slack, "a 200 for the external metric", func() bool {
		return admin.get(ctx, extPath).code == http.StatusOK
	})

	// A client: eight workers, each asking for the pods or the external
	// metric through the aggregator, with 50ms between requests.
	type sample struct {
		start, end time.Time
		path       string
		code       int
		msg        string
	}
	var mu sync.Mutex
	var samples []sample
	load, stopLoad := context.WithCancel(ctx)
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			path := podsPath
			if w%2 == 1 {
				path = extPath
			}
			for load.Err() == nil {
				begin := time.Now()
				r := admin.get(context.Background(), path)
				mu.Lock()
				samples = append(samples, sample{start: begin, end: time.Now(), path: path, code: r.code, msg: r.message()})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	defer func() { stopLoad(); workers.Wait() }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(samples) }
	waitFor(ctx, t, slack, "the client's first 100 requests", func() bool { return count() >= 100 })

	// The victim is the replica the aggregator talks to most.
	replicas := e.st.Replicas()
	open := e.st.Balancer.Open()
	victim, survivor := replicas[0], replicas[1]
	if open[hostPort(replicas[1].URL)] > open[hostPort(replicas[0].URL)] {
		victim, survivor = replicas[1], replicas[0]
	}
	failedSyncs := func() int32 { return e.hpaFailures(ctx, t, name) }
	failedBefore := failedSyncs()
	survivorBefore := e.gantryMetrics(ctx, t, survivor.URL)
	t.Logf("HA: killing gantry pid %d (%d connections from the aggregator) under load; pid %d (%d) survives",
		victim.PID(), open[hostPort(victim.URL)], survivor.PID(), open[hostPort(survivor.URL)])
	kill := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	// Watch the HPA for three syncs after the kill, under the same load.
	var inactive []string
	watchUntil := time.Now().Add(3 * hpaSync)
	for time.Now().Before(watchUntil) {
		h := e.getHPA(ctx, t, name)
		if c := condition(h, autoscalingv2.ScalingActive); c != nil && c.Status != corev1.ConditionTrue {
			inactive = append(inactive, c.Reason+": "+c.Message)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopLoad()
	workers.Wait()

	// What the client saw. A request the aggregator sent to the killed
	// replica fails with the aggregator's "error trying to reach
	// service"; that may happen to a request in flight at the kill, or
	// sent on the aggregator's connection to it before the aggregator saw
	// that connection close. Any other failure is a failure of the
	// survivor.
	const noticeWithin = time.Second
	var before, inFlight, after, failedInFlight, failedAfter int
	for _, s := range samples {
		if s.end.Before(kill) {
			before++
			continue
		}
		toKilled := strings.Contains(s.msg, "error trying to reach service")
		if s.start.Before(killed) {
			inFlight++
		} else {
			after++
		}
		switch {
		case s.code == http.StatusOK:
		case toKilled && s.start.Before(killed.Add(noticeWithin)):
			if s.start.Before(killed) {
				failedInFlight++
			} else {
				failedAfter++
			}
			t.Logf("HA: a request sent to the killed replica failed (started at kill%+dms): %d %s", s.start.Sub(killed).Milliseconds(), s.code, s.msg)
		default:
			t.Errorf("HA: a request started %s after the kill failed: %s: %d %s", s.start.Sub(killed).Round(time.Millisecond), s.path, s.code, s.msg)
		}
	}
	t.Logf("HA: client requests: %d before the kill, %d in flight at it (%d failed), %d after it (%d failed, all sent to the killed replica within %s of the kill)",
		before, inFlight, failedInFlight, after, failedAfter, noticeWithin)
	if after == 0 {
		t.Error("HA: no request was made after the kill")
	}

	// What the survivor answered: nothing but 200s.
	survivorAfter := e.gantryMetrics(ctx, t, survivor.URL)
	errs := func(x exposition) float64 {
		return x.sum("gantry_requests_total") - x.sum("gantry_requests_total", `code="200"`)
	}
	served := survivorAfter.sum("gantry_requests_total") - survivorBefore.sum("gantry_requests_total")
	if d := errs(survivorAfter) - errs(survivorBefore); d != 0 {
		t.Errorf("HA: the survivor answered %v requests with an error during the kill", d)
	}
	t.Logf("HA: the survivor answered %v metric requests during and after the kill, all 200; balancer connections by replica: %v", served, e.st.Balancer.Total())

	// What the HPA saw.
	missed := failedSyncs() - failedBefore
	t.Logf("HA: the HPA failed %d syncs after the kill (ScalingActive not True in %d of its polls: %v)", missed, len(inactive), inactive)
	if missed > 1 {
		t.Errorf("HA: the HPA failed %d syncs after the kill, want at most 1", missed)
	}
	if h := e.getHPA(ctx, t, name); h.Status.DesiredReplicas != 4 {
		t.Errorf("HA: HPA after the kill:\n%s", describeHPA(h))
	}
}

// hpaFailures counts the HPA's failed syncs so far: its
// FailedComputeMetricsReplicas warnings, one per sync that could not get
// its metrics.
func (e *env) hpaFailures(ctx context.Context, t *testing.T, name string) int32 {
	t.Helper()
	events, err := e.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=" + name + ",reason=FailedComputeMetricsReplicas",
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	for _, ev := range events.Items {
		n += max(ev.Count, 1)
	}
	return n
}

// hostPort is the host:port of a URL such as https://127.0.0.1:1234.
func hostPort(u string) string {
	_, hp, _ := strings.Cut(u, "://")
	return hp
}

// TestFaultAPIServerRestart restarts the kube-apiserver under an HPA and a
// client: Gantry is not restarted, its informers resync (an HPA on a
// Deployment created after the restart scales), delegated authentication
// and authorization work again, and its goroutines do not grow.
func TestFaultAPIServerRestart(t *testing.T) {
	e := startEnv(t, stack.Options{}, false)
	ctx := context.Background()
	admin := e.aggregatorClient(t)
	pid := e.st.GantryPID()
	podsMetric := func(name string, perPod *value) func() {
		e.deployment(t, name, 1, "")
		stop := e.feedPods(name, func(pod string) {
			e.feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": ns, "pod": pod}, perPod.get())
		})
		e.hpa(t, name, 1, 4, autoscalingv2.MetricSpec{
			Type: autoscalingv2.PodsMetricSourceType,
			Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "http_requests_per_second"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("10")},
			},
		})
		return stop
	}
	name := "kas-pods"
	perPod := newValue(2)
	defer podsMetric(name, perPod)()
	e.waitHPA(ctx, t, name, "ScalingActive=True at 2 req/s per pod", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionTrue && h.Status.DesiredReplicas == 1
	})
	podsPath := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/http_requests_per_second?labelSelector=app%3D" + name
	goroutines := e.gantryMetrics(ctx, t, e.st.GantryURL)["go_goroutines"]

	// A client asking through the aggregator all along.
	type sample struct {
		start time.Time
		ok    bool
		msg   string
	}
	var mu sync.Mutex
	var samples []sample
	load, stopLoad := context.WithCancel(ctx)
	var workers sync.WaitGroup
	for range 2 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for load.Err() == nil {
				begin := time.Now()
				r := admin.get(context.Background(), podsPath)
				mu.Lock()
				samples = append(samples, sample{start: begin, ok: r.code == http.StatusOK, msg: fmt.Sprint(r.code, " ", r.message())})
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	defer func() { stopLoad(); workers.Wait() }()

	restartCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	begin := time.Now()
	if err := e.st.Cluster.RestartAPIServer(restartCtx); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	t.Logf("apiserver restart: down and back in %s", ready.Sub(begin).Round(10*time.Millisecond))
	perPod.set(30)

	// The client gets answers again, and keeps getting them.
	waitFor(ctx, t, slack, "a 200 through the aggregator after the restart", func() bool {
		return admin.get(ctx, podsPath).code == http.StatusOK
	})
	clientBack := time.Since(ready)

	// Informers: a Deployment created after the restart has its pods
	// resolved by Gantry's metadata cache, so its HPA scales.
	newName := "kas-new"
	newPerPod := newValue(30)
	created := time.Now()
	defer podsMetric(newName, newPerPod)()
	e.waitReplicas(ctx, t, name, 4, "30 req/s per pod, the load raised at the restart")
	hpaBack := time.Since(ready)
	e.waitReplicas(ctx, t, newName, 4, "30 req/s per pod, a Deployment created after the restart")
	newBack := time.Since(created)

	// Delegated authentication and authorization: the admin's certificate
	// straight to Gantry (authorized by a SubjectAccessReview), and an
	// anonymous request refused.
	if r := e.gantryGet(ctx, t, e.st.GantryURL, podsPath); r.code != http.StatusOK {
		t.Errorf("admin straight to gantry after the restart: %d %s", r.code, r.message())
	}
	anon, err := e.st.GantryClient().Get(e.st.GantryURL + podsPath)
	if err != nil {
		t.Fatal(err)
	}
	anon.Body.Close()
	if anon.StatusCode != http.StatusUnauthorized && anon.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous straight to gantry after the restart: %d, want 401 or 403", anon.StatusCode)
	}
	if r := e.gantryGet(ctx, t, e.st.GantryURL, "/readyz"); r.code != http.StatusOK {
		t.Errorf("gantry /readyz after the restart: %d %s", r.code, r.body)
	}
	if !listed(t, admin.get(ctx, "/apis/custom.metrics.k8s.io/v1beta2"), "pods/http_requests_per_second") {
		t.Error("custom metrics discovery through the aggregator lacks pods/http_requests_per_second after the restart")
	}

	stopLoad()
	workers.Wait()
	var failedBefore, failedAfter int
	var lastFailure time.Time
	for _, s := range samples {
		if s.ok {
			continue
		}
		if s.start.Before(ready) {
			failedBefore++
		} else {
			failedAfter++
			lastFailure = s.start
		}
	}
	t.Logf("apiserver restart: client: %d requests, %d failed while the apiserver was down or restarting, %d after it was ready",
		len(samples), failedBefore, failedAfter)
	if !lastFailure.IsZero() && lastFailure.Sub(ready) > slack {
		t.Errorf("a client request failed %s after the apiserver was ready", lastFailure.Sub(ready).Round(time.Millisecond))
	}
	t.Logf("apiserver restart: after the apiserver was ready, a client got a 200 in %s, the HPA scaled to 4 for the load raised at the restart in %s (rate window 30s), an HPA on a Deployment created after the restart in %s from its creation",
		clientBack.Round(100*time.Millisecond), hpaBack.Round(100*time.Millisecond), newBack.Round(100*time.Millisecond))

	waitFor(ctx, t, slack, "gantry's goroutines back near where they were before the restart", func() bool {
		return e.gantryMetrics(ctx, t, e.st.GantryURL)["go_goroutines"] <= goroutines+20
	})
	t.Logf("apiserver restart: gantry goroutines %v before, %v after", goroutines, e.gantryMetrics(ctx, t, e.st.GantryURL)["go_goroutines"])
	if got := e.st.GantryPID(); got != pid {
		t.Errorf("gantry's pid changed from %d to %d", pid, got)
	}
	select {
	case <-e.st.Replicas()[0].Exited():
		t.Error("gantry exited")
	default:
	}
}
