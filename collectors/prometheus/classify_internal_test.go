package prometheus

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// TestEvalTimeout checks the evaluation timeout sent to Prometheus, which
// reads it with model.ParseDuration after trying a float of seconds: no
// fractions, and never more than the time the call has.
func TestEvalTimeout(t *testing.T) {
	cases := []struct {
		name string
		in   time.Duration
		want string
	}{
		{name: "whole seconds", in: 10 * time.Second, want: "10s"},
		{name: "fraction of a second is dropped, not rounded up", in: 9990 * time.Millisecond, want: "9s"},
		{name: "just under two seconds", in: 2*time.Second - time.Nanosecond, want: "1s"},
		{name: "exactly one second", in: time.Second, want: "1s"},
		{name: "minutes", in: 90*time.Second + 999*time.Millisecond, want: "1m30s"},
		{name: "hours", in: 2*time.Hour + 500*time.Millisecond, want: "2h0m0s"},
		{name: "under a second: whole milliseconds", in: 999*time.Millisecond + 999*time.Microsecond, want: "999ms"},
		{name: "under a millisecond: one millisecond", in: 300 * time.Microsecond, want: "1ms"},
		{name: "nothing left: one millisecond", in: 0, want: "1ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := evalTimeout(tc.in)
			if got.String() != tc.want {
				t.Errorf("evalTimeout(%s) = %s, want %s", tc.in, got, tc.want)
			}
			if _, err := model.ParseDuration(got.String()); err != nil {
				t.Errorf("Prometheus cannot read %q: %v", got, err)
			}
			if tc.in >= time.Millisecond && got > tc.in {
				t.Errorf("evalTimeout(%s) = %s, more than the call has", tc.in, got)
			}
		})
	}
}

// TestClassifyTransportErrors checks that connection failures keep their
// cause but lose the address, including DNS failures, which a loopback-only
// test cannot produce for real.
func TestClassifyTransportErrors(t *testing.T) {
	const addr = "prometheus.monitoring.svc:9090"
	urlErr := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://" + addr + "/api/v1/query", Err: err}
	}
	cases := []struct {
		name       string
		err        error
		wantReason string
		wantMsg    string
		wantIs     error
	}{{
		name:       "connection refused",
		err:        urlErr(&net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9090}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
		wantReason: "unreachable",
		wantMsg:    "prometheus: unreachable: dial: connect: connection refused",
		wantIs:     syscall.ECONNREFUSED,
	}, {
		name:       "unknown host",
		err:        urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "prometheus.monitoring.svc", IsNotFound: true}}),
		wantReason: "unreachable",
		wantMsg:    "prometheus: unreachable: name lookup failed: no such host",
	}, {
		name:       "deadline while connecting",
		err:        urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}),
		wantReason: "timeout",
		wantMsg:    "prometheus: timeout: no answer within the deadline",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := classify("prometheus", tc.err)
			if be.Reason != tc.wantReason || be.Error() != tc.wantMsg {
				t.Errorf("classify = %q (%s), want %q (%s)", be.Error(), be.Reason, tc.wantMsg, tc.wantReason)
			}
			if strings.Contains(be.Error(), "prometheus.monitoring.svc") || strings.Contains(be.Error(), "10.0.0.1") {
				t.Errorf("message names the backend's address: %q", be.Error())
			}
			if tc.wantIs != nil && !errors.Is(be, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false, want the cause kept", be, tc.wantIs)
			}
		})
	}
}
