package backend

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// An HA set is several URLs that hold the same data, such as the two
// members of a Prometheus HA pair. memberSet is the round tripper that
// sends each request to one of them:
//
//   - members are tried in the configured order, those that are up first;
//   - a connection error, a 5xx answer, or no answer within the attempt's
//     share of the request's deadline moves the request on to the next
//     member (each attempt may use the time left divided by the members
//     left, so that a hung member cannot spend the whole deadline);
//   - a member that failed failuresToDown requests in a row is down: it is
//     tried only after every member that is up, until a probe (a GET of
//     probePath every probeInterval, answered below 500) finds it healthy
//     again;
//   - requests whose body cannot be replayed are tried once.
//
// Requests are built for the first member's URL; memberSet rewrites the
// scheme, host and path prefix for the member it tries. Requests for any
// other URL (a redirect's target) go out unchanged.
type memberSet struct {
	backend       string
	members       []*member
	next          http.RoundTripper
	probePath     string
	probeInterval time.Duration
	metrics       *Metrics

	mu      sync.Mutex
	probing bool
}

// member is one URL of an HA set.
type member struct {
	url   *url.URL
	label string // the URL without credentials, query or fragment

	mu       sync.Mutex
	failures int // consecutive
	down     bool
}

const (
	failuresToDown       = 2
	defaultProbeInterval = 5 * time.Second
)

func newMemberSet(backend string, urls []*url.URL, next http.RoundTripper, probePath string, probeInterval time.Duration, m *Metrics) *memberSet {
	if probeInterval <= 0 {
		probeInterval = defaultProbeInterval
	}
	s := &memberSet{backend: backend, next: next, probePath: probePath, probeInterval: probeInterval, metrics: m}
	for _, u := range urls {
		mb := &member{url: u, label: MemberLabel(u)}
		s.members = append(s.members, mb)
		m.memberUp.WithLabelValues(backend, mb.label).Set(1)
	}
	return s
}

// MemberLabel is how metrics and logs name a member: its URL without
// credentials, query or fragment.
func MemberLabel(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment, c.RawFragment = nil, "", "", ""
	return strings.TrimSuffix(c.String(), "/")
}

// order is the members to try: those up in the configured order, then
// those down.
func (s *memberSet) order() []*member {
	up := make([]*member, 0, len(s.members))
	var down []*member
	for _, m := range s.members {
		if m.isDown() {
			down = append(down, m)
		} else {
			up = append(up, m)
		}
	}
	return append(up, down...)
}

func (m *member) isDown() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

func (s *memberSet) RoundTrip(req *http.Request) (*http.Response, error) {
	primary := s.members[0].url
	rest, ok := strings.CutPrefix(req.URL.Path, primary.Path)
	if originOf(req.URL) != originOf(primary) || !ok {
		return s.next.RoundTrip(req)
	}
	order := s.order()
	if req.Body != nil && req.GetBody == nil {
		order = order[:1]
	}
	ctx := req.Context()
	var lastErr error
	for i, m := range order {
		last := i == len(order)-1
		attempt, cancel := ctx, context.CancelFunc(func() {})
		if !last {
			if dl, ok := ctx.Deadline(); ok {
				share := time.Until(dl) / time.Duration(len(order)-i)
				attempt, cancel = context.WithTimeout(ctx, share)
			}
		}
		out := req.Clone(attempt)
		u := *req.URL
		u.Scheme, u.Host, u.User = m.url.Scheme, m.url.Host, m.url.User
		u.Path = m.url.Path + rest
		u.RawPath = ""
		out.URL, out.Host = &u, ""
		if i > 0 && req.Body != nil {
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			out.Body = body
		}
		start := time.Now()
		resp, err := s.next.RoundTrip(out)
		elapsed := time.Since(start).Seconds()
		switch {
		case err == nil && (resp.StatusCode < 500 || last):
			outcome := "success"
			if resp.StatusCode >= 500 {
				outcome = "error"
				s.failed(m, fmt.Sprintf("HTTP %d", resp.StatusCode), "server_error")
			} else {
				s.succeeded(m)
			}
			s.metrics.memberDuration.WithLabelValues(s.backend, m.label, outcome).Observe(elapsed)
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		case err == nil:
			// A 5xx: another member may answer.
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			lastErr = fmt.Errorf("HTTP %d", resp.StatusCode)
			s.failed(m, lastErr.Error(), "server_error")
		default:
			lastErr = err
			reason := "unreachable"
			if attempt.Err() != nil {
				reason = "timeout"
			}
			// A request the caller gave up on says nothing about the
			// member.
			if ctx.Err() == nil {
				s.failed(m, WithoutAddress(err).Error(), reason)
			}
		}
		cancel()
		s.metrics.memberDuration.WithLabelValues(s.backend, m.label, "error").Observe(elapsed)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !last {
			s.metrics.memberRetries.WithLabelValues(s.backend).Inc()
		}
	}
	return nil, lastErr
}

func (s *memberSet) succeeded(m *member) {
	m.mu.Lock()
	m.failures = 0
	m.mu.Unlock()
}

// failed counts a failure of m; after failuresToDown in a row m is down
// and the prober watches it.
func (s *memberSet) failed(m *member, why, reason string) {
	s.metrics.memberFailures.WithLabelValues(s.backend, m.label, reason).Inc()
	m.mu.Lock()
	m.failures++
	wentDown := !m.down && m.failures >= failuresToDown
	if wentDown {
		m.down = true
	}
	m.mu.Unlock()
	if !wentDown {
		return
	}
	s.metrics.memberUp.WithLabelValues(s.backend, m.label).Set(0)
	klog.InfoS("backend member down: tried after the others until a probe finds it healthy", "backend", s.backend, "member", m.label, "lastError", why)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.probing {
		s.probing = true
		go s.probe()
	}
}

// probe checks the members that are down every probeInterval, and ends
// when none is.
func (s *memberSet) probe() {
	t := time.NewTicker(s.probeInterval)
	defer t.Stop()
	for range t.C {
		anyDown := false
		for _, m := range s.members {
			if !m.isDown() {
				continue
			}
			if err := s.check(m); err != nil {
				anyDown = true
				klog.V(2).InfoS("backend member still down", "backend", s.backend, "member", m.label, "err", err)
				continue
			}
			m.mu.Lock()
			m.down, m.failures = false, 0
			m.mu.Unlock()
			s.metrics.memberUp.WithLabelValues(s.backend, m.label).Set(1)
			klog.InfoS("backend member up again", "backend", s.backend, "member", m.label)
		}
		if !anyDown {
			s.mu.Lock()
			// A member may have gone down since it was checked.
			for _, m := range s.members {
				if m.isDown() {
					anyDown = true
				}
			}
			if !anyDown {
				s.probing = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		}
	}
}

// check is one probe of m: a GET of probePath, answered below 500 within
// the probe interval (an answer that refuses the probe, such as a 401 for
// a missing tenant, still shows the member serving).
func (s *memberSet) check(m *member) error {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.probeInterval, 5*time.Second))
	defer cancel()
	u := *m.url
	path, query, _ := strings.Cut(s.probePath, "?")
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath, u.RawQuery = "", query
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := s.next.RoundTrip(req)
	if err != nil {
		return WithoutAddress(err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func (s *memberSet) CloseIdleConnections() { closeIdle(s.next) }

// cancelOnClose ends an attempt's context once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// ParseMembers parses the URLs of a backend: one, or an HA set whose
// members hold the same data. Each must be http(s)://host[:port][/path],
// without query or fragment.
func ParseMembers(what string, raw []string) ([]*url.URL, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s: no URL", what)
	}
	var urls []*url.URL
	seen := map[string]bool{}
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%s URL %q: expected http(s)://host[:port][/path]", what, MemberLabelString(r))
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		if key := MemberLabel(u); seen[key] {
			return nil, fmt.Errorf("%s URL %q: listed twice", what, key)
		} else {
			seen[key] = true
		}
		urls = append(urls, u)
	}
	return urls, nil
}

// MemberLabelString is MemberLabel of a URL that may not parse: without
// anything before an @, which may be credentials.
func MemberLabelString(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return MemberLabel(u)
	}
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		scheme, _, ok := strings.Cut(raw, "://")
		if ok {
			return scheme + "://…" + raw[i:]
		}
		return "…" + raw[i:]
	}
	return raw
}
