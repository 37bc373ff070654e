package filters

import (
	"encoding/json"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
)

// CheckMetricSelectors answers 400 to a custom metrics request whose
// metricLabelSelector does not parse. custom-metrics-apiserver parses it
// itself and returns the parse error unwrapped, which the API server turns
// into a 500: the caller's mistake would read as Gantry failing. (The label
// selector, and the external metrics API's selector, are parsed by the API
// server's own option decoding, which answers 400.)
func CheckMetricSelectors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if api, _ := classifyPath(r.URL.Path); api == "custom.metrics.k8s.io" {
			for _, sel := range r.URL.Query()["metricLabelSelector"] {
				if _, err := labels.Parse(sel); err != nil {
					writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("metricLabelSelector: %v", err)))
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	status := err.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(status.Code))
	_ = json.NewEncoder(w).Encode(status)
}
