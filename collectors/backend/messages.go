package backend

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// FirstLine keeps the first line of s, at most 300 bytes of it, as valid
// UTF-8: backend messages go on to API responses and HPA conditions, one
// line of bounded length whoever wrote them.
func FirstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		// A rune cut in two becomes U+FFFD below, like any invalid byte.
		s = s[:300] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// WithoutAddress drops the address from a connection error ("dial tcp
// 10.0.0.1:9090: connect: connection refused"): errors reach API
// responses, which must not say where the backend is.
func WithoutAddress(err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("name lookup failed: %s", dnsErr.Err)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return fmt.Errorf("%s: %w", opErr.Op, opErr.Err)
	}
	return err
}
