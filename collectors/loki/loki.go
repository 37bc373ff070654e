// Package loki is Gantry's Loki backend: instant LogQL metric queries and
// stream discovery over Loki's HTTP query API, with a tenant header,
// deadlines, shared in-flight queries and self-metrics.
//
// It is a query backend like collectors/prometheus, with which it shares
// the call bookkeeping, error type (*backend.Error) and self-metrics of
// collectors/backend: providers ask it per request for logqlQuery rules
// (adapter/provider), and discovery lists streams through it
// (adapter/discovery). It knows nothing about rules or Kubernetes; the
// queries it runs are built with escaped matchers (adapter/rules).
package loki

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"k8s.io/klog/v2"

	"github.com/gantry-dev/gantry/collectors/backend"
)

// defaultName is the client's name in errors, logs and metrics unless
// Options.Name says otherwise.
const defaultName = "loki"

// tenantHeader carries the tenant (org ID) in every request to a
// multi-tenant Loki.
const tenantHeader = "X-Scope-OrgID"

// Options configure the connection to Loki.
type Options struct {
	// URL is Loki's base URL (the query frontend or the single binary),
	// e.g. http://loki-gateway.monitoring:80; the API paths go under it.
	URL string
	// HTTP is the HTTP client configuration (auth, TLS, headers), the same
	// format as Prometheus'. Its FollowRedirects is not read: Redirects
	// decides.
	HTTP commoncfg.HTTPClientConfig
	// Redirects says which redirects are followed; by default those within
	// the URL's scheme, host and port only. Requests that leave it carry
	// neither the tenant nor credentials.
	Redirects backend.Redirects
	// Limits bound what one answer may hold; zero values are the defaults.
	// A metric query's answer is a vector of at most Loki's
	// max_query_series (500 by default) samples.
	Limits backend.Limits
	// URLs, when set instead of URL, are the members of an HA set of Lokis
	// that hold the same data; requests fail over between them.
	URLs []string
	// Tenant, when set, is sent as X-Scope-OrgID on every request. It is
	// Tenancy{Header: X-Scope-OrgID, Fixed: Tenant}; set one of the two.
	Tenant string
	// Tenancy, when set, sends each request's tenant in its header,
	// derived from the namespace of the API request it answers; discovery
	// lists each tenant's streams.
	Tenancy *backend.Tenancy
	// Name is the backend's name in metrics and logs. Default "loki".
	Name string
	// Timeout bounds every call that has no earlier deadline. Default 10s.
	Timeout time.Duration
	// MaxInFlight bounds the queries at Loki at once (identical ones share
	// one); more wait for a slot within their deadline. Default 32.
	MaxInFlight int
}

// Client queries one Loki, or one HA set of them.
type Client struct {
	http    *http.Client
	base    *url.URL
	hosts   []string // of every member, kept out of errors
	name    string
	tenancy *backend.Tenancy
	calls   *backend.Calls
}

// New returns a client for opts, registering its metrics on reg.
func New(opts Options, reg promclient.Registerer) (*Client, error) {
	raw := opts.URLs
	if len(raw) == 0 {
		if opts.URL == "" {
			return nil, errors.New("loki URL is required (--loki-url)")
		}
		raw = []string{opts.URL}
	}
	urls, err := backend.ParseMembers("loki", raw)
	if err != nil {
		return nil, err
	}
	if err := opts.HTTP.Validate(); err != nil {
		return nil, fmt.Errorf("loki HTTP client config: %w", err)
	}
	if opts.Name == "" {
		opts.Name = defaultName
	}
	tenancy := opts.Tenancy
	if opts.Tenant != "" {
		if tenancy != nil {
			return nil, errors.New("loki: set the tenant or the tenancy, not both")
		}
		tenancy = &backend.Tenancy{Header: tenantHeader, Fixed: opts.Tenant}
	}
	if tenancy != nil {
		if err := tenancy.Validate(); err != nil {
			return nil, fmt.Errorf("loki %w", err)
		}
		// The headers round tripper adds its values to ours: two org IDs
		// would reach Loki, which reads them as a multi-tenant query or
		// refuses them.
		if h := opts.HTTP.HTTPHeaders; h != nil {
			for name := range h.Headers {
				if strings.EqualFold(name, tenancy.Header) {
					return nil, fmt.Errorf("loki tenant is set twice: as the tenant and as the HTTP header %s; keep one", tenancy.Header)
				}
			}
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	m, err := backend.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering loki client metrics: %w", err)
	}
	header := ""
	if tenancy != nil {
		header = tenancy.Header
	}
	hc, err := backend.NewHTTPClient(backend.ClientOptions{Backend: opts.Name, URLs: urls, HTTP: opts.HTTP, Redirects: opts.Redirects, TenantHeader: header, ProbePath: "/loki/api/v1/labels", Metrics: m})
	if err != nil {
		return nil, fmt.Errorf("loki HTTP client: %w", err)
	}
	calls := backend.NewCalls(backend.CallsOptions{Backend: opts.Name, Timeout: opts.Timeout, MaxInFlight: opts.MaxInFlight, Limits: opts.Limits}, m)
	var hosts []string
	for _, u := range urls {
		hosts = append(hosts, u.Hostname())
	}
	return &Client{http: hc, base: urls[0], hosts: hosts, name: opts.Name, tenancy: tenancy, calls: calls}, nil
}

// Name is the backend's name, for errors and logs.
func (c *Client) Name() string { return c.name }

// Query runs an instant LogQL metric query at ts. Identical queries in
// flight at the same time share one backend call. A log query (one that
// selects log lines, not samples) fails with reason bad_query. NaN and ±Inf
// samples are dropped.
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
	form := url.Values{"query": {query}, "time": {formatTime(ts)}}
	data, err := c.call(ctx, "/loki/api/v1/query", form)
	if err != nil {
		return nil, c.fail("query", start, err)
	}
	vec, err := decodeQueryData(data, c.calls.Limits())
	if err != nil {
		return nil, c.fail("query", start, err)
	}
	return vec, nil
}

// Series lists the label sets of the streams matching any of matchers (LogQL
// stream selectors such as {app="web"}) in [start, end], at most
// Limits.MaxSeries of them. Loki 3 adds labels of its own to streams it
// ingests (service_name, and detected_level when level detection is on).
func (c *Client) Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error) {
	ctx, cancel := context.WithTimeout(ctx, c.calls.Deadline(ctx))
	defer cancel()
	t0 := time.Now()
	form := url.Values{"match[]": matchers, "start": {formatTime(start)}, "end": {formatTime(end)}}
	limits := c.calls.Limits().For(ctx)
	var all []model.LabelSet
	err := c.tenancy.ForEach(ctx, func(ctx context.Context) error {
		data, err := c.call(ctx, "/loki/api/v1/series", form)
		if err != nil {
			return err
		}
		sets, err := decodeList[model.LabelSet](data, limits.MaxSeries-len(all))
		if errors.Is(err, errTooMany) {
			return limits.TooManySeries("series")
		}
		if err != nil {
			return badResponse("series data: %v", err)
		}
		all = append(all, sets...)
		return nil
	})
	if err != nil {
		return nil, c.fail("series", t0, err)
	}
	c.calls.Succeed("series", t0)
	return all, nil
}

// formatTime writes a timestamp the way Loki reads it unambiguously: Loki
// takes an integer of up to 10 digits as seconds and a longer one as
// nanoseconds, and RFC 3339 always as what it says.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// call POSTs form to path under the base URL and returns the "data" of a
// successful answer. Parameters go in the body, so long selectors do not
// hit URL limits or land in proxy access logs.
func (c *Client) call(ctx context.Context, path string, form url.Values) (json.RawMessage, error) {
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := c.calls.Limits().ReadAnswer(nil, resp)
	if err != nil {
		return nil, err
	}
	return decodeBody(resp.StatusCode, resp.Header.Get("Content-Type"), body)
}

// apiResponse is the envelope of Loki's JSON answers (the same as
// Prometheus'); Loki's own errors come as text/plain with a status code.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

// decodeBody classifies an answer by its status code and returns the data of
// a success. Only a 400's message — Loki's word on the query, such as a
// parse error — is passed on; any other body may be a proxy's page echoing
// the request, and is only logged.
func decodeBody(code int, contentType string, body []byte) (json.RawMessage, error) {
	var r apiResponse
	isJSON := json.Unmarshal(body, &r) == nil && (r.Status == "success" || r.Status == "error")
	switch {
	case code/100 == 2:
		if !isJSON {
			return nil, badResponse("HTTP %d with a body that is not Loki's JSON", code)
		}
		if r.Status == "error" {
			return nil, apiError(r.ErrorType, r.Error)
		}
		if len(r.Data) == 0 || string(r.Data) == "null" {
			return nil, badResponse("answer without data")
		}
		if len(r.Warnings) > 0 {
			klog.V(4).InfoS("query warnings", "backend", defaultName, "warnings", r.Warnings)
		}
		return r.Data, nil
	case code == http.StatusBadRequest:
		msg := string(body)
		if isJSON && r.Status == "error" {
			msg = r.Error
		} else if mt, _, _ := mime.ParseMediaType(contentType); mt != "text/plain" {
			msg = ""
		}
		msg = strings.TrimSpace(msg)
		if msg == "" {
			msg = "rejected the query (HTTP 400)"
		}
		if strings.Contains(msg, "log queries are not supported as an instant query") {
			// Loki 3's answer to a log query at /query; older ones
			// answered with streams (see decodeQueryData).
			msg = "not a metric query: " + msg
		}
		return nil, &backend.Error{Backend: defaultName, Reason: "bad_query", Err: errors.New(backend.FirstLine(msg))}
	}
	klog.V(2).InfoS("loki answered with an error", "status", code, "body", backend.FirstLine(string(body)))
	switch code {
	case http.StatusRequestTimeout, http.StatusGatewayTimeout, 499:
		// 504 is Loki's "request timed out", 499 a query it saw cancelled.
		return nil, &backend.Error{Backend: defaultName, Reason: "timeout", Err: fmt.Errorf("HTTP %d: query did not finish in time", code)}
	}
	if code/100 == 4 || code/100 == 5 {
		return nil, &backend.Error{Backend: defaultName, Reason: "backend_error", Err: fmt.Errorf("HTTP %d %s", code, http.StatusText(code))}
	}
	return nil, badResponse("unexpected HTTP %d", code)
}

// apiError maps a JSON error envelope (which Loki's Prometheus-compatible
// paths and proxies may answer with) onto a reason.
func apiError(errorType, msg string) error {
	reason := "backend_error"
	switch errorType {
	case "bad_data":
		reason = "bad_query"
	case "timeout", "canceled":
		reason = "timeout"
	case "bad_response":
		reason = "bad_response"
	}
	if msg == "" {
		msg = "error of type " + errorType
	}
	return &backend.Error{Backend: defaultName, Reason: reason, Err: errors.New(backend.FirstLine(msg))}
}

// decodeQueryData turns an instant query's data into a vector: a vector as
// it is, a scalar as one sample without labels. Streams mean the query was a
// log query, which has no value to serve. A vector of more than
// limits.MaxSamples samples is refused before it is decoded whole.
func decodeQueryData(data json.RawMessage, limits backend.Limits) (model.Vector, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, badResponse("query data: %v", err)
	}
	switch d.ResultType {
	case "vector":
		vec, err := decodeList[*model.Sample](d.Result, limits.MaxSamples)
		if errors.Is(err, errTooMany) {
			return nil, limits.TooManySamples()
		}
		if err != nil {
			return nil, badResponse("vector: %v", err)
		}
		for _, s := range vec {
			if s == nil {
				return nil, badResponse("vector: null sample")
			}
			if s.Histogram != nil {
				return nil, badResponse("vector: histogram sample")
			}
			if s.Metric == nil {
				s.Metric = model.Metric{}
			}
		}
		return vec, nil
	case "scalar":
		var sc model.Scalar
		if err := json.Unmarshal(d.Result, &sc); err != nil {
			return nil, badResponse("scalar: %v", err)
		}
		return model.Vector{{Metric: model.Metric{}, Value: sc.Value, Timestamp: sc.Timestamp}}, nil
	case "streams":
		return nil, &backend.Error{Backend: defaultName, Reason: "bad_query", Err: errors.New("not a metric query: it selects log lines, not samples; wrap it in a range aggregation such as rate(...[1m]) or count_over_time(...[1m])")}
	case "":
		return nil, badResponse("query data without a resultType")
	default:
		return nil, badResponse("query returned a %.40q, expected an instant vector", d.ResultType)
	}
}

// errTooMany is a list longer than decodeList may decode.
var errTooMany = errors.New("too many elements")

// decodeList decodes a JSON array (or null) of T one element at a time, and
// fails with errTooMany on the element after the first max: a sample or a
// label set decodes to several times its bytes, so a list is not decoded
// whole before it is counted.
func decodeList[T any](raw json.RawMessage, max int) ([]T, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("expected an array, found %v", tok)
	}
	var list []T
	for dec.More() {
		if len(list) == max {
			return nil, errTooMany
		}
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return list, nil
}

func badResponse(format string, args ...any) error {
	return &backend.Error{Backend: defaultName, Reason: "bad_response", Err: errors.New(backend.FirstLine(fmt.Sprintf(format, args...)))}
}

func (c *Client) fail(call string, start time.Time, err error) error {
	be := classify(err, c.hosts...)
	if be.Backend != c.name {
		// Answers are read without knowing the client's name.
		named := *be
		named.Backend = c.name
		be = &named
	}
	return c.calls.Fail(call, start, be)
}

// classify turns a transport failure into a *backend.Error without the
// backend's address (hosts are its members' names, which a TLS error may carry);
// answers were classified by decodeBody already.
func classify(err error, hosts ...string) *backend.Error {
	var be *backend.Error
	if errors.As(err, &be) {
		return be
	}
	var le *backend.LimitError
	if errors.As(err, &le) {
		return &backend.Error{Backend: defaultName, Reason: "too_large", Err: le}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &backend.Error{Backend: defaultName, Reason: "timeout", Err: errors.New("no answer within the deadline")}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// url.Error carries the URL; keep only the cause.
		if uerr.Timeout() {
			return &backend.Error{Backend: defaultName, Reason: "timeout", Err: errors.New("no answer within the deadline")}
		}
		err = uerr.Err
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &backend.Error{Backend: defaultName, Reason: "unreachable", Err: fmt.Errorf("name lookup failed: %s", dnsErr.Err)}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return &backend.Error{Backend: defaultName, Reason: "unreachable", Err: fmt.Errorf("%s: %w", opErr.Op, opErr.Err)}
	}
	if uerr != nil {
		// Other transport failures (TLS, a reset connection, a token file
		// that cannot be read).
		msg := err.Error()
		for _, host := range hosts {
			if host != "" {
				msg = strings.ReplaceAll(msg, host, "<loki>")
			}
		}
		return &backend.Error{Backend: defaultName, Reason: "unreachable", Err: errors.New(backend.FirstLine(msg))}
	}
	return &backend.Error{Backend: defaultName, Reason: "backend_error", Err: errors.New(backend.FirstLine(err.Error()))}
}
