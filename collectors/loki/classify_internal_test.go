package loki

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestClassifyTransportErrors checks that transport failures keep their
// cause but lose Loki's address, including failures a loopback-only test
// cannot produce for real: an unknown host, and a TLS error naming the host.
func TestClassifyTransportErrors(t *testing.T) {
	const host = "loki-gateway.monitoring.svc"
	urlErr := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://" + host + ":3100/loki/api/v1/query", Err: err}
	}
	cases := []struct {
		name       string
		err        error
		wantReason string
		wantMsg    string
		wantIs     error
	}{{
		name:       "connection refused",
		err:        urlErr(&net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 3100}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
		wantReason: "unreachable",
		wantMsg:    "loki: unreachable: dial: connect: connection refused",
		wantIs:     syscall.ECONNREFUSED,
	}, {
		name:       "unknown host",
		err:        urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}),
		wantReason: "unreachable",
		wantMsg:    "loki: unreachable: name lookup failed: no such host",
	}, {
		name:       "deadline while connecting",
		err:        urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}),
		wantReason: "timeout",
		wantMsg:    "loki: timeout: no answer within the deadline",
	}, {
		name:       "TLS error naming the host",
		err:        urlErr(errors.New("tls: failed to verify certificate: x509: certificate is valid for other.example, not " + host)),
		wantReason: "unreachable",
		wantMsg:    "loki: unreachable: tls: failed to verify certificate: x509: certificate is valid for other.example, not <loki>",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := classify(tc.err, host)
			if be.Reason != tc.wantReason || be.Error() != tc.wantMsg {
				t.Errorf("classify = %q (%s), want %q (%s)", be.Error(), be.Reason, tc.wantMsg, tc.wantReason)
			}
			if strings.Contains(be.Error(), host) || strings.Contains(be.Error(), "10.0.0.1") {
				t.Errorf("message names Loki's address: %q", be.Error())
			}
			if tc.wantIs != nil && !errors.Is(be, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false, want the cause kept", be, tc.wantIs)
			}
		})
	}
}
