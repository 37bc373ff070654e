package prometheus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"
)

type shape struct {
	Name   string
	Labels []model.LabelName
}

// shapesOf is what SeriesShapes must give for sets: each distinct (name,
// sorted other label names) once, here in sorted order.
func shapesOf(sets []model.LabelSet) []shape {
	seen := map[string]bool{}
	var out []shape
	for _, ls := range sets {
		s := shape{Name: string(ls[model.MetricNameLabel])}
		for l := range ls {
			if l != model.MetricNameLabel {
				s.Labels = append(s.Labels, l)
			}
		}
		slices.Sort(s.Labels)
		key := fmt.Sprint(s)
		if !seen[key] {
			seen[key] = true
			out = append(out, s)
		}
	}
	sortShapes(out)
	return out
}

func sortShapes(s []shape) {
	slices.SortFunc(s, func(a, b shape) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return slices.Compare(a.Labels, b.Labels)
	})
}

func listShapes(ctx context.Context, c *promcollector.Client, matchers []string, start, end time.Time) ([]shape, error) {
	var out []shape
	err := c.SeriesShapes(ctx, matchers, start, end, func(name string, labels []model.LabelName) {
		out = append(out, shape{Name: name, Labels: labels})
	})
	sortShapes(out)
	return out, err
}

// TestSeriesDecoding serves series answers as Prometheus and proxies may
// write them and checks the streaming decoder against encoding/json's
// reading of the same body, for Series and SeriesShapes.
func TestSeriesDecoding(t *testing.T) {
	cases := []struct {
		name   string
		code   int
		body   string
		want   []model.LabelSet // nil with wantErr
		reason string           // backend.Error reason when an error is expected
	}{{
		name: "Prometheus' own form",
		code: 200,
		body: `{"status":"success","data":[{"__name__":"up","job":"a","instance":"x:1"},{"__name__":"up","job":"b","instance":"y:1"},{"__name__":"http_requests_total","namespace":"shop","pod":"web-1"}]}`,
		want: []model.LabelSet{{"__name__": "up", "job": "a", "instance": "x:1"}, {"__name__": "up", "job": "b", "instance": "y:1"},
			{"__name__": "http_requests_total", "namespace": "shop", "pod": "web-1"}},
	}, {
		name: "white space, warnings and infos around data, unknown keys with nested values",
		code: 200,
		body: " {\n \"status\" : \"success\" ,\"warnings\":[\"w1\",\"w2\"],\"x\":{\"a\":[1,-2.5e3,true,false,null,{\"b\":\"}\"}]},\n" +
			" \"data\" : [ { \"__name__\" : \"up\" , \"job\" : \"a\" } ] , \"infos\":[] }\n",
		want: []model.LabelSet{{"__name__": "up", "job": "a"}},
	}, {
		name: "escapes and non-ASCII values",
		code: 200,
		body: `{"status":"success","data":[{"__name__":"up","path":"a\"b\\c\/d\n\t\r\b\f","uni":"\u00e9\u4e2d\ud83d\ude00","raw":"日本"}]}`,
		want: []model.LabelSet{{"__name__": "up", "path": "a\"b\\c/d\n\t\r\b\f", "uni": "é中😀", "raw": "日本"}},
	}, {
		name: "lone surrogates become U+FFFD",
		code: 200,
		body: `{"status":"success","data":[{"__name__":"up","a":"\ud83dx","b":"\ude00"}]}`,
		want: []model.LabelSet{{"__name__": "up", "a": "\ufffdx", "b": "\ufffd"}},
	}, {
		name: "no series",
		code: 200,
		body: `{"status":"success","data":[]}`,
		want: []model.LabelSet{},
	}, {
		name: "null data",
		code: 200,
		body: `{"status":"success","data":null}`,
		want: []model.LabelSet{},
	}, {
		name:   "success without data",
		code:   200,
		body:   `{"status":"success"}`,
		reason: "bad_response",
	}, {
		name:   "truncated",
		code:   200,
		body:   `{"status":"success","data":[{"__name__":"up","job":"a"},{"__name__":"up","jo`,
		reason: "bad_response",
	}, {
		name:   "a label value that is not a string",
		code:   200,
		body:   `{"status":"success","data":[{"__name__":"up","job":1}]}`,
		reason: "bad_response",
	}, {
		name:   "data of a query",
		code:   200,
		body:   `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		reason: "bad_response",
	}, {
		name:   "trailing garbage",
		code:   200,
		body:   `{"status":"success","data":[]} x`,
		reason: "bad_response",
	}, {
		name:   "not JSON",
		code:   200,
		body:   `<html>proxy</html>`,
		reason: "bad_response",
	}, {
		name:   "error with a success code",
		code:   200,
		body:   `{"status":"error","errorType":"bad_data","error":"parse error"}`,
		reason: "bad_query",
	}, {
		name:   "API error",
		code:   400,
		body:   `{"status":"error","errorType":"bad_data","error":"invalid parameter \"match[]\""}`,
		reason: "bad_query",
	}, {
		name:   "evaluation timeout",
		code:   503,
		body:   `{"status":"error","errorType":"timeout","error":"query timed out"}`,
		reason: "timeout",
	}, {
		name:   "proxy error page",
		code:   502,
		body:   `<html>bad gateway</html>`,
		reason: "backend_error",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, tc.code, tc.body) })
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: 10 * time.Second}, nil)
			ctx := context.Background()
			got, err := c.Series(ctx, []string{"up"}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
			shapes, shapesErr := listShapes(ctx, c, []string{"up"}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
			if tc.reason != "" {
				for _, err := range []error{err, shapesErr} {
					var be *backend.Error
					if !errors.As(err, &be) || be.Reason != tc.reason {
						t.Errorf("error = %v, want a *backend.Error with reason %s", err, tc.reason)
					}
				}
				return
			}
			if err != nil || shapesErr != nil {
				t.Fatalf("Series: %v; SeriesShapes: %v", err, shapesErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b []model.LabelSet) bool {
				return len(a) == len(b) && (len(a) == 0 || fmt.Sprint(a) == fmt.Sprint(b))
			})); diff != "" {
				t.Errorf("Series (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(shapesOf(tc.want), shapes); diff != "" {
				t.Errorf("SeriesShapes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSeriesShapesAgainstPrometheus lists shapes from a real Prometheus:
// one per distinct (name, label names), whatever the values.
func TestSeriesShapesAgainstPrometheus(t *testing.T) {
	srv := prom.Start(t)
	now := time.Now()
	var samples []prom.Sample
	for i := range 300 {
		ls := map[string]string{"__name__": fmt.Sprintf("app_metric_%d_total", i%3), "namespace": fmt.Sprintf("ns-%d", i%4), "pod": fmt.Sprintf("pod-%d", i)}
		if i%3 == 0 {
			ls["code"] = fmt.Sprint(200 + i%2)
		}
		if i%10 == 0 {
			ls["le"] = "+Inf" // a few series of name 0 with one more label
		}
		samples = append(samples, prom.Sample{Labels: ls, Value: 1, Time: now.Add(-time.Minute)})
	}
	if err := srv.Write(context.Background(), samples); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, promcollector.Options{URL: srv.URL(), Timeout: 10 * time.Second}, nil)
	ctx := context.Background()
	matchers := []string{`{__name__=~"app_metric_.*"}`}
	sets, err := c.Series(ctx, matchers, now.Add(-10*time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 300 {
		t.Fatalf("Series: %d series, want 300", len(sets))
	}
	got, err := listShapes(ctx, c, matchers, now.Add(-10*time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []shape{
		{"app_metric_0_total", []model.LabelName{"code", "le", "namespace", "pod"}},
		{"app_metric_0_total", []model.LabelName{"code", "namespace", "pod"}},
		{"app_metric_1_total", []model.LabelName{"le", "namespace", "pod"}},
		{"app_metric_1_total", []model.LabelName{"namespace", "pod"}},
		{"app_metric_2_total", []model.LabelName{"le", "namespace", "pod"}},
		{"app_metric_2_total", []model.LabelName{"namespace", "pod"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SeriesShapes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(shapesOf(sets), got); diff != "" {
		t.Errorf("SeriesShapes disagrees with Series (-Series +SeriesShapes):\n%s", diff)
	}
}

// FuzzSeriesDecoding: whatever the body of a 200 answer, Series agrees with
// encoding/json: where encoding/json reads a successful series answer, the
// same label sets; where it cannot, an error. Never a panic.
func FuzzSeriesDecoding(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":[{"__name__":"up","job":"a"}]}`,
		`{"status":"success","data":[]}`,
		`{"status":"success","data":null,"warnings":["x"]}`,
		`{"status":"success","data":[{"a":"\u00e9\ud83d\ude00"}],"x":{"y":[1,2,{"z":null}]}}`,
		`{"status":"error","errorType":"bad_data","error":"x"}`,
		`{"data":[{"__name__":"up"}]}`,
		`[`,
	} {
		f.Add([]byte(s))
	}
	var (
		mu   sync.Mutex
		body []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		w.WriteHeader(200)
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	c, err := promcollector.New(promcollector.Options{URL: srv.URL, Timeout: 10 * time.Second}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			t.Skip()
		}
		mu.Lock()
		body = raw
		mu.Unlock()
		got, err := c.Series(context.Background(), []string{"up"}, time.Unix(1700000000, 0), time.Unix(1700000060, 0))

		// What the decoder does not promise to agree on: invalid UTF-8
		// (passed through, encoding/json replaces it) and duplicate keys
		// (encoding/json keeps the last).
		if !utf8.Valid(raw) || bytesHaveDuplicateKeys(raw) {
			return
		}
		var top map[string]json.RawMessage
		if jsonErr := json.Unmarshal(raw, &top); jsonErr != nil {
			if err == nil {
				t.Errorf("body %q: decoded %v, but encoding/json says %v", raw, got, jsonErr)
			}
			return
		}
		var status string
		_ = json.Unmarshal(top["status"], &status)
		data, ok := top["data"]
		if !ok || status == "error" {
			return // an error either way, of a kind the table test checks
		}
		var series []map[string]string
		if jsonErr := json.Unmarshal(data, &series); jsonErr != nil {
			if err == nil {
				t.Errorf("body %q: decoded %v, but encoding/json says %v", raw, got, jsonErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("body %q: %v, but encoding/json reads it", raw, err)
		}
		var want []model.LabelSet
		for _, m := range series {
			ls := model.LabelSet{}
			for k, v := range m {
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
			want = append(want, ls)
		}
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("body %q:\nencoding/json %v\nstreaming     %v", raw, want, got)
		}
	})
}

// bytesHaveDuplicateKeys reports whether some object of the body repeats a
// key, as far as encoding/json's generic decoding can tell.
func bytesHaveDuplicateKeys(raw []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{object: v == '{', keys: map[string]bool{}, key: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.key {
				if top.keys[v] {
					return true
				}
				top.keys[v] = true
				top.key = false
				continue
			}
			if top != nil && top.object {
				top.key = true
			}
		default:
			if top != nil && top.object {
				top.key = true
			}
		}
	}
}

// BenchmarkSeries decodes a series answer of 100,000 series (200 names
// over 500 pods each, labels of an application exporter) three ways: the
// Prometheus client library's full decode, as Series did before (kept here
// as the reference), Series, and SeriesShapes, which is what discovery
// uses.
func BenchmarkSeries(b *testing.B) {
	for _, n := range []int{100_000} {
		body := seriesBody(n)
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
		start, end := time.Unix(1700000000, 0), time.Unix(1700000060, 0)
		b.Run(fmt.Sprintf("client_golang/series=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sets, _, _, err := lib.Series(ctx, []string{"up"}, start, end)
				if err != nil || len(sets) != n {
					b.Fatal(err, len(sets))
				}
			}
		})
		b.Run(fmt.Sprintf("Series/series=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sets, err := c.Series(ctx, []string{"up"}, start, end)
				if err != nil || len(sets) != n {
					b.Fatal(err, len(sets))
				}
			}
		})
		b.Run(fmt.Sprintf("SeriesShapes/series=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				k := 0
				if err := c.SeriesShapes(ctx, []string{"up"}, start, end, func(string, []model.LabelName) { k++ }); err != nil || k != 200 {
					b.Fatal(err, k)
				}
			}
		})
	}
}

func seriesBody(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"status":"success","data":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		m, pod := i%200, i/200
		fmt.Fprintf(&sb, `{"__name__":"app_metric_%03d_total","container":"app","endpoint":"http-metrics","instance":"10.0.%d.%d:8080","job":"team-%02d/app","namespace":"team-%02d","pod":"app-%07d","service":"app"}`,
			m, pod>>8&255, pod&255, pod%20, pod%20, pod)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}
