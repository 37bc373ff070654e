package backend

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

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

// ClientOptions configure a query backend's HTTP client.
type ClientOptions struct {
	// Backend names the backend in errors, logs and metrics.
	Backend string
	// URLs are the backend's members: one URL, or an HA set whose members
	// hold the same data. Requests are built for the first.
	URLs []*url.URL
	// HTTP configures the client (auth, TLS, headers); its
	// FollowRedirects is not read: Redirects decides.
	HTTP commoncfg.HTTPClientConfig
	// Redirects says which redirects are followed.
	Redirects Redirects
	// TenantHeader, when set, carries the tenant of each request's context
	// (WithTenant); a request without one is refused.
	TenantHeader string
	// ProbePath is what an HA set's prober GETs on a member that is down,
	// such as /api/v1/query?query=1.
	ProbePath string
	// ProbeInterval is how often members that are down are probed;
	// default 5s.
	ProbeInterval time.Duration
	// Metrics take the per-member metrics of an HA set.
	Metrics *Metrics
}

// NewHTTPClient returns the HTTP client of a query backend, configured by
// o.HTTP, following the redirects that o.Redirects allows. Requests within
// the members' origins go out as o.HTTP says; those outside them
// (redirects, when followed) through a transport with the config's proxy
// and CAs only, and with only the headers that describe the request
// (Accept, Content-Type, User-Agent): the tenant and custom headers set on
// a request are dropped too. Refused redirects are *Error with reason
// redirected. With several URLs, requests fail over between them
// (memberSet).
func NewHTTPClient(o ClientOptions) (*http.Client, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("no backend URL")
	}
	own, err := commoncfg.NewRoundTripperFromConfig(o.HTTP, "gantry")
	if err != nil {
		return nil, err
	}
	rt := &originRoundTripper{own: own}
	for _, u := range o.URLs {
		rt.origins = append(rt.origins, originOf(u))
	}
	if o.Redirects == AnyOrigin {
		if rt.other, err = commoncfg.NewRoundTripperFromConfig(withoutCredentials(o.HTTP), "gantry"); err != nil {
			return nil, err
		}
	}
	var top http.RoundTripper = rt
	if len(o.URLs) > 1 {
		if o.Metrics == nil {
			if o.Metrics, err = NewMetrics(nil); err != nil {
				return nil, err
			}
		}
		top = newMemberSet(o.Backend, o.URLs, top, o.ProbePath, o.ProbeInterval, o.Metrics)
	}
	if o.TenantHeader != "" {
		top = &tenantRoundTripper{header: o.TenantHeader, next: top}
	}
	redirects, backend := o.Redirects, o.Backend
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
	return &http.Client{Transport: top, CheckRedirect: check}, nil
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
	origins []string // of the backend's members
	own     http.RoundTripper
	other   http.RoundTripper // nil unless redirects to other hosts are followed
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
		if !slices.Contains(rt.origins, originOf(r.URL)) {
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
		closeIdle(t)
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
