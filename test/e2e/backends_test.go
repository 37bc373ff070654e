package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"

	"github.com/gantry-dev/gantry/test/cortex"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/thanos"
)

// The namespaces of the tenancy cases, and the tenants Gantry maps them to.
const (
	nsA, nsB         = "team-a", "team-b"
	tenantA, tenantB = "tenant-a", "tenant-b"
)

// backendsRules routes one rule to each of the backends the test starts:
// Thanos Query over an HA pair, Cortex and Thanos with tenants, and a
// plain Prometheus HA pair. Each backend holds a series of its own name.
const backendsRules = `backends:
- name: thanos
  type: prometheus
  url: %s
- name: cortex
  type: prometheus
  url: %s
  tenant: {byNamespace: {team-a: tenant-a, team-b: tenant-b}}
- name: thanos-tenants
  type: prometheus
  url: %s
  tenant: {header: THANOS-TENANT, byNamespace: {team-a: tenant-a, team-b: tenant-b}}
- name: prom-ha
  type: prometheus
  urls: [%s, %s]
rules:
- seriesQuery: 'thanos_requests_total{namespace!="",pod!=""}'
  backend: thanos
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
- seriesQuery: 'cortex_requests_total{namespace!="",pod!=""}'
  backend: cortex
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
# The same series, read with a query that names team-b: asked from team-a
# it must still read team-a's tenant only.
- seriesQuery: 'cortex_requests_total{namespace!="",pod!=""}'
  backend: cortex
  resources: {template: "<<.Resource>>"}
  name: {matches: "^cortex_(.*)_total$", as: "team_b_${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{namespace="team-b",pod=~"<<index .LabelValuesByName "pod">>"}[1m])) by (<<.GroupBy>>)'
- seriesQuery: 'tt_requests_total{namespace!="",pod!=""}'
  backend: thanos-tenants
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
- seriesQuery: 'ha_requests_total{namespace!="",pod!=""}'
  backend: prom-ha
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`

// TestBackends runs one Gantry over several real backends at once, each
// rule routed to its own (issue 15):
//
//  1. an HPA scales on a rule routed to Thanos Query over two Prometheus
//     replicas; the value is one replica's (deduplicated); one replica and
//     its sidecar killed under steady requests: no failed request, and the
//     HPA keeps computing;
//  2. two namespaces mapped to two tenants on Cortex (HPAs) and on Thanos
//     with enforced tenancy: each namespace reads its own tenant only, a
//     series of tenant B is a 404 from namespace A, and a query naming
//     namespace="team-b" asked from team-a reads tenant A;
//  3. a plain Prometheus HA pair: the preferred member stopped, requests
//     are answered by the other within the deadline; back, it is used
//     again.
func TestBackends(t *testing.T) {
	ctx := context.Background()
	pair := thanos.Pair(t, thanos.PairOptions{})
	cx := cortex.StartT(t, cortex.Options{})
	recv := thanos.StartReceiveT(t, thanos.ReceiveConfig{}, thanos.Options{})
	tquery := thanos.StartQueryT(t, thanos.QueryConfig{Endpoints: []string{recv.GRPCAddr()}, EnforceTenancy: true}, thanos.Options{})
	ha1, ha2 := prom.Start(t), prom.Start(t)

	rules := fmt.Sprintf(backendsRules, pair.Query.URL(), cx.PrometheusURL(), tquery.URL(), ha1.URL(), ha2.URL())
	e := startEnv(t, stack.Options{Rules: rules, GantryArgs: []string{"--value-cache-ttl=0"}}, true)
	for _, n := range []string{nsA, nsB} {
		if err := e.st.EnsureNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// Every backend gets its samples every 2s, like the stack's own
	// Prometheus.
	feeds := map[string]*stack.Feeder{
		"thanos":   stack.NewFeederTo(pair.Write, 2*time.Second),
		"cortex-a": stack.NewFeederTo(cx.Writer(tenantA).Write, 2*time.Second),
		"cortex-b": stack.NewFeederTo(cx.Writer(tenantB).Write, 2*time.Second),
		"tt-a":     stack.NewFeederTo(recv.Writer(tenantA).Write, 2*time.Second),
		"tt-b":     stack.NewFeederTo(recv.Writer(tenantB).Write, 2*time.Second),
		"ha": stack.NewFeederTo(func(ctx context.Context, s []prom.Sample) error {
			// Both members hold the same data; one may be down.
			err1, err2 := ha1.Write(ctx, s), ha2.Write(ctx, s)
			if err1 != nil && err2 != nil {
				return err1
			}
			return nil
		}, 2*time.Second),
	}
	feedCtx, stopFeeds := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for name, f := range feeds {
		wg.Go(func() { f.Run(feedCtx, func(err error) { t.Logf("feeder %s: %v", name, err) }) })
	}
	t.Cleanup(func() { stopFeeds(); wg.Wait() })
	admin := e.aggregatorClient(t)

	t.Run("thanos query over an HA pair", func(t *testing.T) {
		name := "thanos-app"
		e.deployment(t, name, 1, "")
		stop := e.feedPods(name, func(pod string) {
			feeds["thanos"].SetRate(map[string]string{"__name__": "thanos_requests_total", "namespace": ns, "pod": pod}, 25)
		})
		defer stop()
		// AverageValue 10 against 25 per pod: up to the maximum, 3. The
		// two replicas' copies of a series, summed, would read 50.
		e.hpa(t, name, 1, 3, podsMetric("thanos_requests_per_second", "10"))
		e.waitReplicas(ctx, t, name, 3, "25 req/s per pod from Thanos against a target of 10")
		path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/thanos_requests_per_second?labelSelector=app%3D" + name
		waitFor(ctx, t, time.Minute, "thanos_requests_per_second 25 for 3 pods", func() bool {
			vals := podValues(t, admin.get(ctx, path))
			return len(vals) == 3 && allNear(vals, 25, 0.5)
		})

		// Steady requests, as an HPA and a dashboard make them, while
		// replica 0 and its sidecar die.
		var sent, failed atomic.Int64
		var firstFailure atomic.Value
		reqCtx, stopReqs := context.WithCancel(ctx)
		var rwg sync.WaitGroup
		rwg.Go(func() {
			for reqCtx.Err() == nil {
				r := admin.get(reqCtx, path)
				if reqCtx.Err() != nil {
					return
				}
				sent.Add(1)
				if vals := podValues(nil, r); r.code != http.StatusOK || len(vals) != 3 || !allNear(vals, 25, 0.5) {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", r.code, r.message()))
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
		time.Sleep(3 * time.Second)
		killed := time.Now()
		if err := pair.Kill(0); err != nil {
			t.Fatal(err)
		}
		// 30s with one replica: more than five HPA syncs.
		var missed []string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
			h := e.getHPA(ctx, t, name)
			if c := condition(h, autoscalingv2.ScalingActive); c == nil || c.Status != corev1.ConditionTrue {
				missed = append(missed, describeHPA(h))
			}
		}
		stopReqs()
		rwg.Wait()
		after := e.getHPA(ctx, t, name)
		t.Logf("thanos: %d requests in the 33s around the kill of replica a (at %s), %d failed", sent.Load(), killed.Format(time.TimeOnly), failed.Load())
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed with a replica killed; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
		}
		if sent.Load() < 20 {
			t.Errorf("only %d requests were made", sent.Load())
		}
		if len(missed) > 0 {
			t.Errorf("the HPA could not compute its metric %d times with a replica killed; first:\n%s", len(missed), missed[0])
		}
		if after.Status.DesiredReplicas != 3 {
			t.Errorf("the HPA wants %d replicas after the kill, want 3", after.Status.DesiredReplicas)
		}
	})

	t.Run("tenants on cortex", func(t *testing.T) {
		// team-a's pods do 25 req/s in tenant-a, team-b's 15 in tenant-b:
		// with AverageValue 10 both HPAs scale up, team-a's to its maximum
		// 4 and team-b's to its 2, each reporting its own tenant's value.
		// Tenant-b also holds series named after team-a's pods, at 100
		// req/s, labelled namespace team-a and team-b: read under the
		// wrong tenant they would show.
		name := "tenant-app"
		for _, n := range []string{nsA, nsB} {
			e.deploymentIn(t, n, name, 1, "")
		}
		stopA := e.feedNamespacePods(nsA, name, func(pod string) {
			feeds["cortex-a"].SetRate(map[string]string{"__name__": "cortex_requests_total", "namespace": nsA, "pod": pod}, 25)
			feeds["cortex-b"].SetRate(map[string]string{"__name__": "cortex_requests_total", "namespace": nsA, "pod": pod}, 100)
			feeds["cortex-b"].SetRate(map[string]string{"__name__": "cortex_requests_total", "namespace": nsB, "pod": pod}, 100)
		})
		defer stopA()
		stopB := e.feedNamespacePods(nsB, name, func(pod string) {
			feeds["cortex-b"].SetRate(map[string]string{"__name__": "cortex_requests_total", "namespace": nsB, "pod": pod}, 15)
		})
		defer stopB()
		e.hpaIn(t, nsA, name, 1, 4, podsMetric("cortex_requests_per_second", "10"))
		e.hpaIn(t, nsB, name, 1, 2, podsMetric("cortex_requests_per_second", "10"))
		e.waitReplicasIn(ctx, t, nsA, name, 4, "25 req/s per pod in tenant-a against a target of 10")
		e.waitReplicasIn(ctx, t, nsB, name, 2, "15 req/s per pod in tenant-b against a target of 10")
		for n, want := range map[string]float64{nsA: 25, nsB: 15} {
			e.waitHPAIn(ctx, t, n, name, fmt.Sprintf("an average of %v, its tenant's", want), func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
				for _, m := range h.Status.CurrentMetrics {
					if m.Pods != nil && m.Pods.Current.AverageValue != nil {
						v := m.Pods.Current.AverageValue.AsApproximateFloat64()
						return v > want-0.5 && v < want+0.5
					}
				}
				return false
			})
		}

		pathA := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + nsA + "/pods/*/cortex_requests_per_second?labelSelector=app%3D" + name
		waitFor(ctx, t, time.Minute, "cortex_requests_per_second 25 for team-a's 4 pods", func() bool {
			vals := podValues(t, admin.get(ctx, pathA))
			return len(vals) == 4 && allNear(vals, 25, 0.5)
		})
		// A pod whose series exist only in tenant-b.
		ghost := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + nsA + "/pods/ghost/cortex_requests_per_second"
		feeds["cortex-b"].SetRate(map[string]string{"__name__": "cortex_requests_total", "namespace": nsA, "pod": "ghost"}, 100)
		if err := feeds["cortex-b"].Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if r := admin.get(ctx, ghost); r.code != http.StatusNotFound {
			t.Errorf("GET %s (a series of tenant-b only): %d %s, want 404", ghost, r.code, r.message())
		}
		// A query naming team-b, asked from team-a: tenant-b's series
		// for team-a's pods under namespace team-b would answer it.
		named := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + nsA + "/pods/*/team_b_requests_per_second?labelSelector=app%3D" + name
		if r := admin.get(ctx, named); r.code != http.StatusNotFound {
			t.Errorf("GET %s (the query names team-b): %d %s, want 404: team-a's tenant has no team-b series", named, r.code, r.message())
		}
		// A namespace without a tenant gets nothing, from no tenant.
		noTenant := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/cortex_requests_per_second"
		if r := admin.get(ctx, noTenant); r.code != http.StatusNotFound || !strings.Contains(r.message(), "no tenant") {
			t.Errorf("GET %s (a namespace without a tenant): %d %s, want 404 naming the missing tenant", noTenant, r.code, r.message())
		}
	})

	t.Run("tenants on thanos with enforced tenancy", func(t *testing.T) {
		name := "tenant-app" // the tenant test's Deployments
		e.waitNamespacePods(ctx, t, nsA, name, 1)
		stopA := e.feedNamespacePods(nsA, name, func(pod string) {
			feeds["tt-a"].SetRate(map[string]string{"__name__": "tt_requests_total", "namespace": nsA, "pod": pod}, 7)
			feeds["tt-b"].SetRate(map[string]string{"__name__": "tt_requests_total", "namespace": nsA, "pod": pod}, 70)
		})
		defer stopA()
		stopB := e.feedNamespacePods(nsB, name, func(pod string) {
			feeds["tt-b"].SetRate(map[string]string{"__name__": "tt_requests_total", "namespace": nsB, "pod": pod}, 9)
		})
		defer stopB()
		for _, c := range []struct {
			ns   string
			want float64
		}{{nsA, 7}, {nsB, 9}} {
			path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + c.ns + "/pods/*/tt_requests_per_second?labelSelector=app%3D" + name
			var last apiResult
			waitFor(ctx, t, 2*time.Minute, fmt.Sprintf("tt_requests_per_second %v for %s's pods", c.want, c.ns), func() bool {
				last = admin.get(ctx, path)
				vals := podValues(nil, last)
				return len(vals) > 0 && allNear(vals, c.want, 0.5)
			})
		}
		ghost := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + nsA + "/pods/ghost/tt_requests_per_second"
		feeds["tt-b"].SetRate(map[string]string{"__name__": "tt_requests_total", "namespace": nsA, "pod": "ghost"}, 100)
		if err := feeds["tt-b"].Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if r := admin.get(ctx, ghost); r.code != http.StatusNotFound {
			t.Errorf("GET %s (a series of tenant-b only): %d %s, want 404", ghost, r.code, r.message())
		}
	})

	t.Run("prometheus HA pair", func(t *testing.T) {
		name := "ha-app"
		e.deployment(t, name, 2, "")
		pods := e.waitPodsReady(ctx, t, name, 2)
		for _, pod := range pods {
			feeds["ha"].SetRate(map[string]string{"__name__": "ha_requests_total", "namespace": ns, "pod": pod}, 12)
		}
		path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/ha_requests_per_second?labelSelector=app%3D" + name
		waitFor(ctx, t, time.Minute, "ha_requests_per_second 12 for both pods", func() bool {
			vals := podValues(nil, admin.get(ctx, path))
			return len(vals) == 2 && allNear(vals, 12, 0.5)
		})
		member := func(p *prom.Server) string { return `member="` + p.URL() + `"` }
		served := func(p *prom.Server) float64 {
			return e.gantryMetrics(ctx, t, e.st.GantryURL).sum("gantry_backend_member_request_duration_seconds_count", `backend="prom-ha"`, member(p), `outcome="success"`)
		}
		if served(ha1) == 0 {
			t.Fatalf("the preferred member answered nothing")
		}

		if err := ha1.Halt(); err != nil {
			t.Fatal(err)
		}
		byTwo := served(ha2)
		for i := range 5 {
			r := admin.get(ctx, path)
			if vals := podValues(nil, r); r.code != http.StatusOK || len(vals) != 2 {
				t.Fatalf("request %d with the preferred member stopped: %d %s", i, r.code, r.message())
			}
			if r.took > backendTimeout {
				t.Errorf("request %d with the preferred member stopped took %s, more than the backend timeout", i, r.took)
			}
			t.Logf("prom-ha: request %d after the preferred member stopped: %d in %s", i, r.code, r.took.Round(time.Millisecond))
		}
		if n := served(ha2) - byTwo; n < 5 {
			t.Errorf("the second member answered %v of 5 requests", n)
		}
		x := e.gantryMetrics(ctx, t, e.st.GantryURL)
		if up := x.sum("gantry_backend_member_up", member(ha1)); up != 0 {
			t.Errorf("gantry_backend_member_up of the stopped member = %v, want 0", up)
		}

		upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := ha1.Restart(upCtx); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		waitFor(ctx, t, time.Minute, "the probe to find the preferred member up", func() bool {
			return e.gantryMetrics(ctx, t, e.st.GantryURL).sum("gantry_backend_member_up", member(ha1)) == 1
		})
		t.Logf("prom-ha: the probe found the preferred member up %s after its restart", time.Since(back).Round(100*time.Millisecond))
		byOne := served(ha1)
		if r := admin.get(ctx, path); r.code != http.StatusOK {
			t.Fatalf("after the member's return: %d %s", r.code, r.message())
		}
		if served(ha1) == byOne {
			t.Errorf("the preferred member is up again but did not answer the next request")
		}
	})
}

func podsMetric(name, average string) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{
		Type: autoscalingv2.PodsMetricSourceType,
		Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: name},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty(average)},
		},
	}
}

// podValues are the values of a MetricValueList answer by pod; nil for any
// other answer (t, when set, logs why).
func podValues(t *testing.T, r apiResult) map[string]float64 {
	if r.code != http.StatusOK {
		if t != nil {
			t.Logf("%d %s", r.code, r.message())
		}
		return nil
	}
	var list v1beta2.MetricValueList
	if err := json.Unmarshal(r.body, &list); err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, it := range list.Items {
		out[it.DescribedObject.Name] = it.Value.AsApproximateFloat64()
	}
	return out
}

func allNear(vals map[string]float64, want, tolerance float64) bool {
	for _, v := range vals {
		if v < want-tolerance || v > want+tolerance {
			return false
		}
	}
	return true
}
