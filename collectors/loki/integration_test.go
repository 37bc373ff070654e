package loki_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
	lokicollector "github.com/gantry-dev/gantry/collectors/loki"
	"github.com/gantry-dev/gantry/test/loki"
)

// hostilePods are pod label values that would change a query's shape if
// pasted into it: a quote closing the selector, backticks, a newline, a
// comment, regexp syntax, and non-ASCII text.
var hostilePods = []string{
	`x"} or vector(1) #`,
	"a`b` |= `",
	"line\nbreak",
	`back\slash\"`,
	"ünïcödé-名前",
	`web-.*`,
}

// pushLines pushes, for each pod, errors[pod] lines containing "error" and
// as many "info" lines, spread over the 30 seconds before at, into streams
// {app="web", namespace="shop", pod=<pod>}.
func pushLines(ctx context.Context, t *testing.T, srv *loki.Server, tenant string, at time.Time, errors map[string]int) {
	t.Helper()
	var streams []loki.Stream
	for pod, n := range errors {
		st := loki.Stream{Labels: map[string]string{"app": "web", "namespace": "shop", "pod": pod}}
		for i := range 2 * n {
			line := fmt.Sprintf("level=info msg=%q i=%d", "request served", i)
			if i%2 == 0 {
				line = fmt.Sprintf("level=error msg=%q i=%d", "upstream error", i)
			}
			// Oldest first, as Loki wants entries of one stream in order.
			st.Entries = append(st.Entries, loki.Entry{Time: at.Add(-30 * time.Second).Add(time.Duration(i) * 100 * time.Millisecond), Line: line})
		}
		streams = append(streams, st)
	}
	if err := srv.PushTenant(ctx, tenant, streams); err != nil {
		t.Fatalf("push: %v", err)
	}
}

// byPod reads a vector as pod → value.
func byPod(t *testing.T, vec model.Vector) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range vec {
		pod := string(s.Metric["pod"])
		if _, dup := out[pod]; dup {
			t.Errorf("two samples for pod %q", pod)
		}
		out[pod] = float64(s.Value)
	}
	return out
}

// TestAgainstLoki runs the client against a real Loki: metric queries over
// pushed lines, series listing, hostile label values built into selectors
// by rules.Matcher, log queries and parse errors, and Loki going away and
// coming back.
func TestAgainstLoki(t *testing.T) {
	srv := loki.StartT(t, loki.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	at := time.Now().Truncate(time.Second)
	counts := map[string]int{"web-1": 3, "web-2": 7}
	for i, pod := range hostilePods {
		counts[pod] = 10 + i
	}
	pushLines(ctx, t, srv, "", at, counts)
	// Another app's errors, which no query below may count.
	if err := srv.Push(ctx, []loki.Stream{{Labels: map[string]string{"app": "api", "namespace": "shop", "pod": "web-1"},
		Entries: []loki.Entry{{Time: at.Add(-time.Second), Line: "error elsewhere"}}}}); err != nil {
		t.Fatal(err)
	}

	reg := promclient.NewRegistry()
	c := newClient(t, lokicollector.Options{URL: srv.URL(), Timeout: 30 * time.Second}, reg)
	// Evaluated at a time after the last line, so every line is in range.
	ts := at.Add(time.Second)

	t.Run("count_over_time by pod", func(t *testing.T) {
		vec, err := c.Query(ctx, `sum by (pod) (count_over_time({app="web"} |= "error" [1m]))`, ts)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]float64{}
		for pod, n := range counts {
			want[pod] = float64(n)
		}
		if diff := cmp.Diff(want, byPod(t, vec)); diff != "" {
			t.Errorf("error lines per pod (-want +got):\n%s", diff)
		}
		for _, s := range vec {
			if s.Timestamp != model.TimeFromUnixNano(ts.UnixNano()) {
				t.Errorf("sample time %v, want the evaluation time %v", s.Timestamp, ts)
			}
		}
	})

	t.Run("rate is count per second of the range", func(t *testing.T) {
		vec, err := c.Query(ctx, `sum by (pod) (rate({app="web",pod=~"web-[12]"} |= "error" [1m]))`, ts)
		if err != nil {
			t.Fatal(err)
		}
		got := byPod(t, vec)
		want := map[string]float64{"web-1": 3.0 / 60, "web-2": 7.0 / 60}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })); diff != "" {
			t.Errorf("error rate per pod (-want +got):\n%s", diff)
		}
	})

	t.Run("hostile values are literal matches", func(t *testing.T) {
		for _, pod := range hostilePods {
			m := rules.Matcher{Label: "pod", Type: labels.MatchEqual, Values: []string{pod}}
			q := `sum(count_over_time({app="web",` + m.String() + `} |= "error" [1m]))`
			vec, err := c.Query(ctx, q, ts)
			if err != nil {
				t.Errorf("pod %q: query %s: %v", pod, q, err)
				continue
			}
			if len(vec) != 1 || float64(vec[0].Value) != float64(counts[pod]) {
				t.Errorf("pod %q: query %s = %v, want one sample of %d", pod, q, vec, counts[pod])
			}
		}
		// All of them at once, as a regexp alternation (a pod list).
		m := rules.Matcher{Label: "pod", Type: labels.MatchRegexp, Values: hostilePods}
		q := `sum by (pod) (count_over_time({app="web",` + m.String() + `} |= "error" [1m]))`
		vec, err := c.Query(ctx, q, ts)
		if err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
		want := map[string]float64{}
		for _, pod := range hostilePods {
			want[pod] = float64(counts[pod])
		}
		if diff := cmp.Diff(want, byPod(t, vec)); diff != "" {
			t.Errorf("query %s (-want +got):\n%s", q, diff)
		}
		// A value that is a regexp matches only itself, not web-1 and web-2.
		m = rules.Matcher{Label: "pod", Type: labels.MatchRegexp, Values: []string{"web-.*"}}
		vec, err = c.Query(ctx, `sum by (pod) (count_over_time({app="web",`+m.String()+`}[1m]))`, ts)
		if err != nil {
			t.Fatal(err)
		}
		if got := byPod(t, vec); len(got) != 1 || got["web-.*"] == 0 {
			t.Errorf("regexp matcher for the value %q matched pods %v, want only that value", "web-.*", got)
		}
	})

	t.Run("series", func(t *testing.T) {
		m := rules.Matcher{Label: "pod", Type: labels.MatchRegexp, Values: append([]string{"web-1"}, hostilePods...)}
		sets, err := c.Series(ctx, []string{`{app="web",` + m.String() + `}`}, at.Add(-5*time.Minute), ts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range sets {
			if s["app"] != "web" || s["namespace"] != "shop" {
				t.Errorf("series %v: want app=web, namespace=shop", s)
			}
			got = append(got, string(s["pod"]))
		}
		want := append([]string{"web-1"}, hostilePods...)
		sort.Strings(got)
		sort.Strings(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pods of the listed streams (-want +got):\n%s", diff)
		}
		t.Logf("a stream as Loki lists it: %v", sets[0])
	})

	t.Run("log query is refused as not a metric query", func(t *testing.T) {
		_, err := c.Query(ctx, `{app="web"} |= "error"`, ts)
		var be *backend.Error
		if !errors.As(err, &be) || be.Reason != "bad_query" || !strings.HasPrefix(err.Error(), "loki: bad_query: not a metric query") {
			t.Errorf("log query: %v, want bad_query: not a metric query", err)
		}
	})

	t.Run("parse error is a bad query with Loki's message", func(t *testing.T) {
		_, err := c.Query(ctx, `sum(rate({app="web"} |= [1m]))`, ts)
		var be *backend.Error
		if !errors.As(err, &be) || be.Reason != "bad_query" || !strings.Contains(err.Error(), "parse error") {
			t.Errorf("bad query: %v, want bad_query with Loki's parse error", err)
		}
		if strings.Contains(err.Error(), strings.TrimPrefix(srv.URL(), "http://")) {
			t.Errorf("error names Loki's address: %v", err)
		}
	})

	t.Run("Loki down, then back", func(t *testing.T) {
		if err := srv.Halt(); err != nil {
			t.Fatal(err)
		}
		// The timeout is long: unreachable (not timeout) shows the call
		// failed on the refused connection, not on waiting.
		_, err := c.Query(ctx, `sum(count_over_time({app="web"}[1m]))`, ts)
		var be *backend.Error
		if !errors.As(err, &be) || be.Reason != "unreachable" {
			t.Errorf("query with Loki down: %v, want reason unreachable", err)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimPrefix(srv.URL(), "http://")) {
			t.Errorf("error names Loki's address: %v", err)
		}
		_, err = c.Series(ctx, []string{`{app="web"}`}, at.Add(-time.Minute), ts)
		if !errors.As(err, &be) || be.Reason != "unreachable" {
			t.Errorf("series with Loki down: %v, want reason unreachable", err)
		}
		if err := srv.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		// Lines pushed before the halt come back from the ingester's WAL.
		vec, err := c.Query(ctx, `sum(count_over_time({app="web",pod="web-2"} |= "error" [1m]))`, ts)
		if err != nil {
			t.Fatalf("query after restart: %v", err)
		}
		if len(vec) != 1 || vec[0].Value != 7 {
			t.Errorf("after restart: %v, want one sample of 7", vec)
		}
	})
}

// TestTenantAgainstLoki runs the client against a multi-tenant Loki
// (auth_enabled: true): the tenant's header selects its streams, another
// tenant sees none of them, and no tenant is refused.
func TestTenantAgainstLoki(t *testing.T) {
	srv := loki.StartT(t, loki.Options{MultiTenant: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	at := time.Now().Truncate(time.Second)
	pushLines(ctx, t, srv, "team-a", at, map[string]int{"web-1": 4})
	pushLines(ctx, t, srv, "team-b", at, map[string]int{"web-1": 9})
	const q = `sum by (pod) (count_over_time({app="web"} |= "error" [1m]))`
	ts := at.Add(time.Second)

	for _, tc := range []struct {
		tenant string
		want   map[string]float64
	}{
		{tenant: "team-a", want: map[string]float64{"web-1": 4}},
		{tenant: "team-b", want: map[string]float64{"web-1": 9}},
		{tenant: "team-c", want: map[string]float64{}},
	} {
		c := newClient(t, lokicollector.Options{URL: srv.URL(), Tenant: tc.tenant}, nil)
		vec, err := c.Query(ctx, q, ts)
		if err != nil {
			t.Errorf("tenant %q: %v", tc.tenant, err)
			continue
		}
		if diff := cmp.Diff(tc.want, byPod(t, vec)); diff != "" {
			t.Errorf("tenant %q (-want +got):\n%s", tc.tenant, diff)
		}
	}

	c := newClient(t, lokicollector.Options{URL: srv.URL()}, nil)
	_, err := c.Query(ctx, q, ts)
	var be *backend.Error
	if !errors.As(err, &be) || be.Reason != "backend_error" || !strings.Contains(err.Error(), "401") {
		t.Errorf("no tenant on a multi-tenant Loki: %v, want backend_error HTTP 401", err)
	}
}
