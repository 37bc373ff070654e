package filters

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/endpoints/responsewriter"
)

// RequestMetrics counts the metrics API requests that passed authentication
// and authorization, by API, metric and code.
type RequestMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewRequestMetrics returns request metrics registered on reg.
func NewRequestMetrics(reg prometheus.Registerer) *RequestMetrics {
	m := &RequestMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_requests_total",
			Help: "Metrics API requests, by API group, metric (empty for lists and failed lookups) and HTTP code.",
		}, []string{"api", "metric", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_request_duration_seconds",
			Help:    "Latency of metrics API requests, by API group.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"api"}),
	}
	reg.MustRegister(m.total, m.duration)
	return m
}

// Wrap sits inside the authentication and authorization filters, so only
// allowed requests are counted.
func (m *RequestMetrics) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api, metric := classifyPath(r.URL.Path)
		if api == "" {
			h.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(responsewriter.WrapForHTTP1Or2(rec), r)
		if rec.code >= 400 {
			metric = "" // keep the label set bounded by the metrics that exist
		}
		m.total.WithLabelValues(api, metric, strconv.Itoa(rec.code)).Inc()
		m.duration.WithLabelValues(api).Observe(time.Since(start).Seconds())
	})
}

// classifyPath returns the API group of a metrics API path and the metric it
// asks for: the last path segment for custom and external metrics, the
// resource (pods, nodes) for metrics.k8s.io. Discovery paths and paths that
// name no metric give an empty metric.
func classifyPath(path string) (api, metric string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 || parts[0] != "apis" {
		return "", ""
	}
	switch parts[1] {
	case "custom.metrics.k8s.io", "external.metrics.k8s.io":
		api = parts[1]
		// apis/<group>/<version>/ then, at the least, <resource>/<name>/<metric>
		// (custom, cluster-scoped) or namespaces/<namespace>/<metric>
		// (external): the metric is the last of six or more segments.
		if len(parts) >= 6 {
			metric = parts[len(parts)-1]
		}
	case "metrics.k8s.io":
		api = parts[1]
		// apis/metrics.k8s.io/<version>/<resource>[/<name>] or
		// .../namespaces/<namespace>/<resource>[/<name>].
		resource := ""
		if len(parts) > 3 {
			resource = parts[3]
			if resource == "namespaces" && len(parts) > 5 {
				resource = parts[5]
			}
		}
		if resource == "pods" || resource == "nodes" {
			metric = resource
		}
	}
	return api, metric
}

type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write without WriteHeader sends 200; a later WriteHeader changes nothing.
func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
