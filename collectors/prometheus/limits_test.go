package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

// streamed is an answer written in pieces: head, then size bytes of fill,
// then tail; with length, its Content-Length is announced.
type streamed struct {
	head, tail string
	fill       byte
	size       int
	length     bool
}

// serve writes the answer, stopping when the client stops reading; it
// reports how many bytes it wrote on written.
func (s streamed) serve(written chan<- int) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if s.length {
			w.Header().Set("Content-Length", strconv.Itoa(len(s.head)+s.size+len(s.tail)))
		}
		n, err := io.WriteString(w, s.head)
		chunk := []byte(strings.Repeat(string(s.fill), 1<<20))
		for left := s.size; left > 0 && err == nil; left -= len(chunk) {
			var m int
			m, err = w.Write(chunk[:min(left, len(chunk))])
			n += m
		}
		if err == nil {
			m, _ := io.WriteString(w, s.tail)
			n += m
		}
		select {
		case written <- n:
		default:
		}
	}
}

// checkTooLarge checks that err is a too_large backend error naming flag.
func checkTooLarge(t *testing.T, err error, flag string) {
	t.Helper()
	var be *backend.Error
	if !errors.As(err, &be) || be.Reason != "too_large" {
		t.Fatalf("error %v, want a backend error with reason too_large", err)
	}
	if !strings.HasPrefix(err.Error(), "prometheus: too_large: ") || !strings.Contains(err.Error(), flag) {
		t.Errorf("message %q does not name the backend, the reason and %s", err, flag)
	}
}

// TestQueryAnswerLimits: a query answer with more samples than
// --backend-max-samples, or more bytes than --backend-max-response-bytes,
// is refused with a reason naming the limit, and counted; a longer answer is
// not read to its end.
func TestQueryAnswerLimits(t *testing.T) {
	const defaultBytes = 64 << 20
	samples := func(n int, escaped bool) func(w http.ResponseWriter, r *http.Request) {
		body := vectorBody(n)
		if escaped {
			// An escape makes the one-pass decoder give up: the generic
			// decoding must count too.
			body = []byte(strings.Replace(string(body), `"bench"`, `"b\u0065nch"`, 1))
		}
		return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, string(body)) }
	}
	written := make(chan int, 1)
	cases := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request)
		// wantLimit is the limit the answer is over ("" for none).
		wantLimit, wantFlag string
		wantSamples         int
	}{{
		name:        "as many samples as the limit",
		respond:     samples(100_000, false),
		wantSamples: 100_000,
	}, {
		name:      "one sample more than the limit",
		respond:   samples(100_001, false),
		wantLimit: "max_samples", wantFlag: "--backend-max-samples",
	}, {
		name:      "one sample more than the limit, decoded generically",
		respond:   samples(100_001, true),
		wantLimit: "max_samples", wantFlag: "--backend-max-samples",
	}, {
		name: "an answer longer than the byte limit, streamed",
		respond: streamed{
			head: `{"status":"success","data":{"resultType":"vector","result":[`, fill: ' ', size: defaultBytes + 32<<20, tail: `]}}`,
		}.serve(written),
		wantLimit: "max_response_bytes", wantFlag: "--backend-max-response-bytes",
	}, {
		name: "an answer whose announced length is over the byte limit",
		respond: streamed{
			head: `{"status":"success","data":{"resultType":"vector","result":[`, fill: ' ', size: defaultBytes + 32<<20, tail: `]}}`, length: true,
		}.serve(written),
		wantLimit: "max_response_bytes", wantFlag: "--backend-max-response-bytes",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, tc.respond)
			reg := promclient.NewRegistry()
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: 20 * time.Second}, reg)
			vec, err := c.Query(context.Background(), "up", time.Unix(1700000000, 0))
			if tc.wantLimit == "" {
				if err != nil || len(vec) != tc.wantSamples {
					t.Fatalf("query = %d samples, %v; want %d", len(vec), err, tc.wantSamples)
				}
				if diff := cmp.Diff(map[string]float64{}, backendtest.Rejected(t, reg)); diff != "" {
					t.Errorf("rejected answers (-want +got):\n%s", diff)
				}
				return
			}
			checkTooLarge(t, err, tc.wantFlag)
			want := map[string]float64{"prometheus/query/" + tc.wantLimit: 1}
			if diff := cmp.Diff(want, backendtest.Rejected(t, reg)); diff != "" {
				t.Errorf("rejected answers (-want +got):\n%s", diff)
			}
			if tc.wantLimit == "max_response_bytes" {
				select {
				case n := <-written:
					if n > defaultBytes+16<<20 {
						t.Errorf("the backend wrote %d bytes before Gantry hung up, want not much more than the limit", n)
					}
				case <-time.After(10 * time.Second):
					t.Error("the backend is still writing 10s after Gantry refused its answer")
				}
			}
		})
	}
}

// TestSeriesAnswerLimits: a series listing holds no more than
// --backend-max-response-bytes of labels (a huge label value is refused
// while it streams in) and keeps no more than --backend-max-series series,
// or distinct shapes when only shapes are asked for.
func TestSeriesAnswerLimits(t *testing.T) {
	const defaultBytes = 64 << 20
	uniqueNames := func(n int) func(w http.ResponseWriter, r *http.Request) {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"__name__":"up","l%d":"x"}`, i)
		}
		sb.WriteString(`]}`)
		body := sb.String()
		return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, body) }
	}
	written := make(chan int, 1)
	hugeValue := streamed{head: `{"status":"success","data":[{"__name__":"up","big":"`, fill: 'a', size: defaultBytes + 32<<20, tail: `"}]}`}.serve(written)
	cases := []struct {
		name      string
		respond   func(w http.ResponseWriter, r *http.Request)
		shapes    bool
		wantLimit string // "" for none
		wantFlag  string
	}{{
		name:    "as many series as the limit",
		respond: uniqueNames(100_000),
	}, {
		name:      "one series more than the limit",
		respond:   uniqueNames(100_001),
		wantLimit: "max_series", wantFlag: "--backend-max-series",
	}, {
		name:      "one shape more than the limit",
		respond:   uniqueNames(100_001),
		shapes:    true,
		wantLimit: "max_series", wantFlag: "--backend-max-series",
	}, {
		name:      "a label value longer than the byte limit",
		respond:   hugeValue,
		wantLimit: "max_response_bytes", wantFlag: "--backend-max-response-bytes",
	}, {
		name:      "a label value longer than the byte limit, shapes only",
		respond:   hugeValue,
		shapes:    true,
		wantLimit: "max_response_bytes", wantFlag: "--backend-max-response-bytes",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, tc.respond)
			reg := promclient.NewRegistry()
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: 20 * time.Second}, reg)
			start, end := time.Unix(1699999000, 0), time.Unix(1700000000, 0)
			var n int
			var err error
			if tc.shapes {
				err = c.SeriesShapes(context.Background(), []string{"up"}, start, end, func(string, []model.LabelName) { n++ })
			} else {
				var sets []model.LabelSet
				sets, err = c.Series(context.Background(), []string{"up"}, start, end)
				n = len(sets)
			}
			if tc.wantLimit == "" {
				if err != nil || n != 100_000 {
					t.Fatalf("listing = %d, %v; want 100000", n, err)
				}
				return
			}
			checkTooLarge(t, err, tc.wantFlag)
			want := map[string]float64{"prometheus/series/" + tc.wantLimit: 1}
			if diff := cmp.Diff(want, backendtest.Rejected(t, reg)); diff != "" {
				t.Errorf("rejected answers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConfiguredLimits: the limits are the client's options; a series
// listing's limit counts what is kept — series for Series, distinct shapes
// for SeriesShapes, so that discovery lists any number of series of few
// shapes — and the bytes of what is kept, not only of one series.
func TestConfiguredLimits(t *testing.T) {
	series := func(labels ...string) func(w http.ResponseWriter, r *http.Request) {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":[`)
		for i, l := range labels {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"__name__":"up","%s":"v%d"}`, l, i)
		}
		sb.WriteString(`]}`)
		body := sb.String()
		return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, body) }
	}
	long := func(c byte) string { return strings.Repeat(string(c), 40) }
	cases := []struct {
		name      string
		limits    backend.Limits
		respond   func(w http.ResponseWriter, r *http.Request)
		call      string // query, series or shapes
		ctxSeries int    // backend.WithMaxSeries on the call's context, when not 0
		wantN     int
		wantLimit string // "" for none
	}{{
		name:    "query within max samples",
		limits:  backend.Limits{MaxSamples: 3},
		respond: func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, string(vectorBody(3))) },
		call:    "query", wantN: 3,
	}, {
		name:    "query over max samples",
		limits:  backend.Limits{MaxSamples: 3},
		respond: func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, string(vectorBody(4))) },
		call:    "query", wantLimit: "max_samples",
	}, {
		name:    "query over max response bytes",
		limits:  backend.Limits{MaxResponseBytes: 1024},
		respond: func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, string(vectorBody(20))) },
		call:    "query", wantLimit: "max_response_bytes",
	}, {
		name:    "series over max series",
		limits:  backend.Limits{MaxSeries: 2},
		respond: series("a", "a", "a"),
		call:    "series", wantLimit: "max_series",
	}, {
		name:    "series within a context's lower bound",
		limits:  backend.Limits{MaxSeries: 10},
		respond: series("a", "a", "a"),
		call:    "series", ctxSeries: 3, wantN: 3,
	}, {
		name:    "series over a context's lower bound (a MetricRule's --metricrule-max-series)",
		limits:  backend.Limits{MaxSeries: 10},
		respond: series("a", "a", "a"),
		call:    "series", ctxSeries: 2, wantLimit: "max_series",
	}, {
		name:    "a context's bound above the backend's does not raise it",
		limits:  backend.Limits{MaxSeries: 2},
		respond: series("a", "a", "a"),
		call:    "series", ctxSeries: 10, wantLimit: "max_series",
	}, {
		name:    "three series of one shape are one shape",
		limits:  backend.Limits{MaxSeries: 2},
		respond: series("a", "a", "a"),
		call:    "shapes", wantN: 1,
	}, {
		name:    "shapes over max series",
		limits:  backend.Limits{MaxSeries: 2},
		respond: series("a", "b", "c"),
		call:    "shapes", wantLimit: "max_series",
	}, {
		name:    "series whose labels kept exceed the bytes, each one within",
		limits:  backend.Limits{MaxResponseBytes: 100},
		respond: series(long('a'), long('b'), long('c')),
		call:    "series", wantLimit: "max_response_bytes",
	}, {
		name:    "shapes whose names kept exceed the bytes, each one within",
		limits:  backend.Limits{MaxResponseBytes: 100},
		respond: series(long('a'), long('b'), long('c')),
		call:    "shapes", wantLimit: "max_response_bytes",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, tc.respond)
			reg := promclient.NewRegistry()
			c := newClient(t, promcollector.Options{URL: api.URL, Limits: tc.limits}, reg)
			ctx := context.Background()
			if tc.ctxSeries != 0 {
				ctx = backend.WithMaxSeries(ctx, tc.ctxSeries)
			}
			start, end := time.Unix(1699999000, 0), time.Unix(1700000000, 0)
			var n int
			var err error
			call := tc.call
			switch tc.call {
			case "query":
				var vec model.Vector
				vec, err = c.Query(ctx, "up", end)
				n = len(vec)
			case "series":
				var sets []model.LabelSet
				sets, err = c.Series(ctx, []string{"up"}, start, end)
				n = len(sets)
			case "shapes":
				call = "series"
				err = c.SeriesShapes(ctx, []string{"up"}, start, end, func(string, []model.LabelName) { n++ })
			}
			if tc.wantLimit == "" {
				if err != nil || n != tc.wantN {
					t.Fatalf("%s = %d, %v; want %d", tc.call, n, err, tc.wantN)
				}
				return
			}
			checkTooLarge(t, err, "--backend-"+strings.ReplaceAll(tc.wantLimit, "_", "-"))
			if diff := cmp.Diff(map[string]float64{"prometheus/" + call + "/" + tc.wantLimit: 1}, backendtest.Rejected(t, reg)); diff != "" {
				t.Errorf("rejected answers (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkOversizedAnswer: what refusing an answer far over the byte limit
// costs. B/op is a small multiple of the limit (8 MiB here: the buffer's
// doublings, and the fake server's own allocations), not of the answer's
// size (256 MiB here), which is read no further.
func BenchmarkOversizedAnswer(b *testing.B) {
	for _, call := range []string{"query", "series"} {
		b.Run(call, func(b *testing.B) {
			head := `{"status":"success","data":{"resultType":"vector","result":[`
			if call == "series" {
				head = `{"status":"success","data":[{"__name__":"up","big":"`
			}
			srv := httptest.NewServer(http.HandlerFunc(streamed{head: head, fill: 'a', size: 256 << 20}.serve(nil)))
			defer srv.Close()
			c, err := promcollector.New(promcollector.Options{URL: srv.URL, Limits: backend.Limits{MaxResponseBytes: 8 << 20}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if call == "query" {
					_, err = c.Query(ctx, "up", time.Unix(1700000000, 0))
				} else {
					_, err = c.Series(ctx, []string{"up"}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
				}
				var be *backend.Error
				if !errors.As(err, &be) || be.Reason != "too_large" {
					b.Fatalf("error %v, want too_large", err)
				}
			}
		})
	}
}
