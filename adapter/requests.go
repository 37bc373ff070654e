package adapter

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/endpoints/responsewriter"
)

// requestMetrics counts the metrics API requests that passed authentication
// and authorization, by API, metric and code.
type requestMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRequestMetrics(reg prometheus.Registerer) *requestMetrics {
	m := &requestMetrics{
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

// wrap sits inside the authentication and authorization filters, so only
// allowed requests are counted.
func (m *requestMetrics) wrap(h http.Handler) http.Handler {
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
// resource (pods, nodes) for metrics.k8s.io.
func classifyPath(path string) (api, metric string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 || parts[0] != "apis" {
		return "", ""
	}
	switch parts[1] {
	case "custom.metrics.k8s.io", "external.metrics.k8s.io":
		api = parts[1]
		// apis/<group>/<version>/... : a metric request has at least one
		// segment past the version and ends with the metric name.
		if len(parts) > 4 {
			metric = parts[len(parts)-1]
		}
	case "metrics.k8s.io":
		api = parts[1]
		if len(parts) > 3 {
			metric = parts[3]
			if metric == "namespaces" && len(parts) > 5 {
				metric = parts[5]
			}
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

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
