package enforce

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/test/prom"
)

// TestEscapeAttemptsAgainstPrometheus runs issue 16's escape attempts on
// real Prometheus servers. One holds the series of team-a and team-b, the
// other team-a's only. Each attempt, once confined to team-a, must answer
// the same on both: nothing of team-b can change it. And unconfined, it
// must answer differently on the first, which shows that team-b's data was
// there to be read.
func TestEscapeAttemptsAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs on a real Prometheus (bin/prometheus, built by `make tools`)")
	}
	both, alone := prom.Start(t), prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now().Truncate(time.Second)
	start, step := now.Add(-10*time.Minute), 15*time.Second
	// team-b's series have values far from team-a's, and a pod of its own.
	pods := map[string]map[string]float64{
		"team-a": {"a-1": 1, "a-2": 2},
		"team-b": {"b-1": 100, "b-2": 200, "b-only": 300},
	}
	for ns, ps := range pods {
		for pod, v := range ps {
			lbls := map[string]string{"namespace": ns, "pod": pod}
			var gauge []prom.Sample
			for ts := start; !ts.After(now); ts = ts.Add(step) {
				gauge = append(gauge, prom.Sample{Labels: with(lbls, "__name__", "http_inflight_requests"), Value: v, Time: ts})
			}
			servers := []*prom.Server{both}
			if ns == "team-a" {
				servers = append(servers, alone)
			}
			for _, s := range servers {
				if err := s.WriteCounter(ctx, with(lbls, "__name__", "http_requests_total"), v, start, now, step); err != nil {
					t.Fatal(err)
				}
				if err := s.Write(ctx, gauge); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	at := strconv.FormatInt(now.Add(-2*time.Minute).Unix(), 10)
	for _, query := range []string{
		`sum(rate(http_requests_total[1m]))`,
		`{__name__=~"http_.+"}`,
		`count by (__name__) ({__name__=~".+"})`,
		`sum(http_inflight_requests) or sum(http_requests_total)`,
		`http_inflight_requests unless on (pod) http_inflight_requests{pod=~"a-1|b-1"}`,
		`http_inflight_requests * on () group_left () scalar(max(http_inflight_requests))`,
		`max_over_time(sum(rate(http_requests_total[1m]))[5m:30s])`,
		`label_replace(http_inflight_requests, "ns", "$1", "namespace", "(.*)")`,
		`absent(http_inflight_requests{pod="b-only"})`,
		`sum(http_requests_total offset 5m)`,
		`sum(http_requests_total @ ` + at + `)`,
		`topk(1, http_inflight_requests)`,
	} {
		t.Run(query, func(t *testing.T) {
			confined, err := PromQL(query, label, ns)
			if err != nil {
				t.Fatal(err)
			}
			got := instantQuery(ctx, t, both.URL(), confined, now)
			want := instantQuery(ctx, t, alone.URL(), confined, now)
			if len(want) == 0 {
				t.Fatalf("%s has no answer on team-a's series: the test data does not exercise it", confined)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: team-b's series change the answer (-team-a alone +both):\n%s", confined, diff)
			}
			if unconfined := instantQuery(ctx, t, both.URL(), query, now); cmp.Equal(unconfined, got) {
				t.Errorf("%s answers the same unconfined (%v): the test data shows no escape", query, unconfined)
			}
		})
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// instantQuery returns the answer to query at a time, each series (or the
// scalar, as "scalar") printed as its labels.
func instantQuery(ctx context.Context, t *testing.T, base, query string, at time.Time) map[string]string {
	t.Helper()
	u := base + "/api/v1/query?" + url.Values{"query": {query}, "time": {strconv.FormatInt(at.Unix(), 10)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if body.Status != "success" {
		t.Fatalf("%s: %s", query, body.Error)
	}
	out := map[string]string{}
	switch body.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(body.Data.Result, &vec); err != nil {
			t.Fatal(err)
		}
		for _, s := range vec {
			var parts []string
			for k, v := range s.Metric {
				parts = append(parts, k+"="+v)
			}
			slices.Sort(parts)
			out["{"+strings.Join(parts, ",")+"}"] = fmt.Sprint(s.Value[1])
		}
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(body.Data.Result, &v); err != nil {
			t.Fatal(err)
		}
		out["scalar"] = fmt.Sprint(v[1])
	default:
		t.Fatalf("%s: result type %q", query, body.Data.ResultType)
	}
	return out
}
