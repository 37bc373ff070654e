package store

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
)

const textPlain = "text/plain; version=0.0.4; charset=utf-8"

// t0 is an arbitrary scrape time; samples are placed relative to it.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ingest(t *testing.T, s *Store, target, body string, ts time.Time) {
	t.Helper()
	if err := s.Ingest(target, strings.NewReader(body), textPlain, ts); err != nil {
		t.Fatalf("Ingest(%s at %s): %v", target, ts.Sub(t0), err)
	}
}

// values runs query at ts and returns each sample's value by its labels'
// string form.
func values(t *testing.T, s *Store, query string, ts time.Time) map[string]float64 {
	t.Helper()
	vec, err := s.Query(context.Background(), query, ts)
	if err != nil {
		t.Fatalf("Query(%q at %s): %v", query, ts.Sub(t0), err)
	}
	out := map[string]float64{}
	for _, smp := range vec {
		if smp.Timestamp != model.TimeFromUnixNano(ts.UnixNano()) {
			t.Errorf("Query(%q): sample %s has timestamp %s, want the query time %s", query, smp.Metric, smp.Timestamp, ts)
		}
		out[smp.Metric.String()] = float64(smp.Value)
	}
	return out
}

func approx(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestGaugeLastValue(t *testing.T) {
	s := New(Options{})
	ingest(t, s, "ksm", `# TYPE kube_deployment_status_replicas_unavailable gauge
kube_deployment_status_replicas_unavailable{namespace="shop",deployment="web"} 3
kube_deployment_status_replicas_unavailable{namespace="shop",deployment="api"} 0
`, at(0))
	ingest(t, s, "ksm", `# TYPE kube_deployment_status_replicas_unavailable gauge
kube_deployment_status_replicas_unavailable{namespace="shop",deployment="web"} 5
kube_deployment_status_replicas_unavailable{namespace="shop",deployment="api"} 0
`, at(15*time.Second))

	got := values(t, s, `kube_deployment_status_replicas_unavailable{namespace="shop"}`, at(20*time.Second))
	want := map[string]float64{
		`kube_deployment_status_replicas_unavailable{deployment="web", namespace="shop"}`: 5,
		`kube_deployment_status_replicas_unavailable{deployment="api", namespace="shop"}`: 0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after two scrapes (-want +got):\n%s", diff)
	}
	// Between the scrapes, the first value is the newest one.
	got = values(t, s, `kube_deployment_status_replicas_unavailable{deployment="web"}`, at(10*time.Second))
	if v := got[`kube_deployment_status_replicas_unavailable{deployment="web", namespace="shop"}`]; v != 3 || len(got) != 1 {
		t.Errorf("between the scrapes: got %v, want the first scrape's 3", got)
	}
	// Before the first scrape there is nothing.
	if got := values(t, s, `kube_deployment_status_replicas_unavailable`, at(-time.Second)); len(got) != 0 {
		t.Errorf("before the first scrape: got %v, want nothing", got)
	}
	// Past the lookback delta (5m) without a new scrape, nothing either, as
	// in Prometheus.
	if got := values(t, s, `kube_deployment_status_replicas_unavailable`, at(15*time.Second+lookbackDelta+time.Second)); len(got) != 0 {
		t.Errorf("past the lookback delta: got %v, want nothing", got)
	}
}

func counterScrapes(t *testing.T, s *Store, target string, vals ...float64) {
	t.Helper()
	for i, v := range vals {
		ingest(t, s, target, "# TYPE http_requests_total counter\nhttp_requests_total{pod=\"web-1\"} "+
			model.SampleValue(v).String()+"\n", at(time.Duration(i)*15*time.Second))
	}
}

func TestRateOverCounter(t *testing.T) {
	s := New(Options{})
	// One request per second, scraped every 15s from t0 to t0+120s.
	var vals []float64
	for i := range 9 {
		vals = append(vals, 100+15*float64(i))
	}
	counterScrapes(t, s, "app", vals...)
	got := values(t, s, `rate(http_requests_total[1m])`, at(120*time.Second))
	// The window (60s, 120s] holds the samples at 75..120s; Prometheus
	// extrapolates the 45s they span by one interval to the window's start.
	if v, ok := got[`{pod="web-1"}`]; !ok || !approx(v, 1) || len(got) != 1 {
		t.Errorf("rate(http_requests_total[1m]) = %v, want {pod=\"web-1\"} 1", got)
	}
	got = values(t, s, `sum(increase(http_requests_total[2m]))`, at(120*time.Second))
	if v := got[`{}`]; !approx(v, 120) {
		t.Errorf("sum(increase(http_requests_total[2m])) = %v, want 120", got)
	}
}

func TestCounterReset(t *testing.T) {
	s := New(Options{})
	// The pod restarts between the third and fourth scrape.
	counterScrapes(t, s, "app", 10, 25, 40, 5, 20)
	got := values(t, s, `resets(http_requests_total[2m])`, at(60*time.Second))
	if v := got[`{pod="web-1"}`]; v != 1 {
		t.Errorf("resets = %v, want 1", got)
	}
	// increase sees 30 before the reset and 20 after (5 + 15): 50 over the
	// 60s sampled, extrapolated to 72s (12s back to where the counter
	// would have been 0): 60.
	got = values(t, s, `increase(http_requests_total[75s])`, at(60*time.Second))
	if v := got[`{pod="web-1"}`]; !approx(v, 60) {
		t.Errorf("increase across a reset = %v, want 60", got)
	}
	if v := values(t, s, `rate(http_requests_total[75s])`, at(60*time.Second))[`{pod="web-1"}`]; v <= 0 {
		t.Errorf("rate across a reset = %v, want > 0 (a reset must not read as a drop)", v)
	}
}

func TestStaleness(t *testing.T) {
	s := New(Options{})
	both := "# TYPE kube_pod_info gauge\nkube_pod_info{pod=\"a\"} 1\nkube_pod_info{pod=\"b\"} 1\n"
	onlyA := "# TYPE kube_pod_info gauge\nkube_pod_info{pod=\"a\"} 1\n"
	ingest(t, s, "ksm", both, at(0))
	ingest(t, s, "ksm", both, at(15*time.Second))
	ingest(t, s, "ksm", onlyA, at(30*time.Second))

	want := map[string]float64{`kube_pod_info{pod="a"}`: 1}
	for _, d := range []time.Duration{30 * time.Second, 40 * time.Second, 2 * time.Minute} {
		if diff := cmp.Diff(want, values(t, s, `kube_pod_info`, at(d))); diff != "" {
			t.Errorf("at %s, after b left the scrape (-want +got):\n%s", d, diff)
		}
	}
	// Before the scrape that lost it, b is there.
	if got := values(t, s, `kube_pod_info{pod="b"}`, at(29*time.Second)); len(got) != 1 {
		t.Errorf("before b left: got %v, want b", got)
	}
	// Range functions see b's real samples but not the marker.
	got := values(t, s, `count_over_time(kube_pod_info{pod="b"}[1m])`, at(40*time.Second))
	if v := got[`{pod="b"}`]; v != 2 {
		t.Errorf("count_over_time over b = %v, want its 2 samples", got)
	}
	// b comes back.
	ingest(t, s, "ksm", both, at(45*time.Second))
	if got := values(t, s, `kube_pod_info`, at(45*time.Second)); len(got) != 2 {
		t.Errorf("after b came back: got %v, want a and b", got)
	}
}

func TestExplicitTimestamps(t *testing.T) {
	s := New(Options{})
	// cAdvisor stamps samples with its own collection time.
	ts := at(-5 * time.Second).UnixMilli()
	body := "# TYPE container_memory_working_set_bytes gauge\n" +
		"container_memory_working_set_bytes{container=\"app\",pod=\"web-1\"} 1024 " + strconv.FormatInt(ts, 10) + "\n"
	ingest(t, s, "node-1", body, at(0))
	vec, err := s.Query(context.Background(), `timestamp(container_memory_working_set_bytes)`, at(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || int64(vec[0].Value*1000) != ts {
		t.Errorf("timestamp() = %v, want the exposition's %d ms", vec, ts)
	}
}

func TestForget(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := New(Options{Registerer: reg})
	ingest(t, s, "node-1", "# TYPE m gauge\nm{pod=\"a\"} 1\nm{pod=\"b\"} 2\n", at(0))
	ingest(t, s, "node-2", "# TYPE m gauge\nm{pod=\"c\"} 3\n", at(0))
	if n := testutil.ToFloat64(s.metrics.series); n != 3 {
		t.Errorf("gantry_store_series = %v, want 3", n)
	}
	s.Forget("node-1")
	s.Forget("node-unknown")
	if diff := cmp.Diff(map[string]float64{`m{pod="c"}`: 3}, values(t, s, `m`, at(time.Second))); diff != "" {
		t.Errorf("after Forget(node-1) (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(s.metrics.series); n != 1 {
		t.Errorf("gantry_store_series = %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.metrics.targets); n != 1 {
		t.Errorf("gantry_store_targets = %v, want 1", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}

func TestSeries(t *testing.T) {
	s := New(Options{})
	ingest(t, s, "ksm", `# TYPE kube_pod_info gauge
kube_pod_info{namespace="a",pod="p1"} 1
kube_pod_info{namespace="b",pod="p2"} 1
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{namespace="a",deployment="d"} 2
`, at(0))
	ingest(t, s, "node-1", "# TYPE up gauge\nup 1\n", at(10*time.Minute))

	tests := []struct {
		name       string
		matchers   []string
		start, end time.Duration
		want       []model.LabelSet
	}{{
		name:     "one selector with a label matcher",
		matchers: []string{`kube_pod_info{namespace="a"}`},
		end:      time.Minute,
		want:     []model.LabelSet{{"__name__": "kube_pod_info", "namespace": "a", "pod": "p1"}},
	}, {
		name:     "several selectors, union without duplicates",
		matchers: []string{`{namespace="a"}`, `kube_pod_info`},
		end:      time.Minute,
		want: []model.LabelSet{
			{"__name__": "kube_deployment_spec_replicas", "namespace": "a", "deployment": "d"},
			{"__name__": "kube_pod_info", "namespace": "a", "pod": "p1"},
			{"__name__": "kube_pod_info", "namespace": "b", "pod": "p2"},
		},
	}, {
		name:     "regex on the name",
		matchers: []string{`{__name__=~"kube_deploy.*"}`},
		end:      time.Minute,
		want:     []model.LabelSet{{"__name__": "kube_deployment_spec_replicas", "namespace": "a", "deployment": "d"}},
	}, {
		name:     "outside the time range",
		matchers: []string{`kube_pod_info`, `up`},
		start:    5 * time.Minute,
		end:      6 * time.Minute,
		want:     nil,
	}, {
		name:     "only the later target in range",
		matchers: []string{`kube_pod_info`, `up`},
		start:    9 * time.Minute,
		end:      11 * time.Minute,
		want:     []model.LabelSet{{"__name__": "up"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Series(context.Background(), tc.matchers, at(tc.start), at(tc.end))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Series(%q) (-want +got):\n%s", tc.matchers, diff)
			}
		})
	}
	if _, err := s.Series(context.Background(), []string{`kube_pod_info{`}, at(0), at(time.Minute)); reason(err) != "bad_query" {
		t.Errorf("Series with a broken selector: %v, want a bad_query *backend.Error", err)
	}
}

func reason(err error) string {
	var be *backend.Error
	if errors.As(err, &be) && be.Backend == Backend {
		return be.Reason
	}
	return ""
}

func TestQueryErrors(t *testing.T) {
	s := New(Options{})
	ingest(t, s, "ksm", "# TYPE m gauge\nm 1\n", at(0))
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	tests := []struct {
		name   string
		ctx    context.Context
		query  string
		reason string
	}{
		{name: "does not parse", ctx: context.Background(), query: `sum(m`, reason: "bad_query"},
		{name: "unknown function", ctx: context.Background(), query: `nosuchfunc(m)`, reason: "bad_query"},
		{name: "range vector result", ctx: context.Background(), query: `m[5m]`, reason: "bad_query"},
		{name: "string result", ctx: context.Background(), query: `"x"`, reason: "bad_query"},
		{name: "deadline passed", ctx: expired, query: `m`, reason: "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Query(tc.ctx, tc.query, at(0))
			if got := reason(err); got != tc.reason {
				t.Errorf("Query(%q) = %v (reason %q), want reason %q", tc.query, err, got, tc.reason)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// TestQueryHonoursDeadline runs a query that reads many samples with a
// deadline that ends while it runs.
func TestQueryHonoursDeadline(t *testing.T) {
	s := New(Options{Retention: time.Hour})
	var b strings.Builder
	b.WriteString("# TYPE m gauge\n")
	for i := range 2000 {
		b.WriteString("m{i=\"" + strconv.Itoa(i) + "\"} 1\n")
	}
	for i := range 60 {
		ingest(t, s, "t", b.String(), at(time.Duration(i)*15*time.Second))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	// A subquery at 1s resolution over 15m of 2000 series: far more than
	// a millisecond of work.
	_, err := s.Query(ctx, `max_over_time(sum(rate(m[1m]))[15m:1s])`, at(15*time.Minute))
	if reason(err) != "timeout" {
		t.Errorf("got %v, want a timeout *backend.Error", err)
	}
}

func TestScalarResult(t *testing.T) {
	s := New(Options{})
	ingest(t, s, "ksm", "# TYPE m gauge\nm 4\n", at(0))
	got := values(t, s, `scalar(m) * 2`, at(0))
	if diff := cmp.Diff(map[string]float64{`{}`: 8}, got); diff != "" {
		t.Errorf("scalar (-want +got):\n%s", diff)
	}
	// NaN and ±Inf are dropped, as the Prometheus backend drops them.
	if got := values(t, s, `m / 0`, at(0)); len(got) != 0 {
		t.Errorf("m / 0 = %v, want no samples", got)
	}
}

func TestHistogramAndSummary(t *testing.T) {
	s := New(Options{})
	body := `# TYPE req_duration_seconds histogram
req_duration_seconds_bucket{le="0.1"} 0
req_duration_seconds_bucket{le="1"} 0
req_duration_seconds_bucket{le="+Inf"} 0
req_duration_seconds_sum 0
req_duration_seconds_count 0
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds_sum 3
rpc_seconds_count 10
`
	ingest(t, s, "app", body, at(0))
	body2 := strings.NewReplacer(`le="0.1"} 0`, `le="0.1"} 50`, `le="1"} 0`, `le="1"} 100`, `le="+Inf"} 0`, `le="+Inf"} 100`,
		"seconds_count 0", "seconds_count 100").Replace(body)
	ingest(t, s, "app", body2, at(30*time.Second))
	got := values(t, s, `histogram_quantile(0.5, rate(req_duration_seconds_bucket[1m]))`, at(30*time.Second))
	if v := got[`{}`]; !approx(v, 0.1) {
		t.Errorf("histogram_quantile = %v, want 0.1", got)
	}
	// le is normalized as in Prometheus 3: "1" is "1.0".
	if got := values(t, s, `req_duration_seconds_bucket{le="1.0"}`, at(30*time.Second)); len(got) != 1 {
		t.Errorf(`bucket le="1.0": got %v`, got)
	}
	got = values(t, s, `rpc_seconds`, at(30*time.Second))
	if diff := cmp.Diff(map[string]float64{`rpc_seconds{quantile="0.5"}`: 0.2}, got); diff != "" {
		t.Errorf("summary quantile (-want +got):\n%s", diff)
	}
}

func TestBrokenScrapeChangesNothing(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := New(Options{Registerer: reg})
	ingest(t, s, "ksm", "# TYPE m gauge\nm{a=\"1\"} 1\n", at(0))
	for _, body := range []string{
		"m{a=\"1\" 2\n",
		"m{a=\"1\",a=\"2\"} 2\n",
		"m{a=\"1\"} one\n",
		"m 1 2 3\n",
	} {
		if err := s.Ingest("ksm", strings.NewReader(body), textPlain, at(15*time.Second)); err == nil {
			t.Errorf("Ingest(%q) succeeded, want a parse error", body)
		}
	}
	// Nothing was marked stale by the broken scrapes.
	if diff := cmp.Diff(map[string]float64{`m{a="1"}`: 1}, values(t, s, `m`, at(20*time.Second))); diff != "" {
		t.Errorf("after broken scrapes (-want +got):\n%s", diff)
	}
	if n := testutil.ToFloat64(s.metrics.ingestErrors); n != 4 {
		t.Errorf("gantry_store_ingest_errors_total = %v, want 4", n)
	}
}

func TestRetention(t *testing.T) {
	s := New(Options{Retention: 10 * time.Minute})
	// 30 minutes of scrapes every 15s; series "gone" only in the first
	// minute.
	for i := range 120 {
		body := "# TYPE m gauge\nm{s=\"kept\"} 1\n"
		if i < 4 {
			body += "m{s=\"gone\"} 1\n"
		}
		ingest(t, s, "t", body, at(time.Duration(i)*15*time.Second))
	}
	now := at(119 * 15 * time.Second)
	got := values(t, s, `count_over_time(m[1h])`, now)
	n := got[`{s="kept"}`]
	// 10 minutes are 40 samples; chunks leave whole, so up to half a
	// retention more stays.
	if n < 40 || n > 61 {
		t.Errorf("samples kept over 30 minutes with a 10m retention = %v, want 40..61", n)
	}
	if _, ok := got[`{s="gone"}`]; ok || testutil.ToFloat64(s.metrics.series) != 1 {
		t.Errorf("a series last seen 29 minutes ago is still held: %v, %v series", got, testutil.ToFloat64(s.metrics.series))
	}
}

func TestContentTypes(t *testing.T) {
	s := New(Options{})
	om := "# TYPE c counter\nc_total 3\n# EOF\n"
	if err := s.Ingest("om", strings.NewReader(om), "application/openmetrics-text; version=1.0.0; charset=utf-8", at(0)); err != nil {
		t.Fatal(err)
	}
	// An unknown content type is read as text.
	if err := s.Ingest("txt", strings.NewReader("g 2\n"), "", at(0)); err != nil {
		t.Fatal(err)
	}
	// Delimited protobuf, as the client libraries write it.
	var pb bytes.Buffer
	enc := expfmt.NewEncoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim))
	name, value := "p", 7.0
	if err := enc.Encode(&dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: &value}}}}); err != nil {
		t.Fatal(err)
	}
	pbType := string(expfmt.NewFormat(expfmt.TypeProtoDelim))
	if err := s.Ingest("pb", bytes.NewReader(pb.Bytes()), pbType, at(0)); err != nil {
		t.Fatal(err)
	}
	got := values(t, s, `{__name__=~"c_total|g|p"}`, at(0))
	if diff := cmp.Diff(map[string]float64{`c_total`: 3, `g`: 2, `p`: 7}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A length prefix larger than the body is refused before the decoder
	// allocates it (2^63 made it panic).
	for _, body := range []string{"\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "\xb9\xb9\xb9\xb9\x08", string(pb.Bytes()[:pb.Len()-1])} {
		if err := s.Ingest("pb", strings.NewReader(body), pbType, at(time.Second)); err == nil {
			t.Errorf("Ingest(protobuf %q) succeeded, want an error", body)
		}
	}
}

// TestConcurrentIngestAndQuery scrapes several targets in parallel while
// queries and Forget run; with -race it checks the locking.
func TestConcurrentIngestAndQuery(t *testing.T) {
	s := New(Options{})
	var wg sync.WaitGroup
	for n := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := "node-" + strconv.Itoa(n)
			for i := range 50 {
				body := "# TYPE c counter\nc_total{node=\"" + target + "\",pod=\"p" + strconv.Itoa(i%3) + "\"} " + strconv.Itoa(i) + "\n"
				if err := s.Ingest(target, strings.NewReader(body), textPlain, at(time.Duration(i)*time.Second)); err != nil {
					t.Error(err)
					return
				}
				if i == 25 && n == 0 {
					s.Forget(target)
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := s.Query(context.Background(), `sum by (node) (rate(c_total[10s]))`, at(time.Duration(i)*time.Second)); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Series(context.Background(), []string{`c_total`}, at(0), at(time.Minute)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := values(t, s, `count(c_total)`, at(49*time.Second))
	// Every target ends with one live series: the pod of its last scrape.
	if v := got[`{}`]; v != 4 {
		t.Errorf("count(c_total) = %v, want 4", got)
	}
	if g, n := testutil.ToFloat64(s.metrics.series), testSeriesCount(s); g != float64(n) {
		t.Errorf("gantry_store_series = %v, but the store holds %d", g, n)
	}
}
