package prom_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gantry-dev/gantry/test/toolbin"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/test/prom"
)

// TestWriteAndQuery writes a gauge and a counter with explicit timestamps
// over the last five minutes and reads them back through the HTTP API.
func TestWriteAndQuery(t *testing.T) {
	// A batch size of 7 splits every series across several requests, which
	// is where time order matters.
	s := prom.Start(t, prom.WithBatchSize(7))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	end := time.Now().Truncate(time.Second)
	start := end.Add(-5 * time.Minute)
	const step = 15 * time.Second

	// Gauge: two series, given newest first to show Write sorts per series.
	// web-0 at sample i (t = start + i*step) is 1.5*i; web-1 is 100 + i.
	var gauge []prom.Sample
	for i := 20; i >= 0; i-- {
		ts := start.Add(time.Duration(i) * step)
		gauge = append(gauge,
			prom.Sample{Labels: map[string]string{"__name__": "gantry_test_queue_depth", "namespace": "shop", "pod": "web-0"}, Value: 1.5 * float64(i), Time: ts},
			prom.Sample{Labels: map[string]string{"__name__": "gantry_test_queue_depth", "namespace": "shop", "pod": "web-1", "empty": ""}, Value: 100 + float64(i), Time: ts},
		)
	}
	if err := s.Write(ctx, gauge); err != nil {
		t.Fatalf("writing gauge: %v", err)
	}

	counter := map[string]string{"__name__": "gantry_test_requests_total", "namespace": "shop", "pod": "web-0"}
	if err := s.WriteCounter(ctx, counter, 2.5, start, end, step); err != nil {
		t.Fatalf("writing counter: %v", err)
	}

	tests := []struct {
		name  string
		query string
		at    time.Time
		want  map[string]float64 // pod → value
		// tolerance is 0 for stored values; rate() extrapolates in floats.
		tolerance float64
	}{
		{name: "gauge at end is the last sample", query: `gantry_test_queue_depth`, at: end,
			want: map[string]float64{"web-0": 30, "web-1": 120}},
		{name: "gauge between samples is the earlier sample", query: `gantry_test_queue_depth`, at: start.Add(2*time.Minute + 5*time.Second),
			want: map[string]float64{"web-0": 12, "web-1": 108}},
		{name: "gauge before the first sample is absent", query: `gantry_test_queue_depth`, at: start.Add(-time.Second),
			want: map[string]float64{}},
		{name: "counter at end is perSecond times elapsed", query: `gantry_test_requests_total`, at: end,
			want: map[string]float64{"web-0": 750}},
		{name: "counter one minute in", query: `gantry_test_requests_total`, at: start.Add(time.Minute),
			want: map[string]float64{"web-0": 150}},
		{name: "rate over 1m at end is perSecond", query: `rate(gantry_test_requests_total[1m])`, at: end,
			want: map[string]float64{"web-0": 2.5}, tolerance: 1e-9},
		{name: "increase over 2m at end", query: `increase(gantry_test_requests_total[2m])`, at: end,
			want: map[string]float64{"web-0": 300}, tolerance: 1e-9},
		{name: "label selector picks one series", query: `gantry_test_queue_depth{pod="web-1"}`, at: end,
			want: map[string]float64{"web-1": 120}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := instantQuery(ctx, t, s.URL(), tc.query, tc.at)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool {
				return a == b || math.Abs(a-b) <= tc.tolerance*math.Max(math.Abs(a), math.Abs(b))
			})); diff != "" {
				t.Errorf("%s at %s (-want +got):\n%s", tc.query, tc.at.Format(time.RFC3339), diff)
			}
		})
	}

	t.Run("series API finds every written series", func(t *testing.T) {
		got := seriesQuery(ctx, t, s.URL(), `{__name__=~"gantry_test_.*"}`, start, end)
		want := []map[string]string{
			{"__name__": "gantry_test_queue_depth", "namespace": "shop", "pod": "web-0"},
			{"__name__": "gantry_test_queue_depth", "namespace": "shop", "pod": "web-1"},
			{"__name__": "gantry_test_requests_total", "namespace": "shop", "pod": "web-0"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("/api/v1/series (-want +got):\n%s", diff)
		}
	})
}

func TestWriteRejected(t *testing.T) {
	s := prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now().Truncate(time.Second)
	lbls := map[string]string{"__name__": "gantry_test_gauge"}

	if err := s.Write(ctx, []prom.Sample{{Labels: lbls, Value: 1, Time: now}}); err != nil {
		t.Fatalf("first write: %v", err)
	}
	// An older sample for a series Prometheus already has is out of order.
	err := s.Write(ctx, []prom.Sample{{Labels: lbls, Value: 2, Time: now.Add(-time.Minute)}})
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("out-of-order write: got error %v, want a 400 from Prometheus", err)
	}
	if err := s.Write(ctx, []prom.Sample{{Labels: map[string]string{"job": "x"}, Value: 1, Time: now}}); err == nil || !strings.Contains(err.Error(), "no __name__") {
		t.Errorf("write without __name__: got error %v, want one naming the missing __name__", err)
	}
}

// TestStartProcess covers the non-testing variant `make demo` uses: its own
// work dir, removed on Stop, and a process that is really gone afterwards.
func TestStartProcess(t *testing.T) {
	binDir := toolbin.Require(t, "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := prom.StartProcess(ctx, binDir, "", t.Logf, prom.WithStopGrace(5*time.Second))
	if err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	workDir := filepath.Dir(s.LogPath())
	resp, err := http.Get(s.URL() + "/-/healthy")
	if err != nil {
		s.Stop()
		t.Fatalf("GET /-/healthy: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /-/healthy: %s, want 200", resp.Status)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := syscall.Kill(s.PID(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d after Stop: kill -0 gave %v, want ESRCH", s.PID(), err)
	}
	if _, err := os.Stat(workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir %s after Stop: stat gave %v, want not-exist", workDir, err)
	}
}

func TestStartProcessMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := prom.StartProcess(context.Background(), dir, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "run `make tools`") {
		t.Fatalf("StartProcess with no binary in %s: got error %v, want one saying to run `make tools`", dir, err)
	}
}

func instantQuery(ctx context.Context, t *testing.T, base, query string, at time.Time) map[string]float64 {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	apiGet(ctx, t, base, "/api/v1/query", url.Values{"query": {query}, "time": {promTime(at)}}, &data)
	if data.ResultType != "vector" {
		t.Fatalf("%s: result type %q, want vector", query, data.ResultType)
	}
	got := map[string]float64{}
	for _, r := range data.Result {
		str, ok := r.Value[1].(string)
		if !ok {
			t.Fatalf("%s: value %v is not a string", query, r.Value)
		}
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			t.Fatalf("%s: value %q: %v", query, str, err)
		}
		got[r.Metric["pod"]] = v
	}
	return got
}

func seriesQuery(ctx context.Context, t *testing.T, base, match string, start, end time.Time) []map[string]string {
	t.Helper()
	var data []map[string]string
	apiGet(ctx, t, base, "/api/v1/series", url.Values{"match[]": {match}, "start": {promTime(start)}, "end": {promTime(end)}}, &data)
	sort.Slice(data, func(i, j int) bool { return fmt.Sprint(data[i]) < fmt.Sprint(data[j]) })
	return data
}

// apiGet calls a Prometheus HTTP API endpoint and decodes its data field.
func apiGet(ctx context.Context, t *testing.T, base, path string, params url.Values, data any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+params.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status    string          `json:"status"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
		Warnings  []string        `json:"warnings"`
		Infos     []string        `json:"infos"`
		ErrorType string          `json:"errorType"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %s: decoding: %v", path, resp.Status, err)
	}
	if body.Status != "success" {
		t.Fatalf("GET %s %v: %s: %s: %s", path, params, resp.Status, body.ErrorType, body.Error)
	}
	if len(body.Warnings) > 0 {
		t.Errorf("GET %s %v: warnings %v", path, params, body.Warnings)
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		t.Fatalf("GET %s: decoding data: %v", path, err)
	}
}

// promTime renders t as the API's Unix seconds with millisecond precision.
func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// TestHaltRestart halts Prometheus and starts it again: while halted its
// port refuses connections; restarted, it answers on the same URL with what
// was written before.
func TestHaltRestart(t *testing.T) {
	s := prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now().Truncate(time.Second)
	labels := map[string]string{"__name__": "gantry_test_restart", "pod": "web-0"}
	if err := s.Write(ctx, []prom.Sample{{Labels: labels, Value: 7, Time: now}}); err != nil {
		t.Fatal(err)
	}
	url, pid := s.URL(), s.PID()

	if err := s.Halt(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url + "/-/ready")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET /-/ready of a halted Prometheus: %s, want a refused connection", resp.Status)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET /-/ready of a halted Prometheus: %v, want connection refused", err)
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Errorf("restarted at %s, want the same URL %s", s.URL(), url)
	}
	if s.PID() == pid {
		t.Errorf("restarted with the same pid %d", pid)
	}
	if err := s.Restart(ctx); err == nil {
		t.Error("Restart of a running server succeeded, want an error")
	}
	got := instantQuery(ctx, t, s.URL(), "gantry_test_restart", now)
	if diff := cmp.Diff(map[string]float64{"web-0": 7}, got); diff != "" {
		t.Errorf("sample written before the halt (-want +got):\n%s", diff)
	}
}
