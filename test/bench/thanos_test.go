package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// TestThanosScenario runs the thanos scenario at a tiny scale on the real
// components, without the main stack, so that it cannot rot: the pods
// blocks against Thanos Query produce figures, and after the kill of q1
// the requests are answered through q2, which Gantry's member metrics
// show. No wall-clock figure is asserted.
func TestThanosScenario(t *testing.T) {
	bin := toolbin.Require(t, "gantry", "prometheus", "thanos", "etcd", "kube-apiserver", "kube-controller-manager", "kwok")
	f := flags{
		thanos:   thanosFlags{pods: []int{20}, window: 3 * time.Second},
		clients:  []string{clientHPA},
		idle:     time.Second,
		requests: 10,
		relist:   5 * time.Second,
		workDir:  t.TempDir(),
		binDir:   bin,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rs, err := runThanos(ctx, f, "0s", &out)
	printTable(&out, rs)
	t.Logf("bench output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]result{}
	for _, r := range rs {
		got[r.Scenario] = r
	}
	if r := got["thanos-pods"]; r.Requests != 10 || r.Gantry.P99 <= 0 || r.Raw == nil || r.Raw.P99 <= 0 || r.OverheadP99 <= 0 {
		t.Errorf("thanos-pods result without its figures: %+v", r)
	}
	fo := got["thanos-failover"].Failover
	if fo == nil {
		t.Fatal("no thanos-failover result")
	}
	if fo.Before.Requests == 0 || fo.After.Requests == 0 || fo.RawSurvivor.P99 <= 0 || fo.GoalP99Ms <= fo.ShareMs {
		t.Errorf("failover result without its figures: %+v", fo)
	}
	if fo.Before.MemberRequests["q1 success"] == 0 || fo.Before.MemberRequests["q2 success"] != 0 {
		t.Errorf("before the kill, Gantry's requests went to %v; want q1 only", fo.Before.MemberRequests)
	}
	q1Failures := 0.0
	for k, v := range fo.After.MemberFailures {
		if strings.HasPrefix(k, "q1 ") {
			q1Failures += v
		}
	}
	if fo.After.MemberRequests["q2 success"] == 0 || q1Failures == 0 || fo.UpAtEnd["q1"] != 0 || fo.UpAtEnd["q2"] != 1 {
		t.Errorf("after the kill: requests %v, failures %v, member_up %v; want q2 answering, q1 failing and down",
			fo.After.MemberRequests, fo.After.MemberFailures, fo.UpAtEnd)
	}
}

// TestThanosRules checks that the thanos scenario's config is valid and
// routes the pods scenario's rule, and only it, to the backend asked for,
// with both backends declared whichever it is (a reload may not change
// the backends section).
func TestThanosRules(t *testing.T) {
	const q1, q2 = "http://127.0.0.1:1001", "http://127.0.0.1:1002"
	var sections []string
	for _, backend := range []string{thanosBackend, thanosHABackend} {
		text, err := thanosRules(q1, q2, backend)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse([]byte(text), "rules.yaml")
		if err != nil {
			t.Fatalf("backend %s: %v", backend, err)
		}
		routed := map[string]string{}
		for _, r := range cfg.Rules {
			if r.Backend != "" {
				routed[r.SeriesQuery] = r.Backend
			}
		}
		want := map[string]string{`http_requests_total{namespace!="",pod!=""}`: backend}
		if diff := cmp.Diff(want, routed); diff != "" {
			t.Errorf("backend %s: rules routed (-want +got):\n%s", backend, diff)
		}
		got := map[string][]string{}
		for _, b := range cfg.Backends {
			got[b.Name] = append([]string{b.URL}, b.URLs...)
		}
		wantB := map[string][]string{thanosBackend: {q1}, thanosHABackend: {"", q1, q2}}
		if diff := cmp.Diff(wantB, got); diff != "" {
			t.Errorf("backend %s: backends (-want +got):\n%s", backend, diff)
		}
		sections = append(sections, text[:strings.Index(text, "#")])
	}
	if sections[0] != sections[1] {
		t.Errorf("the backends section differs between the two configs:\n%s\n%s", sections[0], sections[1])
	}
}

func TestParseMemberMetrics(t *testing.T) {
	const body = `# TYPE gantry_backend_member_up gauge
gantry_backend_member_up{backend="thanos-ha",member="http://127.0.0.1:1001"} 0
gantry_backend_member_up{backend="thanos-ha",member="http://127.0.0.1:1002"} 1
gantry_backend_member_up{backend="other",member="http://127.0.0.1:1003"} 1
# TYPE gantry_backend_member_failures_total counter
gantry_backend_member_failures_total{backend="thanos-ha",member="http://127.0.0.1:1001",reason="unreachable"} 3
# TYPE gantry_backend_member_retries_total counter
gantry_backend_member_retries_total{backend="thanos-ha"} 2
gantry_backend_member_retries_total{backend="other"} 7
# TYPE gantry_backend_member_request_duration_seconds histogram
gantry_backend_member_request_duration_seconds_bucket{backend="thanos-ha",member="http://127.0.0.1:1001",outcome="success",le="+Inf"} 40
gantry_backend_member_request_duration_seconds_sum{backend="thanos-ha",member="http://127.0.0.1:1001",outcome="success"} 1.5
gantry_backend_member_request_duration_seconds_count{backend="thanos-ha",member="http://127.0.0.1:1001",outcome="success"} 40
gantry_backend_member_request_duration_seconds_bucket{backend="thanos-ha",member="http://127.0.0.1:1002",outcome="success",le="+Inf"} 9
gantry_backend_member_request_duration_seconds_sum{backend="thanos-ha",member="http://127.0.0.1:1002",outcome="success"} 0.5
gantry_backend_member_request_duration_seconds_count{backend="thanos-ha",member="http://127.0.0.1:1002",outcome="success"} 9
# TYPE gantry_config_reloads_total counter
gantry_config_reloads_total{result="failure"} 0
gantry_config_reloads_total{result="success"} 1
`
	names := map[string]string{"http://127.0.0.1:1001": "q1", "http://127.0.0.1:1002": "q2"}
	m, err := parseMemberMetrics(strings.NewReader(body), thanosHABackend, names)
	if err != nil {
		t.Fatal(err)
	}
	want := memberMetrics{
		up:       map[string]float64{"q1": 0, "q2": 1},
		requests: map[string]float64{"q1 success": 40, "q2 success": 9},
		failures: map[string]float64{"q1 unreachable": 3},
		retries:  2,
		reloads:  map[string]float64{"failure": 0, "success": 1},
	}
	if diff := cmp.Diff(want, m, cmp.AllowUnexported(memberMetrics{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	before := memberMetrics{requests: map[string]float64{"q1 success": 30, "q2 success": 9}, failures: map[string]float64{}, retries: 1}
	d := m.minus(before)
	if diff := cmp.Diff(map[string]float64{"q1 success": 10}, d.requests); diff != "" {
		t.Errorf("requests' increase (-want +got):\n%s", diff)
	}
	if d.retries != 1 || d.failures["q1 unreachable"] != 3 {
		t.Errorf("increase: retries %v, failures %v; want 1 and q1 unreachable=3", d.retries, d.failures)
	}
}

func TestWindowOf(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	rs := []timedRequest{
		{at: at(0), d: 10 * time.Millisecond},
		{at: at(1), d: 20 * time.Millisecond},
		{at: at(2), d: 500 * time.Millisecond, err: errors.New("boom\nmore")}, // starts at the kill: after
		{at: at(3), d: 30 * time.Millisecond, err: errors.New("late")},
		{at: at(4), d: time.Second}, // at the end: neither
	}
	before, after := windowOf(rs, at(0), at(2), memberMetrics{}), windowOf(rs, at(2), at(4), memberMetrics{})
	if before.Requests != 2 || before.Errors != 0 || before.Latency.Max != 20 {
		t.Errorf("before: %+v, want 2 requests, no error, max 20 ms", before)
	}
	if after.Requests != 2 || after.Errors != 2 || after.FirstError != "boom" || after.Latency.Max != 500 || after.Latency.P50 != 30 {
		t.Errorf("after: %+v, want 2 requests, 2 errors (first: boom), p50 30 ms, max 500 ms", after)
	}
}

func TestBackendTimeout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		want  time.Duration
	}{
		{"default", nil, 10 * time.Second},
		{"set", []string{"--backend-max-in-flight=8", "--backend-timeout=4s"}, 4 * time.Second},
		{"last wins", []string{"--backend-timeout=4s", "-backend-timeout=6s"}, 6 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backendTimeout(tc.flags); got != tc.want {
				t.Errorf("backendTimeout(%q) = %s, want %s", tc.flags, got, tc.want)
			}
		})
	}
}
