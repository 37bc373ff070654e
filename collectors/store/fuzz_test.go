package store

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fuzzContentTypes are the Content-Types FuzzIngest picks from.
var fuzzContentTypes = []string{
	textPlain,
	"application/openmetrics-text; version=1.0.0; charset=utf-8",
	"application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
	"",
	"text/html",
}

// FuzzIngest feeds arbitrary scrapes to Ingest, twice and then a third time
// without the second's content, and queries what was stored: nothing may
// panic, a rejected scrape must leave the store as it was, and every series
// a query returns must be one the store counts.
func FuzzIngest(f *testing.F) {
	f.Add("# TYPE m gauge\nm{a=\"1\"} 1\n", "m 2\n", uint8(0))
	f.Add("# TYPE c counter\nc_total{pod=\"x\"} 3 1700000000000\n", "# TYPE c counter\nc_total{pod=\"x\"} 1\n", uint8(0))
	f.Add("# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n", "", uint8(0))
	f.Add("# TYPE s summary\ns{quantile=\"0.9\"} 1\ns_sum 2\ns_count 3\n", "s_sum NaN\n", uint8(0))
	f.Add("# TYPE c counter\nc_total 3\n# EOF\n", "# TYPE c counter\nc_total 4\n# EOF\n", uint8(1))
	f.Add("m{a=\"\\\"\\n\\\\\"} +Inf\nm{a=\"x\"} -Inf\n", "m{a=\"x\",b=\"\"} 1\n", uint8(3))
	f.Add("{\"m\"} 1\n", "m{\"a.b\"=\"c\"} 1\n", uint8(0))
	f.Fuzz(func(t *testing.T, first, second string, ct uint8) {
		s := New(Options{Retention: time.Minute})
		contentType := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]
		times := []time.Time{at(0), at(15 * time.Second), at(30 * time.Second)}
		for i, body := range []string{first, second, first} {
			before := testSeriesCount(s)
			if err := s.Ingest("t", strings.NewReader(body), contentType, times[i]); err != nil {
				if after := testSeriesCount(s); after != before {
					t.Fatalf("rejected scrape %d (%v) changed the series count from %d to %d", i, err, before, after)
				}
			}
			vec, err := s.Query(context.Background(), `{__name__=~".+"}`, times[i])
			if err != nil {
				t.Fatalf("query after scrape %d: %v", i, err)
			}
			if n := testSeriesCount(s); len(vec) > n {
				t.Fatalf("query returned %d series, store holds %d", len(vec), n)
			}
			// rate drops the name, so two metrics with equal labels
			// collide: PromQL's own error, as in Prometheus.
			if _, err := s.Query(context.Background(), `sum(rate({__name__=~".+"}[1m]))`, times[i]); err != nil &&
				!strings.Contains(err.Error(), "same labelset") {
				t.Fatalf("rate after scrape %d: %v", i, err)
			}
			if _, err := s.Series(context.Background(), []string{`{__name__=~".+"}`}, at(-time.Hour), times[i]); err != nil {
				t.Fatalf("series after scrape %d: %v", i, err)
			}
		}
		s.Forget("t")
		if n := testSeriesCount(s); n != 0 {
			t.Fatalf("%d series after Forget", n)
		}
	})
}
