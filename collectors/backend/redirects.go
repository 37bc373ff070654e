package backend

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	commoncfg "github.com/prometheus/common/config"
	"k8s.io/klog/v2"
)

// Redirects says which redirects a backend's client follows. Whatever
// answers at a backend's address could otherwise send Gantry, with the
// credentials and headers configured for the backend, to another host, and
// have that host's answer served as the backend's.
type Redirects int

const (
	// SameOrigin follows redirects within the backend's scheme, host and
	// port (a proxy that moves the API under another path), and refuses
	// any other: the default.
	SameOrigin Redirects = iota
	// NoRedirects refuses every redirect: follow_redirects: false in the
	// auth config.
	NoRedirects
	// AnyOrigin also follows redirects to other hosts (follow_redirects:
	// true in the auth config). What goes there, and anywhere after it,
	// carries no credentials, tenant or configured headers, and no client
	// certificate.
	AnyOrigin
)

// maxRedirects is net/http's bound on a chain of redirects.
const maxRedirects = 10

// NewHTTPClient returns the HTTP client of the query backend at base,
// configured by cfg, following the redirects that redirects allows.
// cfg.FollowRedirects is not read: redirects decides. Requests within
// base's origin go out as cfg says; those outside it (redirects, when
// followed) through a transport with cfg's proxy and CAs only, and with
// only the headers that describe the request (Accept, Content-Type,
// User-Agent): the tenant and custom headers set on a request are dropped
// too. Refused redirects are *Error with reason redirected.
func NewHTTPClient(backend string, base *url.URL, cfg commoncfg.HTTPClientConfig, redirects Redirects) (*http.Client, error) {
	own, err := commoncfg.NewRoundTripperFromConfig(cfg, "gantry")
	if err != nil {
		return nil, err
	}
	rt := &originRoundTripper{origin: originOf(base), own: own}
	if redirects == AnyOrigin {
		if rt.other, err = commoncfg.NewRoundTripperFromConfig(withoutCredentials(cfg), "gantry"); err != nil {
			return nil, err
		}
	}
	check := func(req *http.Request, via []*http.Request) error {
		code := 0
		if req.Response != nil {
			code = req.Response.StatusCode
		}
		var why string
		switch {
		case len(via) >= maxRedirects:
			why = fmt.Sprintf("stopped after %d redirects", maxRedirects)
		case redirects == NoRedirects:
			why = fmt.Sprintf("answered with a redirect (HTTP %d); not followed (follow_redirects: false in the auth config)", code)
		case redirects == SameOrigin && !rt.inOrigin(req):
			why = fmt.Sprintf("answered with a redirect (HTTP %d) to another host, scheme or port; not followed (follow_redirects: true in the auth config would follow it, without credentials)", code)
		default:
			return nil
		}
		// Where it pointed helps whoever debugs the backend, and belongs
		// in the log only: errors reach API responses.
		klog.V(2).InfoS("backend redirect not followed", "backend", backend, "status", code, "location", req.URL.Redacted())
		return &Error{Backend: backend, Reason: "redirected", Err: errors.New(why)}
	}
	return &http.Client{Transport: rt, CheckRedirect: check}, nil
}

// withoutCredentials is cfg with nothing that identifies Gantry to the
// backend: the proxy (without its CONNECT headers) and the CAs stay, so
// that another host is reached the same way and verified against the same
// roots; an insecure_skip_verify for the backend does not extend to it.
func withoutCredentials(cfg commoncfg.HTTPClientConfig) commoncfg.HTTPClientConfig {
	bare := commoncfg.DefaultHTTPClientConfig
	bare.ProxyConfig = cfg.ProxyConfig
	bare.ProxyConnectHeader = nil
	bare.EnableHTTP2 = cfg.EnableHTTP2
	bare.TLSConfig = commoncfg.TLSConfig{
		CA:         cfg.TLSConfig.CA,
		CAFile:     cfg.TLSConfig.CAFile,
		MinVersion: cfg.TLSConfig.MinVersion,
		MaxVersion: cfg.TLSConfig.MaxVersion,
	}
	return bare
}

// originRoundTripper sends requests within the backend's origin through
// the configured transport, and any other — or any after a hop outside it,
// as net/http keeps credentials off the rest of a chain once it left the
// original domain — through one without credentials.
type originRoundTripper struct {
	origin string
	own    http.RoundTripper
	other  http.RoundTripper // nil unless redirects to other hosts are followed
}

func (rt *originRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt.inOrigin(req) {
		return rt.own.RoundTrip(req)
	}
	if rt.other == nil {
		// CheckRedirect refuses such redirects first; a request made
		// for another origin is a bug.
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errors.New("request outside the backend's origin")
	}
	out := req.Clone(req.Context())
	out.Header = make(http.Header, len(keptHeaders))
	for _, h := range keptHeaders {
		if v, ok := req.Header[h]; ok {
			out.Header[h] = v
		}
	}
	return rt.other.RoundTrip(out)
}

// keptHeaders are the headers of a request that may go to another host:
// they say what the request is, not who asks.
var keptHeaders = []string{"Accept", "Content-Type", "User-Agent", "Idempotency-Key"}

// inOrigin reports whether req and every request before it in its chain of
// redirects are within the backend's origin.
func (rt *originRoundTripper) inOrigin(req *http.Request) bool {
	for r := req; r != nil; r = r.Response.Request {
		if originOf(r.URL) != rt.origin {
			return false
		}
		if r.Response == nil {
			break
		}
	}
	return true
}

func (rt *originRoundTripper) CloseIdleConnections() {
	for _, t := range []http.RoundTripper{rt.own, rt.other} {
		if ci, ok := t.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
}

// originOf is u's scheme, host and port, the port spelled out.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
