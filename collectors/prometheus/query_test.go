package prometheus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

// BenchmarkQuery decodes the answer to a Pods query over 1,000 pods (one
// sample per pod, labels pod and namespace) two ways: the Prometheus client
// library's decode, as Query did before (kept as the reference), and
// Query. Each iteration is one HTTP round trip to an httptest server.
func BenchmarkQuery(b *testing.B) {
	for _, n := range []int{1000} {
		body := vectorBody(n)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}))
		b.Cleanup(srv.Close)
		c, err := promcollector.New(promcollector.Options{URL: srv.URL, Timeout: time.Minute}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ac, err := api.NewClient(api.Config{Address: srv.URL})
		if err != nil {
			b.Fatal(err)
		}
		lib := v1.NewAPI(ac)
		ctx := context.Background()
		ts := time.Unix(1700000000, 0)
		b.Run(fmt.Sprintf("client_golang/samples=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, _, _, err := lib.Query(ctx, "x", ts, v1.WithTimeout(time.Minute))
				if err != nil || len(v.(model.Vector)) != n {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Query/samples=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := c.Query(ctx, "x", ts)
				if err != nil || len(v) != n {
					b.Fatal(err, len(v))
				}
			}
		})
		// Thanos Query's answer carries an empty "analysis" after the
		// result.
		thanosBody := append(bytes.TrimSuffix(vectorBody(n), []byte(`]}}`)), `],"analysis":{}}}`...)
		thanos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(thanosBody)
		}))
		b.Cleanup(thanos.Close)
		tc, err := promcollector.New(promcollector.Options{URL: thanos.URL, Timeout: time.Minute}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("Query/thanos/samples=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := tc.Query(ctx, "x", ts)
				if err != nil || len(v) != n {
					b.Fatal(err, len(v))
				}
			}
		})
	}
}

func vectorBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"metric":{"namespace":"bench","pod":"web-%d"},"value":[1700000000.123,"%d.5"]}`, i, i%97)
	}
	sb.WriteString(`]}}`)
	return []byte(sb.String())
}

// TestQueryGETFallback checks that where a proxy refuses POST (403, 405,
// 501) the query is sent again as a GET with the same parameters, as
// Prometheus' own client does, and that other refusals are errors.
func TestQueryGETFallback(t *testing.T) {
	cases := []struct {
		name       string
		postStatus int
		wantGET    bool
		wantReason string
	}{
		{name: "405 Method Not Allowed", postStatus: http.StatusMethodNotAllowed, wantGET: true},
		{name: "403 Forbidden", postStatus: http.StatusForbidden, wantGET: true},
		{name: "501 Not Implemented", postStatus: http.StatusNotImplemented, wantGET: true},
		{name: "404 is an error, not a reason to retry", postStatus: http.StatusNotFound, wantReason: "backend_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					w.WriteHeader(tc.postStatus)
					return
				}
				vectorOK(w, r)
			})
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: 10 * time.Second}, nil)
			vec, err := c.Query(context.Background(), `sum(up{job="a b"})`, time.Unix(1700000000, 0))
			reqs := api.Seen()
			if !tc.wantGET {
				var be *backend.Error
				if !errors.As(err, &be) || be.Reason != tc.wantReason {
					t.Errorf("error %v, want reason %s", err, tc.wantReason)
				}
				if len(reqs) != 1 {
					t.Errorf("requests = %d, want the POST alone", len(reqs))
				}
				return
			}
			if err != nil || len(vec) != 1 {
				t.Fatalf("Query = %v, %v; want the GET's one sample", vec, err)
			}
			if len(reqs) != 2 || reqs[1].Method != http.MethodGet || reqs[1].Path != "/api/v1/query" {
				t.Fatalf("requests %+v, want a POST then a GET of /api/v1/query", reqs)
			}
			q, err := url.ParseQuery(reqs[1].RawQuery)
			if err != nil {
				t.Fatal(err)
			}
			if q.Get("query") != `sum(up{job="a b"})` || q.Get("time") != "1700000000" || q.Get("timeout") == "" {
				t.Errorf("GET parameters %v, want query, time and timeout", q)
			}
		})
	}
}
