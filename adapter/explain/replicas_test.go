package explain

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/collectors/backend"
)

var defaultTol = Tolerances{Down: DefaultTolerance, Up: DefaultTolerance}

// The expected counts are the HPA controller's (ReplicaCalculator in
// k8s.io/kubernetes pkg/controller/podautoscaler), worked by hand.
func TestPodsAverage(t *testing.T) {
	cases := []struct {
		name    string
		values  []int64
		missing int
		target  int64
		current int32
		want    int32
		usage   int64
	}{
		{name: "scale up: average 20 over target 10 on 3 pods", values: []int64{10000, 20000, 30000}, target: 10000, current: 3, want: 6, usage: 20000},
		{name: "within tolerance stays", values: []int64{10500, 10500}, target: 10000, current: 2, want: 2, usage: 10500},
		{name: "just outside the tolerance scales", values: []int64{11100, 11100}, target: 10000, current: 2, want: 3, usage: 11100},
		{name: "scale down", values: []int64{2000, 2000, 2000, 2000}, target: 10000, current: 4, want: 1, usage: 2000},
		{name: "average truncated in milli-units as the controller does", values: []int64{1, 2}, target: 1, current: 2, want: 2, usage: 1},
		{name: "missing pods at 0 on a scale-up", values: []int64{40000}, missing: 1, target: 10000, current: 2, want: 4, usage: 40000},
		{name: "missing pods at the target on a scale-down", values: []int64{1000}, missing: 3, target: 10000, current: 4, want: 4, usage: 1000},
		{name: "missing pods turning a scale-up around keep the count", values: []int64{11500}, missing: 1, target: 10000, current: 2, want: 2, usage: 11500},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := PodsAverage(tc.values, tc.missing, tc.target, tc.current, defaultTol)
			if p.Replicas != tc.want || p.Usage != tc.usage {
				t.Errorf("PodsAverage = %d replicas, usage %d; want %d, %d", p.Replicas, p.Usage, tc.want, tc.usage)
			}
		})
	}
}

func TestObjectAndExternal(t *testing.T) {
	cases := []struct {
		name string
		got  Proposal
		want int32
	}{
		{"value: 300 over 100 on 2 ready pods", Value(300000, 100000, 2, 2, defaultTol), 6},
		{"value: within tolerance", Value(105000, 100000, 4, 4, defaultTol), 4},
		{"value: scaled to zero proposes ceil(ratio)", Value(250000, 100000, 0, 0, defaultTol), 3},
		{"value: ready pods, not replicas", Value(200000, 100000, 5, 3, defaultTol), 6},
		{"average value: 900 over 100 per pod on 3", AverageValue(900000, 100000, 3, defaultTol), 9},
		{"average value: within tolerance", AverageValue(310000, 100000, 3, defaultTol), 3},
		{"utilization: 90% of 50% on 2 pods", Utilization([]int64{450, 450}, []int64{500, 500}, 50, 2, defaultTol), 4},
		{"utilization: 52% of 50% stays", Utilization([]int64{520}, []int64{1000}, 50, 1, defaultTol), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got.Replicas != tc.want {
				t.Errorf("replicas = %d, want %d (%+v)", tc.got.Replicas, tc.want, tc.got)
			}
		})
	}
	if p := AverageValue(900000, 100000, 3, defaultTol); p.Usage != 300000 {
		t.Errorf("average value usage = %d, want 300000 (value per replica)", p.Usage)
	}
}

func TestTolerances(t *testing.T) {
	asym := Tolerances{Down: 0.05, Up: 0.5}
	if !asym.Within(1.4) || asym.Within(0.9) || !defaultTol.Within(0.9) || defaultTol.Within(1.11) {
		t.Error("tolerances do not bound the ratio as 1-down <= ratio <= 1+up")
	}
}

// TestSafeError: no URL, address or credentials of a backend reach an
// explanation, whatever the error wraps.
func TestSafeError(t *testing.T) {
	urlErr := &url.Error{Op: "Post", URL: "https://user:secret@prom.internal:9090/api/v1/query?token=abc", Err: errors.New("dial tcp 10.0.0.7:9090: connect: connection refused")}
	cases := []struct {
		name     string
		err      error
		want     string
		badQuery bool
	}{
		{"unreachable backend", &backend.Error{Backend: "https://prom.internal:9090", Reason: "unreachable", Err: urlErr}, "unreachable", false},
		{"rejected query keeps the backend's reason", &backend.Error{Backend: "main", Reason: "bad_query", Err: errors.New("parse error at char 5: unexpected identifier")}, "bad query: parse error at char 5: unexpected identifier", true},
		{"a bare url.Error", fmt.Errorf("querying: %w", urlErr), "unreachable", false},
		{"text with an address", errors.New("proxy 192.168.1.1:3128 said no via http://proxy.local/x"), "proxy <address> said no via <url>", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, bad := SafeError(tc.err)
			if got != tc.want || bad != tc.badQuery {
				t.Errorf("SafeError = %q, %v; want %q, %v", got, bad, tc.want, tc.badQuery)
			}
			for _, leak := range []string{"secret", "token", "prom.internal", "10.0.0.7"} {
				if strings.Contains(got, leak) {
					t.Errorf("SafeError leaks %q: %q", leak, got)
				}
			}
		})
	}
}
