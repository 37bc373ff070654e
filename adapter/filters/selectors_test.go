package filters

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCheckMetricSelectors(t *testing.T) {
	const pod = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/web-0/http_requests_per_second"
	tests := []struct {
		name     string
		path     string
		query    url.Values
		wantCode int
		wantMsg  string
	}{
		{name: "no selector", path: pod, wantCode: http.StatusTeapot},
		{name: "valid selector", path: pod, query: url.Values{"metricLabelSelector": {"code in (200,201),method!=GET"}}, wantCode: http.StatusTeapot},
		{name: "unclosed set", path: pod, query: url.Values{"metricLabelSelector": {"code notin (500"}}, wantCode: http.StatusBadRequest,
			wantMsg: "metricLabelSelector: unable to parse requirement: found '', expected: ',' or ')'"},
		{name: "value too long", path: pod, query: url.Values{"metricLabelSelector": {"code=" + strings.Repeat("a", 64)}}, wantCode: http.StatusBadRequest,
			wantMsg: "metricLabelSelector: unable to parse requirement: values[0][code]: Invalid value"},
		{name: "second selector invalid", path: pod, query: url.Values{"metricLabelSelector": {"a=b", "=x"}}, wantCode: http.StatusBadRequest,
			wantMsg: "metricLabelSelector: found '=', expected"},
		{name: "external API is left to the API server", path: "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth", query: url.Values{"metricLabelSelector": {"=x"}}, wantCode: http.StatusTeapot},
		{name: "metrics.k8s.io is left alone", path: "/apis/metrics.k8s.io/v1beta1/pods", query: url.Values{"metricLabelSelector": {"=x"}}, wantCode: http.StatusTeapot},
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.path
			if tc.query != nil {
				u += "?" + tc.query.Encode()
			}
			rec := httptest.NewRecorder()
			CheckMetricSelectors(inner).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
			if rec.Code != tc.wantCode {
				t.Fatalf("code %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
			}
			if tc.wantMsg == "" {
				return
			}
			var status metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &status); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if status.Kind != "Status" || status.Reason != metav1.StatusReasonBadRequest || status.Code != http.StatusBadRequest || !strings.HasPrefix(status.Message, tc.wantMsg) {
				t.Errorf("status %+v, want a BadRequest starting %q", status, tc.wantMsg)
			}
		})
	}
}
