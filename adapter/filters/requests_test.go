package filters

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClassifyPath(t *testing.T) {
	const (
		custom   = "custom.metrics.k8s.io"
		external = "external.metrics.k8s.io"
		resource = "metrics.k8s.io"
	)
	cases := []struct {
		name, path, api, metric string
	}{
		// custom.metrics.k8s.io
		{"custom: pods by selector", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second", custom, "http_requests_per_second"},
		{"custom: one pod", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-1/http_requests_per_second", custom, "http_requests_per_second"},
		{"custom: object of another resource", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/web/ingress_requests_per_second", custom, "ingress_requests_per_second"},
		{"custom: object in an API group", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/web/jobs_queued", custom, "jobs_queued"},
		{"custom: the namespace itself", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/http_requests_per_second", custom, "http_requests_per_second"},
		{"custom: cluster-scoped object", "/apis/custom.metrics.k8s.io/v1beta2/nodes/node-a/node_load1", custom, "node_load1"},
		{"custom: all cluster-scoped objects", "/apis/custom.metrics.k8s.io/v1beta2/nodes/*/node_load1", custom, "node_load1"},
		{"custom: older version", "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/*/http_requests_per_second", custom, "http_requests_per_second"},
		{"custom: trailing slash", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second/", custom, "http_requests_per_second"},
		{"custom: group discovery", "/apis/custom.metrics.k8s.io", custom, ""},
		{"custom: version discovery (list of metrics)", "/apis/custom.metrics.k8s.io/v1beta2", custom, ""},
		{"custom: version discovery with a trailing slash", "/apis/custom.metrics.k8s.io/v1beta2/", custom, ""},
		{"custom: a namespace without a metric", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop", custom, ""},
		{"custom: an object without a metric", "/apis/custom.metrics.k8s.io/v1beta2/nodes/node-a", custom, ""},
		// external.metrics.k8s.io
		{"external: metric in a namespace", "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth", external, "queue_depth"},
		{"external: version discovery", "/apis/external.metrics.k8s.io/v1beta1", external, ""},
		{"external: a namespace without a metric", "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop", external, ""},
		// metrics.k8s.io
		{"resource: all pods", "/apis/metrics.k8s.io/v1beta1/pods", resource, "pods"},
		{"resource: pods of a namespace", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods", resource, "pods"},
		{"resource: one pod", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods/web-1", resource, "pods"},
		{"resource: all nodes", "/apis/metrics.k8s.io/v1beta1/nodes", resource, "nodes"},
		{"resource: one node", "/apis/metrics.k8s.io/v1beta1/nodes/node-a", resource, "nodes"},
		{"resource: version discovery", "/apis/metrics.k8s.io/v1beta1", resource, ""},
		{"resource: group discovery", "/apis/metrics.k8s.io", resource, ""},
		{"resource: namespaces is not a resource of the group", "/apis/metrics.k8s.io/v1beta1/namespaces", resource, ""},
		{"resource: a namespace without a resource", "/apis/metrics.k8s.io/v1beta1/namespaces/shop", resource, ""},
		{"resource: unknown resource", "/apis/metrics.k8s.io/v1beta1/services", resource, ""},
		// not the metrics APIs
		{"root", "/", "", ""},
		{"empty", "", "", ""},
		{"health", "/healthz", "", ""},
		{"readiness check", "/readyz/metric-discovery", "", ""},
		{"own metrics", "/metrics", "", ""},
		{"openapi", "/openapi/v2", "", ""},
		{"API group list", "/apis", "", ""},
		{"another group", "/apis/apps/v1/namespaces/shop/deployments/web", "", ""},
		{"core API", "/api/v1/namespaces/shop/pods", "", ""},
		{"a group that only starts like a metrics group", "/apis/custom.metrics.k8s.io.example.com/v1/namespaces/shop/pods/*/x", "", ""},
		{"metrics group not under /apis", "/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/x", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api, metric := classifyPath(tc.path)
			if diff := cmp.Diff([2]string{tc.api, tc.metric}, [2]string{api, metric}); diff != "" {
				t.Errorf("classifyPath(%q) (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

// TestRequestMetrics sends requests through wrap and checks what is
// counted: API, metric and code, with the metric dropped from failed
// requests so that made-up metric names cannot grow the label set.
func TestRequestMetrics(t *testing.T) {
	// The inner handler answers with the status in ?code= (several codes:
	// each is written in turn), or writes only a body with ?code=body, or
	// nothing at all with no code.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		codes := r.URL.Query()["code"]
		for _, c := range codes {
			if c == "body" {
				_, _ = io.WriteString(w, "{}")
				continue
			}
			n, err := strconv.Atoi(c)
			if err != nil {
				panic(err)
			}
			w.WriteHeader(n)
		}
	})
	reg := prometheus.NewRegistry()
	m := NewRequestMetrics(reg)
	srv := httptest.NewUnstartedServer(m.Wrap(inner))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // superfluous WriteHeader calls are the point
	srv.Start()
	defer srv.Close()

	requests := []struct {
		name     string
		path     string
		wantCode int // what the client sees
	}{
		{"custom metric served", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second?code=200", 200},
		{"same again", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/http_requests_per_second?code=200", 200},
		{"unknown custom metric", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/made_up_1?code=404", 404},
		{"another unknown custom metric", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/made_up_2?code=404", 404},
		{"metric list", "/apis/custom.metrics.k8s.io/v1beta2?code=200", 200},
		{"external metric, backend down", "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth?code=503", 503},
		{"external metric served without an explicit WriteHeader", "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth?code=body", 200},
		{"pod metrics, nothing written", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods", 200},
		{"pod metrics, bad field selector", "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?code=400", 400},
		{"the first status written is the one sent", "/apis/metrics.k8s.io/v1beta1/nodes?code=429&code=200", 429},
		{"a body then a status: 200 was sent", "/apis/metrics.k8s.io/v1beta1/nodes/node-a?code=body&code=500", 200},
		{"health check, not counted", "/healthz?code=200", 200},
		{"other API group, not counted", "/apis/apps/v1/deployments?code=404", 404},
	}
	for _, r := range requests {
		resp, err := http.Get(srv.URL + r.path)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.wantCode {
			t.Errorf("%s: status %d, want %d (wrap must not change the response)", r.name, resp.StatusCode, r.wantCode)
		}
	}

	want := `
# HELP gantry_requests_total Metrics API requests, by API group, metric (empty for lists and failed lookups) and HTTP code.
# TYPE gantry_requests_total counter
gantry_requests_total{api="custom.metrics.k8s.io",code="200",metric=""} 1
gantry_requests_total{api="custom.metrics.k8s.io",code="200",metric="http_requests_per_second"} 2
gantry_requests_total{api="custom.metrics.k8s.io",code="404",metric=""} 2
gantry_requests_total{api="external.metrics.k8s.io",code="200",metric="queue_depth"} 1
gantry_requests_total{api="external.metrics.k8s.io",code="503",metric=""} 1
gantry_requests_total{api="metrics.k8s.io",code="200",metric="nodes"} 1
gantry_requests_total{api="metrics.k8s.io",code="200",metric="pods"} 1
gantry_requests_total{api="metrics.k8s.io",code="400",metric=""} 1
gantry_requests_total{api="metrics.k8s.io",code="429",metric=""} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_requests_total"); err != nil {
		t.Error(err)
	}

	// One latency observation per counted request, by API.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "gantry_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "api" {
					got[l.GetValue()] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	wantCounts := map[string]uint64{"custom.metrics.k8s.io": 5, "external.metrics.k8s.io": 2, "metrics.k8s.io": 4}
	if diff := cmp.Diff(wantCounts, got); diff != "" {
		t.Errorf("gantry_request_duration_seconds sample counts by api (-want +got):\n%s", diff)
	}
}
