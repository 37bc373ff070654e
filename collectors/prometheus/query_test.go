package prometheus_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

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
