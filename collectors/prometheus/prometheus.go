// Package prometheus is Gantry's Prometheus backend: instant queries and
// series discovery over Prometheus' HTTP API, with the deadlines, shared
// in-flight queries and self-metrics of collectors/backend.
//
// It is a query backend: providers ask it per request (adapter/provider),
// and discovery lists series through it (adapter/discovery). It knows
// nothing about rules or Kubernetes.
package prometheus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promclient "github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"k8s.io/klog/v2"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// Options configure the connection to Prometheus.
type Options struct {
	// URL is Prometheus' base URL, e.g. http://prometheus.monitoring:9090.
	URL string
	// URLs, when set instead of URL, are the members of an HA set: servers
	// that hold the same data, such as a Prometheus HA pair. Requests go to
	// one and fail over to the others (backend.ClientOptions).
	URLs []string
	// Tenancy, when set, sends each request's tenant in its header
	// (X-Scope-OrgID, THANOS-TENANT), derived from the namespace of the API
	// request it answers; discovery lists each tenant's series.
	Tenancy *backend.Tenancy
	// HTTP is the HTTP client configuration (auth, TLS, headers). Its
	// FollowRedirects is not read: Redirects decides.
	HTTP commoncfg.HTTPClientConfig
	// Redirects says which redirects are followed; by default those
	// within the URL's scheme, host and port only.
	Redirects backend.Redirects
	// Limits bound what one answer may hold; zero values are the defaults.
	Limits backend.Limits
	// Timeout bounds every call that has no earlier deadline. Default 10s.
	Timeout time.Duration
	// Name is the backend's name in metrics and logs. Default "prometheus".
	Name string
	// MaxInFlight bounds the queries sent to the backend at once (identical
	// queries share one); more wait, within their deadline, for a slot.
	// Default 32 (Prometheus runs 20 at once by default and queues the rest).
	MaxInFlight int
}

// Client queries one Prometheus server, or one HA set of them.
type Client struct {
	hc      *http.Client
	base    *url.URL
	name    string
	calls   *backend.Calls
	tenancy *backend.Tenancy
}

// New returns a client for opts, registering its metrics on reg.
func New(opts Options, reg promclient.Registerer) (*Client, error) {
	raw := opts.URLs
	if len(raw) == 0 {
		if opts.URL == "" {
			return nil, errors.New("prometheus URL is required (--prometheus-url)")
		}
		raw = []string{opts.URL}
	}
	urls, err := backend.ParseMembers("prometheus", raw)
	if err != nil {
		return nil, err
	}
	u := urls[0]
	if err := opts.Tenancy.Validate(); err != nil {
		return nil, err
	}
	if err := opts.HTTP.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus HTTP client config: %w", err)
	}
	if opts.Name == "" {
		opts.Name = "prometheus"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 32
	}
	m, err := backend.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	tenantHeader := ""
	if opts.Tenancy != nil {
		tenantHeader = opts.Tenancy.Header
	}
	hc, err := backend.NewHTTPClient(backend.ClientOptions{Backend: opts.Name, URLs: urls, HTTP: opts.HTTP, Redirects: opts.Redirects, TenantHeader: tenantHeader, ProbePath: "/api/v1/query?query=1", Metrics: m})
	if err != nil {
		return nil, fmt.Errorf("prometheus HTTP client: %w", err)
	}
	calls := backend.NewCalls(backend.CallsOptions{Backend: opts.Name, Timeout: opts.Timeout, MaxInFlight: opts.MaxInFlight, TimePrecision: time.Millisecond, Limits: opts.Limits}, m)
	return &Client{hc: hc, base: u, name: opts.Name, calls: calls, tenancy: opts.Tenancy}, nil
}

// Name is the backend's name, for errors and logs.
func (c *Client) Name() string { return c.name }

// Query runs an instant query at ts. Identical queries in flight at the same
// time share one backend call; at most MaxInFlight are at the backend at
// once. NaN and ±Inf samples are dropped.
func (c *Client) Query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	tenant, err := c.tenancy.TenantOf(ctx, c.name)
	if err != nil {
		return nil, err
	}
	ctx = backend.WithTenant(ctx, tenant)
	return c.calls.Query(ctx, tenant, query, ts, func(ctx context.Context) (model.Vector, error) {
		return c.query(ctx, query, ts)
	})
}

func (c *Client) query(ctx context.Context, query string, ts time.Time) (model.Vector, error) {
	start := time.Now()
	form := url.Values{"query": {query}, "timeout": {evalTimeout(c.calls.Deadline(ctx)).String()}}
	if !ts.IsZero() {
		form.Set("time", formatTime(ts))
	}
	val, warnings, err := c.queryCall(ctx, form)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, c.fail("query", start, err)
	}
	if len(warnings) > 0 {
		klog.V(4).InfoS("query warnings", "backend", c.name, "query", query, "warnings", warnings)
	}
	vec, err := instantVector(val)
	if err != nil {
		return nil, c.fail("query", start, &backend.Error{Backend: c.name, Reason: "bad_response", Err: err})
	}
	return vec, nil
}

// instantVector is the vector a query's value stands for: a scalar is one
// sample without labels; anything else is a bad answer.
func instantVector(val model.Value) (model.Vector, error) {
	switch v := val.(type) {
	case model.Vector:
		return v, nil
	case *model.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: v.Value, Timestamp: v.Timestamp}}, nil
	case nil:
		// A success without data ({"status":"success"}) decodes to
		// neither a value nor an error. A panic here would not be
		// recovered per request, as it happens in the shared call's
		// goroutine, and would end the process.
		return nil, errNoResult
	default:
		return nil, fmt.Errorf("query returned a %s, expected an instant vector", val.Type())
	}
}

// evalTimeout is the server-side evaluation timeout sent with a query.
// Prometheus reads it as a Go-like duration without fractions ("9s",
// "500ms"), so it is truncated to whole seconds, or milliseconds under one
// second; the client's own deadline still bounds the call exactly.
func evalTimeout(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Truncate(time.Second)
	}
	return max(d.Truncate(time.Millisecond), time.Millisecond)
}

func (c *Client) fail(call string, start time.Time, err error) error {
	return c.calls.Fail(call, start, classify(c.name, err))
}

func classify(name string, err error) *backend.Error {
	var be *backend.Error
	if errors.As(err, &be) {
		return be
	}
	var le *backend.LimitError
	if errors.As(err, &le) {
		return &backend.Error{Backend: name, Reason: "too_large", Err: le}
	}
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		apiErr = withAPIBody(apiErr)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return &backend.Error{Backend: name, Reason: "timeout", Err: errors.New("no answer within the deadline")}
	case apiErr != nil:
		switch apiErr.Type {
		// Prometheus' message goes on to API responses and from there to
		// HPA conditions: one line, of bounded length, whoever wrote it.
		case v1.ErrBadData:
			return &backend.Error{Backend: name, Reason: "bad_query", Err: errors.New(backend.FirstLine(apiErr.Msg))}
		case v1.ErrTimeout, v1.ErrCanceled:
			return &backend.Error{Backend: name, Reason: "timeout", Err: errors.New(backend.FirstLine(apiErr.Msg))}
		case v1.ErrBadResponse:
			return &backend.Error{Backend: name, Reason: "bad_response", Err: errors.New(backend.FirstLine(apiErr.Msg))}
		default:
			return &backend.Error{Backend: name, Reason: "backend_error", Err: errors.New(backend.FirstLine(fmt.Sprintf("%s: %s", apiErr.Type, apiErr.Msg)))}
		}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// url.Error carries the URL; keep only the cause.
		if uerr.Timeout() {
			return &backend.Error{Backend: name, Reason: "timeout", Err: errors.New("no answer within the deadline")}
		}
		return &backend.Error{Backend: name, Reason: "unreachable", Err: backend.WithoutAddress(uerr.Err)}
	}
	return &backend.Error{Backend: name, Reason: "backend_error", Err: err}
}

// withAPIBody recovers the error type and message of an API error that the
// client library reports only by status code: it decodes the API's JSON
// body for 400 and 422 alone, but Prometheus answers an evaluation timeout
// with 503, a cancelled query with 499 and an internal error with 500, each
// with the same JSON body.
func withAPIBody(e *v1.Error) *v1.Error {
	if e.Type != v1.ErrServer && e.Type != v1.ErrClient || e.Detail == "" {
		return e
	}
	var body struct {
		Status    string       `json:"status"`
		ErrorType v1.ErrorType `json:"errorType"`
		Error     string       `json:"error"`
	}
	if json.Unmarshal([]byte(e.Detail), &body) != nil || body.Status != "error" || body.ErrorType == "" || body.Error == "" {
		return e
	}
	return &v1.Error{Type: body.ErrorType, Msg: body.Error}
}
