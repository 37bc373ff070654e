package prometheus

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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
	"github.com/gantry-dev/gantry/test/prom"
)

// querySeeds are answers in Prometheus' shape and beside it: each path of
// the one-pass decoder and each reason it hands over to the generic one.
var querySeeds = []string{
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web-0","namespace":"shop"},"value":[1700000000.123,"12.5"]},{"metric":{},"value":[1700000000,"NaN"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[]}}`,
	`{"status":"success","data":{"resultType":"vector","result":null}}`,
	`{"status":"success","data":{"resultType":"vector","result":[null]}}`,
	`{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"42"]}}`,
	`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"\u0034"]}}`,
	`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}`,
	`{"status":"success","data":{"resultType":"string","result":[1,"x"]}}`,
	`{"status":"success","data":{"result":[],"resultType":"vector"}}`,
	`{"Status":"success","DATA":{"resultType":"vector","Result":[{"Metric":{"a":"b"},"VALUE":[1,"1"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"],"metric":{"a":"\"q\"\u00e9\ud83d\ude00"}}]},"warnings":["w"],"infos":["i"]}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,"1",3]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[null,"1"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":["1","1"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,1]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[-0.5,"0x1p-2"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.123456,"1"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":null},"value":[1,"1"]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}]}}`,
	`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"],"x":[1,{"y":null}]}]}}`,
	`{"status":"success","data":null}`,
	`{"status":"success"}`,
	`{"status":"success","data":{"resultType":"vector","result":[]}} x`,
	`{"status":"error","errorType":"bad_data","error":"1:5: parse error"}`,
	`{"status":"error","errorType":"timeout","error":"x","data":{"resultType":"vector","result":[{"metric":{},"value":[1,1]}]}}`,
	`{"status":5,"data":{"resultType":"vector","result":[]}}`,
	`{"status":"success","warnings":[1],"data":{"resultType":"vector","result":[]}}`,
	`<html>login page</html>`,
	``,
}

// FuzzQueryDecoding: whatever the body of a 200 answer, the query decoder
// and the Prometheus client library's decoding (encoding/json and the model
// types, which Query used before) agree: the same value, or errors of the
// same reason. Never a panic. Where the library returns a vector holding a
// nil sample (`"result":[null]`), which would crash its first reader, the
// decoder must fail instead.
//
//	go test ./collectors/prometheus -run '^$' -fuzz FuzzQueryDecoding -fuzztime 60s
func FuzzQueryDecoding(f *testing.F) {
	for _, s := range querySeeds {
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
	ac, err := api.NewClient(api.Config{Address: srv.URL})
	if err != nil {
		f.Fatal(err)
	}
	lib := v1.NewAPI(ac)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			t.Skip()
		}
		got, _, gotErr := decodeQueryResponse(string(raw), backend.Limits{})

		// What the decoder does not promise to agree on, as for series:
		// invalid UTF-8 and duplicate keys.
		if !utf8.Valid(raw) || duplicateKeys(raw) {
			return
		}
		mu.Lock()
		body = raw
		mu.Unlock()
		val, _, _, wantErr := lib.Query(context.Background(), "x", time.Unix(1700000000, 0))
		if vec, ok := val.(model.Vector); ok && wantErr == nil {
			for _, s := range vec {
				if s == nil {
					if gotErr == nil {
						t.Fatalf("body %q: decoded %v, but the library returns a nil sample", raw, got)
					}
					return
				}
			}
		}
		// Compare what Query makes of each: a vector or an error's reason.
		want, wantReason := queryOutcome(val, wantErr)
		vec, gotReason := queryOutcome(got, gotErr)
		if wantReason != gotReason {
			// The library decodes a matrix more strictly (with jsoniter)
			// than encoding/json; Query refuses a matrix either way, but
			// an error status then loses to the matrix's decoding error.
			if wantReason != "" && gotReason != "" && wantErr != nil && strings.Contains(wantErr.Error(), "model.Matrix") {
				return
			}
			t.Fatalf("body %q: decoded %v (%v), but the library gives %v (%v)", raw, got, gotErr, val, wantErr)
		}
		if diff := cmp.Diff(want, vec, cmp.Comparer(func(a, b model.SampleValue) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("body %q (-library +decoder):\n%s", raw, diff)
		}
	})
}

// queryOutcome is what Query makes of a decoded answer: the vector, or
// the reason of its error.
func queryOutcome(val model.Value, err error) (model.Vector, string) {
	if err != nil {
		return nil, classify("p", err).Reason
	}
	vec, err := instantVector(val)
	if err != nil {
		return nil, "bad_response"
	}
	return vec, ""
}

// duplicateKeys reports whether some object of the body repeats a key,
// ignoring case as encoding/json does when it matches struct fields.
func duplicateKeys(raw []byte) bool {
	var stack []map[string]bool
	key := false // the next string in an object is a key
	var objects []bool
	i := 0
	for i < len(raw) {
		c := raw[i]
		switch c {
		case '{', '[':
			objects = append(objects, c == '{')
			stack = append(stack, map[string]bool{})
			key = c == '{'
		case '}', ']':
			if len(stack) == 0 {
				return false
			}
			stack, objects = stack[:len(stack)-1], objects[:len(objects)-1]
			key = false
		case ',':
			key = len(objects) > 0 && objects[len(objects)-1]
		case ':':
			key = false
		case '"':
			j := i + 1
			for j < len(raw) && raw[j] != '"' {
				if raw[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(raw) {
				return false
			}
			if key && len(stack) > 0 {
				k := strings.ToLower(string(raw[i+1 : j]))
				if stack[len(stack)-1][k] {
					return true
				}
				stack[len(stack)-1][k] = true
			}
			i = j
		}
		i++
	}
	return false
}

// TestQueryDecoding checks the values of answers in Prometheus' shape and
// of those the one-pass decoder hands over.
func TestQueryDecoding(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		want   model.Value
		reason string // of the error; "" for none
	}{{
		name: "vector in Prometheus' shape",
		body: querySeeds[0],
		want: model.Vector{
			{Metric: model.Metric{"pod": "web-0", "namespace": "shop"}, Value: 12.5, Timestamp: 1700000000123},
			{Metric: model.Metric{}, Value: model.SampleValue(math.NaN()), Timestamp: 1700000000000},
		},
	}, {
		name: "empty vector",
		body: querySeeds[1],
		want: model.Vector{},
	}, {
		name: "scalar",
		body: querySeeds[4],
		want: &model.Scalar{Value: 42, Timestamp: 1700000000500},
	}, {
		name: "keys in another case",
		body: querySeeds[9],
		want: model.Vector{{Metric: model.Metric{"a": "b"}, Value: 1, Timestamp: 1000}},
	}, {
		name: "escapes and keys in another order",
		body: querySeeds[10],
		want: model.Vector{{Metric: model.Metric{"a": `"q"é😀`}, Value: 1, Timestamp: 1000}},
	}, {
		name:   "null sample",
		body:   querySeeds[3],
		reason: "bad_response",
	}, {
		name:   "API error in a 200 answer",
		body:   querySeeds[23],
		reason: "bad_query",
	}, {
		name:   "text after the answer",
		body:   querySeeds[22],
		reason: "bad_response",
	}, {
		name:   "value not a string",
		body:   querySeeds[14],
		reason: "bad_response",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := decodeQueryResponse(tc.body, backend.Limits{})
			if tc.reason != "" {
				if err == nil {
					t.Fatalf("decoded %v, want a %s error", got, tc.reason)
				}
				if be := classify("p", err); be.Reason != tc.reason {
					t.Errorf("error %v, want reason %s", be, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b model.SampleValue) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQueryFastPath checks that answers in Prometheus' own shape are read by
// the one-pass decoder, not handed over to the generic decoding: the
// reason it exists (BenchmarkQuery).
func TestQueryFastPath(t *testing.T) {
	for _, body := range []string{querySeeds[0], querySeeds[1], querySeeds[4], string(vectorBodyOf(3)),
		`{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["w"],"infos":["i"]}`,
		// Thanos Query's answer: an empty "analysis" after the result.
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web-0"},"value":[1700000000.123,"12.5"]}],"analysis":{}}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"],"analysis":null}}`} {
		d := queryDecoder{s: body}
		fast, _, ok := d.envelope()
		if !ok {
			t.Errorf("one-pass decoder gave up on %q at byte %d", body, d.i)
			continue
		}
		generic, _, err := decodeQueryGeneric([]byte(body), backend.Limits{}.WithDefaults())
		if err != nil || fast.String() != generic.String() {
			t.Errorf("%q: one-pass %v, generic %v (%v)", body, fast, generic, err)
		}
	}
	// Any other key, or a non-empty analysis, is left to the generic path.
	for _, body := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[],"analysis":{"name":"x"}}}`,
		`{"status":"success","data":{"resultType":"vector","result":[],"stats":{}}}`,
		`{"status":"success","data":{"resultType":"vector","result":[],}}`,
	} {
		d := queryDecoder{s: body}
		if _, _, ok := d.envelope(); ok {
			t.Errorf("one-pass decoder accepted %q", body)
		}
	}
}

func vectorBodyOf(n int) []byte {
	var b []byte
	b = append(b, `{"status":"success","data":{"resultType":"vector","result":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"metric":{"namespace":"bench","pod":"web-`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `"},"value":[1700000000.123,"12.5"]}`...)
	}
	return append(b, `]}}`...)
}

// TestQueryFastPathAgainstPrometheus checks that a real Prometheus' answers
// (a vector with labels, an empty vector, a scalar, with and without
// warnings and infos) are read by the one-pass decoder.
func TestQueryFastPathAgainstPrometheus(t *testing.T) {
	srv := prom.Start(t)
	for _, q := range []string{
		`label_replace(vector(12.5), "pod", "web-0", "", "")`,
		`vector(1) > 2`,
		`scalar(vector(3))`,
		`rate(vector(1)[1m])`, // an error status: handed over, reported
		`sum(up)`,
	} {
		t.Run(q, func(t *testing.T) {
			resp, err := http.PostForm(srv.URL()+"/api/v1/query", url.Values{"query": {q}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				return
			}
			d := queryDecoder{s: string(body)}
			if _, _, ok := d.envelope(); !ok {
				t.Errorf("one-pass decoder gave up on Prometheus' answer %s at byte %d", body, d.i)
			}
			gotV, _, gotErr := decodeQueryResponse(string(body), backend.Limits{})
			wantV, _, wantErr := decodeQueryGeneric(body, backend.Limits{})
			if (gotErr == nil) != (wantErr == nil) || fmt.Sprint(gotV) != fmt.Sprint(wantV) {
				t.Errorf("decoded %v (%v), generic decoding %v (%v)", gotV, gotErr, wantV, wantErr)
			}
		})
	}
}
