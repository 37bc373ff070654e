package dashboards_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/prom"
)

// fixture writes series shaped like what the dashboards read into a real
// Prometheus: Gantry's /metrics (two replicas), kube-state-metrics (HPAs,
// pod owners, requests, and the VPA series that
// deploy/rules/kube-state-metrics-vpa.yaml configures) and cAdvisor. Every
// panel must find data in it (TestQueriesReturnData), so a new panel needs
// its series here. The values make sense (a Deployment "web" at its HPA's
// max, a VPA for "api") without tests depending on them.
type fixture struct {
	srv        *prom.Server
	start, end time.Time
	step       time.Duration
	gauges     []prom.Sample
}

const fixtureStep = 15 * time.Second

func newFixture(srv *prom.Server) *fixture {
	end := time.Now().Truncate(time.Second)
	return &fixture{srv: srv, start: end.Add(-20 * time.Minute), end: end, step: fixtureStep}
}

// with returns base plus the name (if any) and extra labels, leaving base
// alone.
func with(base map[string]string, name string, kv ...string) map[string]string {
	l := maps.Clone(base)
	if name != "" {
		l["__name__"] = name
	}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

// gauge queues a series holding value over the whole window; value may
// depend on the sample time.
func (f *fixture) gauge(labels map[string]string, value func(time.Time) float64) {
	for ts := f.start; !ts.After(f.end); ts = ts.Add(f.step) {
		f.gauges = append(f.gauges, prom.Sample{Labels: labels, Value: value(ts), Time: ts})
	}
}

func (f *fixture) constant(labels map[string]string, v float64) {
	f.gauge(labels, func(time.Time) float64 { return v })
}

func (f *fixture) counter(t *testing.T, ctx context.Context, labels map[string]string, perSecond float64) {
	t.Helper()
	if err := f.srv.WriteCounter(ctx, labels, perSecond, f.start, f.end, f.step); err != nil {
		t.Fatalf("writing %v: %v", labels, err)
	}
}

// histogram writes the _bucket, _sum and _count counters of a histogram
// whose observations arrive at perSecond, spread over the bounds.
func (f *fixture) histogram(t *testing.T, ctx context.Context, base map[string]string, name string, perSecond float64, bounds ...float64) {
	t.Helper()
	for i, le := range bounds {
		share := float64(i+1) / float64(len(bounds)+1)
		f.counter(t, ctx, with(base, name+"_bucket", "le", fmt.Sprint(le)), perSecond*share)
	}
	f.counter(t, ctx, with(base, name+"_bucket", "le", "+Inf"), perSecond)
	f.counter(t, ctx, with(base, name+"_count"), perSecond)
	f.counter(t, ctx, with(base, name+"_sum"), perSecond*bounds[len(bounds)/2])
}

func (f *fixture) flush(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := f.srv.Write(ctx, f.gauges); err != nil {
		t.Fatalf("writing gauges: %v", err)
	}
	f.gauges = nil
}

// load writes the whole fixture.
func (f *fixture) load(t *testing.T, ctx context.Context) {
	t.Helper()
	f.gantry(t, ctx)
	f.kubeStateMetrics()
	f.cadvisor(t, ctx)
	f.flush(t, ctx)
}

func (f *fixture) gantry(t *testing.T, ctx context.Context) {
	t.Helper()
	for i, instance := range []string{samples["instance"], "10.0.0.2:6443"} {
		g := map[string]string{"job": samples["job"], "instance": instance}
		for _, r := range []struct {
			api, metric, code string
			perSecond         float64
		}{
			{"custom.metrics.k8s.io", "http_requests_per_second", "200", 2},
			{"custom.metrics.k8s.io", "http_requests_per_second", "503", 0.1},
			{"custom.metrics.k8s.io", "missing_metric", "404", 0.2},
			{"custom.metrics.k8s.io", "", "200", 0.1}, // lists
			{"external.metrics.k8s.io", "queue_depth", "200", 1},
			{"metrics.k8s.io", "pods", "200", 1},
		} {
			f.counter(t, ctx, with(g, "gantry_requests_total", "api", r.api, "metric", r.metric, "code", r.code), r.perSecond)
		}
		for _, api := range []string{"custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io"} {
			f.histogram(t, ctx, with(g, "", "api", api), "gantry_request_duration_seconds", 1, .01, .05, .1, .5, 1)
		}
		for _, call := range []string{"query", "series"} {
			for _, outcome := range []string{"success", "error"} {
				f.histogram(t, ctx, with(g, "", "backend", "prometheus", "call", call, "outcome", outcome),
					"gantry_backend_request_duration_seconds", 1, .005, .01, .05, .1, 1)
			}
			f.counter(t, ctx, with(g, "gantry_backend_errors_total", "backend", "prometheus", "call", call, "reason", "timeout"), 0.05)
		}
		f.counter(t, ctx, with(g, "gantry_backend_shared_queries_total", "backend", "prometheus"), 0.5)
		f.histogram(t, ctx, g, "gantry_discovery_relist_duration_seconds", 1.0/60, .1, .25, .5, 1)
		f.counter(t, ctx, with(g, "gantry_discovery_relist_failures_total", "rule", "rules[0] (http_requests)"), 1.0/600)
		f.constant(with(g, "gantry_discovery_metrics", "api", "custom"), 12)
		f.constant(with(g, "gantry_discovery_metrics", "api", "external"), 3)
		f.constant(with(g, "gantry_discovery_conflicts"), 1)
		// A relist every minute, the last one succeeded.
		f.gauge(with(g, "gantry_discovery_last_success_timestamp_seconds"), func(ts time.Time) float64 {
			return float64(ts.Truncate(time.Minute).Unix())
		})
		// MetricRules, as a ServiceMonitor scrape labels them (the
		// target's namespace, the rule's in exported_namespace): team-a/web
		// Ready with two metrics, team-b/queue not Ready.
		for _, r := range []struct {
			namespace, name string
			ready, metrics  float64
		}{{"team-a", "web", 1, 2}, {"team-b", "queue", 0, 0}} {
			rl := with(g, "", "namespace", "gantry", "exported_namespace", r.namespace, "name", r.name)
			f.constant(with(rl, "gantry_metricrule_ready"), r.ready)
			f.constant(with(rl, "gantry_metricrule_metrics"), r.metrics)
		}
		f.histogram(t, ctx, g, "gantry_metricrule_apply_to_served_seconds", 1.0/60, .25, .5, 1, 2, 5)
		f.counter(t, ctx, with(g, "process_cpu_seconds_total"), 0.02)
		f.constant(with(g, "process_resident_memory_bytes"), float64((60+i)<<20))
		f.constant(with(g, "go_memstats_heap_inuse_bytes"), float64((20+i)<<20))
		f.constant(with(g, "go_goroutines"), float64(150+i))
	}
}

// The cluster: namespace shop runs Deployments web (two pods, autoscaled
// by HPA web, at its max) and api (one pod, HPA api cannot read its metric,
// VPA api), and StatefulSet db. Namespace other has one more pod, which no
// query for shop may pick up.
type pod struct {
	namespace, name, ownerKind, ownerName string
	containers                            []string
}

var pods = []pod{
	{"shop", "web-5d8f7b9c4-x2x7q", "ReplicaSet", "web-5d8f7b9c4", []string{"app", "proxy"}},
	{"shop", "web-5d8f7b9c4-k9p4s", "ReplicaSet", "web-5d8f7b9c4", []string{"app", "proxy"}},
	{"shop", "api-7c6b5d4f8-vh2lm", "ReplicaSet", "api-7c6b5d4f8", []string{"app"}},
	{"shop", "db-0", "StatefulSet", "db", []string{"postgres"}},
	{"other", "web-6f7d8c9b5-qq8zt", "ReplicaSet", "web-6f7d8c9b5", []string{"app"}},
}

var replicaSets = map[[2]string]string{ // namespace, replicaset -> deployment
	{"shop", "web-5d8f7b9c4"}:  "web",
	{"shop", "api-7c6b5d4f8"}:  "api",
	{"other", "web-6f7d8c9b5"}: "web",
}

func (f *fixture) kubeStateMetrics() {
	ksm := map[string]string{"job": "kube-state-metrics", "instance": "10.0.1.1:8080"}
	for _, p := range pods {
		pl := with(ksm, "", "namespace", p.namespace, "pod", p.name)
		f.constant(with(pl, "kube_pod_owner", "owner_kind", p.ownerKind, "owner_name", p.ownerName, "owner_is_controller", "true"), 1)
		for _, c := range p.containers {
			f.constant(with(pl, "kube_pod_container_resource_requests", "container", c, "node", "node-1", "resource", "cpu", "unit", "core"), 0.25)
			f.constant(with(pl, "kube_pod_container_resource_requests", "container", c, "node", "node-1", "resource", "memory", "unit", "byte"), 256<<20)
		}
	}
	for rs, deployment := range replicaSets {
		f.constant(with(ksm, "kube_replicaset_owner", "namespace", rs[0], "replicaset", rs[1], "owner_kind", "Deployment", "owner_name", deployment, "owner_is_controller", "true"), 1)
	}

	for _, h := range []struct {
		name                       string
		min, max, current, desired float64
		active, limited            bool
		metric, targetType         string
		value, target              float64
	}{
		{"web", 2, 4, 4, 4, true, true, "http_requests_per_second", "average", 14, 10},
		{"api", 1, 5, 1, 1, false, false, "cpu", "utilization", 0, 70},
	} {
		hl := with(ksm, "", "namespace", "shop", "horizontalpodautoscaler", h.name)
		f.constant(with(hl, "kube_horizontalpodautoscaler_spec_min_replicas"), h.min)
		f.constant(with(hl, "kube_horizontalpodautoscaler_spec_max_replicas"), h.max)
		f.constant(with(hl, "kube_horizontalpodautoscaler_status_current_replicas"), h.current)
		f.constant(with(hl, "kube_horizontalpodautoscaler_status_desired_replicas"), h.desired)
		f.constant(with(hl, "kube_horizontalpodautoscaler_spec_target_metric", "metric_name", h.metric, "metric_target_type", h.targetType), h.target)
		if h.active {
			f.constant(with(hl, "kube_horizontalpodautoscaler_status_target_metric", "metric_name", h.metric, "metric_target_type", h.targetType), h.value)
		}
		for condition, state := range map[string]bool{"AbleToScale": true, "ScalingActive": h.active, "ScalingLimited": h.limited} {
			// kube-state-metrics writes one series per possible status, 1
			// for the current one.
			for _, status := range []string{"true", "false", "unknown"} {
				v := 0.0
				if (status == "true") == state && status != "unknown" {
					v = 1
				}
				f.constant(with(hl, "kube_horizontalpodautoscaler_status_condition", "condition", condition, "status", status), v)
			}
		}
	}

	vpa := with(ksm, "", "namespace", "shop", "verticalpodautoscaler", "api",
		"target_api_version", "apps/v1", "target_kind", "Deployment", "target_name", "api", "container", "app")
	const vpaTarget = "kube_customresource_verticalpodautoscaler_status_recommendation_containerrecommendations_target"
	f.constant(with(vpa, vpaTarget, "resource", "cpu", "unit", "core"), 0.3)
	f.constant(with(vpa, vpaTarget, "resource", "memory", "unit", "byte"), 200<<20)
}

func (f *fixture) cadvisor(t *testing.T, ctx context.Context) {
	t.Helper()
	kubelet := map[string]string{"job": "kubelet", "metrics_path": "/metrics/cadvisor", "instance": "node-1"}
	for _, p := range pods {
		pl := with(kubelet, "", "namespace", p.namespace, "pod", p.name)
		// The pod's own cgroup: no container label, left out by the
		// dashboards.
		f.counter(t, ctx, with(pl, "container_cpu_usage_seconds_total", "id", "/kubepods/"+p.name), 0.5)
		f.constant(with(pl, "container_memory_working_set_bytes", "id", "/kubepods/"+p.name), 512<<20)
		for i, c := range p.containers {
			cl := with(pl, "", "container", c, "id", "/kubepods/"+p.name+"/"+c, "image", "example.com/"+c+":1")
			f.counter(t, ctx, with(cl, "container_cpu_usage_seconds_total"), 0.1*float64(i+1))
			f.constant(with(cl, "container_memory_working_set_bytes"), float64((100*(i+1))<<20))
		}
	}
}
