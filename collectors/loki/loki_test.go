package loki_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	lokicollector "github.com/gantry-dev/gantry/collectors/loki"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

func write(w http.ResponseWriter, code int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// vectorOK answers queries with one sample and series listings with one
// stream, as Loki does.
func vectorOK(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/loki/api/v1/series":
		write(w, 200, "application/json", `{"status":"success","data":[{"app":"web","pod":"web-1","service_name":"web"}]}`)
	default:
		write(w, 200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web-1"},"value":[1700000000,"2.5"]}],"stats":{"summary":{"execTime":0.001}}}}`)
	}
}

func newClient(t *testing.T, opts lokicollector.Options, reg promclient.Registerer) *lokicollector.Client {
	t.Helper()
	if reg == nil {
		reg = promclient.NewRegistry()
	}
	c, err := lokicollector.New(opts, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// TestRequestShape checks that calls are POSTed as forms to Loki's API
// paths under the base URL's path, with RFC 3339 times (Loki reads a short
// integer as seconds and a long one as nanoseconds).
func TestRequestShape(t *testing.T) {
	ts := time.Unix(1700000000, 500_000_000)
	query := `sum by (pod) (rate({app="web",pod=~"web-1|web-2"} |= "error" [1m]))`
	cases := []struct {
		name     string
		basePath string
		call     func(ctx context.Context, c *lokicollector.Client) (any, error)
		want     backendtest.Request
		wantVal  any
	}{{
		name: "instant query",
		call: func(ctx context.Context, c *lokicollector.Client) (any, error) { return c.Query(ctx, query, ts) },
		want: backendtest.Request{Method: http.MethodPost, Path: "/loki/api/v1/query", ContentType: "application/x-www-form-urlencoded",
			Form: url.Values{"query": {query}, "time": {"2023-11-14T22:13:20.5Z"}}},
		wantVal: model.Vector{{Metric: model.Metric{"pod": "web-1"}, Value: 2.5, Timestamp: 1700000000000}},
	}, {
		name:     "instant query under a path prefix with a trailing slash",
		basePath: "/loki-gw/",
		call:     func(ctx context.Context, c *lokicollector.Client) (any, error) { return c.Query(ctx, query, ts) },
		want: backendtest.Request{Method: http.MethodPost, Path: "/loki-gw/loki/api/v1/query", ContentType: "application/x-www-form-urlencoded",
			Form: url.Values{"query": {query}, "time": {"2023-11-14T22:13:20.5Z"}}},
		wantVal: model.Vector{{Metric: model.Metric{"pod": "web-1"}, Value: 2.5, Timestamp: 1700000000000}},
	}, {
		name: "series",
		call: func(ctx context.Context, c *lokicollector.Client) (any, error) {
			return c.Series(ctx, []string{`{app="web"}`, `{app="api",namespace!=""}`}, ts.Add(-10*time.Minute), ts)
		},
		want: backendtest.Request{Method: http.MethodPost, Path: "/loki/api/v1/series", ContentType: "application/x-www-form-urlencoded",
			Form: url.Values{"match[]": {`{app="web"}`, `{app="api",namespace!=""}`}, "start": {"2023-11-14T22:03:20.5Z"}, "end": {"2023-11-14T22:13:20.5Z"}}},
		wantVal: []model.LabelSet{{"app": "web", "pod": "web-1", "service_name": "web"}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, vectorOK)
			c := newClient(t, lokicollector.Options{URL: api.URL + tc.basePath}, nil)
			val, err := tc.call(context.Background(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if diff := cmp.Diff(tc.wantVal, val); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			reqs := api.Seen()
			if len(reqs) != 1 {
				t.Fatalf("requests = %d, want 1: %+v", len(reqs), reqs)
			}
			got := reqs[0]
			got.Header = nil
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("request mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTenantAndCredentials checks the headers every request carries: the
// tenant as X-Scope-OrgID, a bearer token file re-read on every request,
// and headers from the HTTP client config.
func TestTenantAndCredentials(t *testing.T) {
	tokenFile := backendtest.WriteFile(t, "token", "first-token\n")
	api := backendtest.NewAPI(t, vectorOK)
	httpCfg := commoncfg.DefaultHTTPClientConfig
	httpCfg.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: tokenFile}
	httpCfg.HTTPHeaders = &commoncfg.Headers{Headers: map[string]commoncfg.Header{"X-Team": {Values: []string{"search"}}}}
	c := newClient(t, lokicollector.Options{URL: api.URL, HTTP: httpCfg, Tenant: "team-a|team-b"}, nil)
	ctx := context.Background()
	if _, err := c.Query(ctx, `sum(rate({app="web"}[1m]))`, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("rotated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Series(ctx, []string{`{app="web"}`}, time.Now().Add(-time.Minute), time.Now()); err != nil {
		t.Fatal(err)
	}
	want := []map[string][]string{
		{"X-Scope-Orgid": {"team-a|team-b"}, "Authorization": {"Bearer first-token"}, "X-Team": {"search"}},
		{"X-Scope-Orgid": {"team-a|team-b"}, "Authorization": {"Bearer rotated-token"}, "X-Team": {"search"}},
	}
	reqs := api.Seen()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d, want 2", len(reqs))
	}
	for i, r := range reqs {
		got := map[string][]string{}
		for name := range want[i] {
			got[name] = r.Header.Values(name)
		}
		if diff := cmp.Diff(want[i], got); diff != "" {
			t.Errorf("request %d headers (-want +got):\n%s", i, diff)
		}
	}
}

func TestNoTenantNoHeader(t *testing.T) {
	api := backendtest.NewAPI(t, vectorOK)
	c := newClient(t, lokicollector.Options{URL: api.URL}, nil)
	if _, err := c.Query(context.Background(), `sum(rate({app="web"}[1m]))`, time.Now()); err != nil {
		t.Fatal(err)
	}
	if h := api.Seen()[0].Header.Values("X-Scope-OrgID"); len(h) != 0 {
		t.Errorf("X-Scope-OrgID = %q without a tenant, want none", h)
	}
}

func TestNewRejects(t *testing.T) {
	withTenantHeader := commoncfg.DefaultHTTPClientConfig
	withTenantHeader.HTTPHeaders = &commoncfg.Headers{Headers: map[string]commoncfg.Header{"x-scope-orgid": {Values: []string{"b"}}}}
	cases := []struct {
		name string
		opts lokicollector.Options
		want string
	}{
		{name: "no URL", opts: lokicollector.Options{}, want: "loki URL is required (--loki-url)"},
		{name: "no scheme", opts: lokicollector.Options{URL: "loki:3100"}, want: `expected http(s)://host[:port][/path]`},
		{name: "query string", opts: lokicollector.Options{URL: "http://loki:3100/?x=1"}, want: `expected http(s)://host[:port][/path]`},
		{name: "tenant twice", opts: lokicollector.Options{URL: "http://loki:3100", Tenant: "a", HTTP: withTenantHeader}, want: "loki tenant is set twice"},
		{name: "tenant with a newline", opts: lokicollector.Options{URL: "http://loki:3100", Tenant: "a\nX-Evil: 1"}, want: "control characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := lokicollector.New(tc.opts, promclient.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestBackendErrors checks how failures are classified, that the message
// starts with the backend and the reason, and that no message carries the
// backend's address, the token or its file.
func TestBackendErrors(t *testing.T) {
	const token = "tok-very-secret"
	cases := []struct {
		name       string
		respond    func(w http.ResponseWriter, r *http.Request) // nil: nothing listens
		series     bool
		wantReason string
		wantMsg    string // the message contains this
	}{{
		name:       "connection refused",
		wantReason: "unreachable",
		wantMsg:    "dial: connect: connection refused",
	}, {
		name: "400 parse error, as Loki writes it (text/plain)",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 400, "text/plain; charset=utf-8", "parse error at line 1, col 9: syntax error: unexpected IDENTIFIER\n")
		},
		wantReason: "bad_query",
		wantMsg:    "parse error at line 1, col 9: syntax error: unexpected IDENTIFIER",
	}, {
		name: "400 whose message has a carriage return",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 400, "text/plain", "parse error\rX-Injected: 1")
		},
		wantReason: "bad_query",
		wantMsg:    "loki: bad_query: parse error",
	}, {
		name: "400 with a JSON error envelope",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 400, "application/json", `{"status":"error","errorType":"bad_data","error":"invalid query"}`)
		},
		wantReason: "bad_query",
		wantMsg:    "invalid query",
	}, {
		name: "400 page of a proxy is not passed on",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 400, "text/html", fmt.Sprintf("<html>bad request to %s with %s</html>", r.Host, r.Header.Get("Authorization")))
		},
		wantReason: "bad_query",
		wantMsg:    "rejected the query (HTTP 400)",
	}, {
		name: "a log query selects lines, not samples",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 200, "application/json", `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"web"},"values":[["1700000000000000000","error x"]]}]}}`)
		},
		wantReason: "bad_query",
		wantMsg:    "not a metric query",
	}, {
		name: "a log query, as Loki 3 refuses it at /query",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 400, "text/plain; charset=utf-8", "log queries are not supported as an instant query type, please change your query to a range query type")
		},
		wantReason: "bad_query",
		wantMsg:    "not a metric query: log queries are not supported",
	}, {
		name: "504: Loki's own query timeout",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 504, "text/plain", "request timed out, decrease the duration of the request or add more label matchers")
		},
		wantReason: "timeout",
		wantMsg:    "HTTP 504",
	}, {
		name: "401 without a tenant on a multi-tenant Loki",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 401, "text/plain", "no org id")
		},
		wantReason: "backend_error",
		wantMsg:    "HTTP 401 Unauthorized",
	}, {
		name: "429 too many outstanding requests",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 429, "text/plain", "too many outstanding requests")
		},
		wantReason: "backend_error",
		wantMsg:    "HTTP 429",
	}, {
		name: "502 from a proxy, whose page echoes the URL and the token",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 502, "text/plain", fmt.Sprintf("Bad gateway for http://%s%s with %s", r.Host, r.URL.Path, r.Header.Get("Authorization")))
		},
		wantReason: "backend_error",
		wantMsg:    "HTTP 502 Bad Gateway",
	}, {
		name: "200 with a body that is not Loki's",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 200, "text/html", `<html>login page</html>`)
		},
		wantReason: "bad_response",
	}, {
		name: "200 success without data",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 200, "application/json", `{"status":"success"}`)
		},
		wantReason: "bad_response",
		wantMsg:    "answer without data",
	}, {
		name: "a matrix instead of an instant vector",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 200, "application/json", `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
		},
		wantReason: "bad_response",
		wantMsg:    "expected an instant vector",
	}, {
		name: "series data that is not a list of label sets",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 200, "application/json", `{"status":"success","data":{"resultType":"vector"}}`)
		},
		series:     true,
		wantReason: "bad_response",
		wantMsg:    "series data",
	}, {
		name: "series: 500",
		respond: func(w http.ResponseWriter, r *http.Request) {
			write(w, 500, "text/plain", "rpc error: code = Unavailable desc = dial tcp 10.1.2.3:9095: connection refused")
		},
		series:     true,
		wantReason: "backend_error",
		wantMsg:    "HTTP 500 Internal Server Error",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := backendtest.ClosedURL(t)
			if tc.respond != nil {
				u = backendtest.NewAPI(t, tc.respond).URL
			}
			tokenFile := backendtest.WriteFile(t, "token", token)
			httpCfg := commoncfg.DefaultHTTPClientConfig
			httpCfg.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: tokenFile}
			reg := promclient.NewRegistry()
			c := newClient(t, lokicollector.Options{URL: u, HTTP: httpCfg, Timeout: 10 * time.Second}, reg)
			call := "query"
			var err error
			if tc.series {
				call = "series"
				_, err = c.Series(context.Background(), []string{`{app="web"}`}, time.Now().Add(-time.Minute), time.Now())
			} else {
				_, err = c.Query(context.Background(), `sum(rate({app="web"}[1m]))`, time.Now())
			}
			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T), want a *backend.Error", err, err)
			}
			if be.Backend != "loki" || be.Reason != tc.wantReason || be.BadQuery() != (tc.wantReason == "bad_query") {
				t.Errorf("backend %q, reason %q; want loki, %q (%v)", be.Backend, be.Reason, tc.wantReason, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "loki: "+tc.wantReason+": ") {
				t.Errorf("message %q does not start with the backend and reason", msg)
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("message %q is more than one line", msg)
			}
			for _, secret := range []string{u, strings.TrimPrefix(u, "http://"), token, tokenFile, "10.1.2.3"} {
				if strings.Contains(msg, secret) {
					t.Errorf("message %q contains %q", msg, secret)
				}
			}
			want := fmt.Sprintf(`
# HELP gantry_backend_errors_total Failed calls to a metrics backend, by backend, call and reason.
# TYPE gantry_backend_errors_total counter
gantry_backend_errors_total{backend="loki",call=%q,reason=%q} 1
`, call, tc.wantReason)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_backend_errors_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSlowBackend checks that a hanging Loki costs a call no more than the
// caller's deadline or the configured timeout, whichever comes first.
func TestSlowBackend(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration // caller's deadline; 0 for none
		series  bool
	}{
		{name: "query bounded by the caller's deadline", timeout: time.Hour, ctx: 200 * time.Millisecond},
		{name: "query bounded by the configured timeout", timeout: 200 * time.Millisecond},
		{name: "series bounded by the caller's deadline", timeout: time.Hour, ctx: 200 * time.Millisecond, series: true},
		{name: "series bounded by the configured timeout", timeout: 200 * time.Millisecond, series: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
			defer close(release) // before api.Close, which waits for handlers
			c := newClient(t, lokicollector.Options{URL: api.URL, Timeout: tc.timeout}, nil)
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			errc := make(chan error, 1)
			go func() {
				var err error
				if tc.series {
					_, err = c.Series(ctx, []string{`{app="web"}`}, time.Now().Add(-time.Minute), time.Now())
				} else {
					_, err = c.Query(ctx, `sum(rate({app="web"}[1m]))`, time.Now())
				}
				errc <- err
			}()
			var err error
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("call did not return although its deadline passed long ago")
			}
			var be *backend.Error
			if !errors.As(err, &be) || be.Reason != "timeout" {
				t.Fatalf("error %v, want a timeout *backend.Error", err)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(api.URL, "http://")) {
				t.Errorf("error names the backend's address: %v", err)
			}
		})
	}
}

// TestNonFiniteSamplesDropped checks that NaN and ±Inf (a LogQL division by
// zero, for one) never reach a provider.
func TestNonFiniteSamplesDropped(t *testing.T) {
	cases := []struct {
		name   string
		result string
		want   model.Vector
	}{{
		name: "vector with NaN, +Inf and -Inf among finite values",
		result: `{"resultType":"vector","result":[
			{"metric":{"pod":"a"},"value":[1700000000,"NaN"]},
			{"metric":{"pod":"b"},"value":[1700000000,"1.5"]},
			{"metric":{"pod":"c"},"value":[1700000000,"+Inf"]},
			{"metric":{"pod":"d"},"value":[1700000000,"-Inf"]},
			{"metric":{},"value":[1700000000,"0"]}]}`,
		want: model.Vector{
			{Metric: model.Metric{"pod": "b"}, Value: 1.5, Timestamp: 1700000000000},
			{Metric: model.Metric{}, Value: 0, Timestamp: 1700000000000},
		},
	}, {
		name:   "empty vector",
		result: `{"resultType":"vector","result":[]}`,
		want:   model.Vector{},
	}, {
		name:   "finite scalar becomes one sample",
		result: `{"resultType":"scalar","result":[1700000000,"3"]}`,
		want:   model.Vector{{Metric: model.Metric{}, Value: 3, Timestamp: 1700000000000}},
	}, {
		name:   "NaN scalar",
		result: `{"resultType":"scalar","result":[1700000000,"NaN"]}`,
		want:   model.Vector{},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				write(w, 200, "application/json", `{"status":"success","data":`+tc.result+`}`)
			})
			c := newClient(t, lokicollector.Options{URL: api.URL}, nil)
			got, err := c.Query(context.Background(), `sum(rate({app="web"}[1m]))`, time.Unix(1700000000, 0))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range got {
				if f := float64(s.Value); math.IsNaN(f) || math.IsInf(f, 0) {
					t.Errorf("non-finite sample served: %v", s)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("samples (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSharedQueries checks that identical queries in flight at the same
// time make one backend call, counted in gantry_backend_shared_queries_total
// with backend="loki", and that different queries or times are not shared.
func TestSharedQueries(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	q1, q2 := `sum(rate({app="web"}[1m]))`, `sum(rate({app="api"}[1m]))`
	cases := []struct {
		name     string
		queries  []string
		times    []time.Time
		distinct int
	}{
		{name: "eight identical queries", queries: rep(q1, 8), times: repT(ts, 8), distinct: 1},
		{name: "same query at two evaluation times", queries: rep(q1, 6), times: append(repT(ts, 3), repT(ts.Add(time.Millisecond), 3)...), distinct: 2},
		{name: "two different queries", queries: append(rep(q1, 3), rep(q2, 3)...), times: repT(ts, 6), distinct: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			arrived := make(chan struct{}, 64)
			api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				<-release
				vectorOK(w, r)
			})
			reg := promclient.NewRegistry()
			c := newClient(t, lokicollector.Options{URL: api.URL, Timeout: 30 * time.Second}, reg)
			n := len(tc.queries)
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() { _, errs[i] = c.Query(context.Background(), tc.queries[i], tc.times[i]) })
			}
			for range tc.distinct {
				select {
				case <-arrived:
				case <-time.After(10 * time.Second):
					t.Fatal("backend never called")
				}
			}
			backendtest.WaitGauge(t, reg, "gantry_backend_queries_waiting", float64(n)) // the duplicates joined
			close(release)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
			}
			calls := len(api.Seen())
			want := fmt.Sprintf(`
# HELP gantry_backend_shared_queries_total Queries answered by an identical query already in flight.
# TYPE gantry_backend_shared_queries_total counter
gantry_backend_shared_queries_total{backend="loki"} %d
`, n-calls)
			if calls != tc.distinct {
				t.Errorf("backend calls = %d for %d queries of %d distinct", calls, n, tc.distinct)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_backend_shared_queries_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSharedQuerySurvivesFirstCaller checks that when the caller whose
// query is in flight goes away, the callers that joined it still get the
// answer.
func TestSharedQuerySurvivesFirstCaller(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
			vectorOK(w, r)
		case <-r.Context().Done():
		}
	})
	reg := promclient.NewRegistry()
	c := newClient(t, lokicollector.Options{URL: api.URL, Timeout: 30 * time.Second}, reg)
	ts := time.Unix(1700000000, 0)
	q := `sum(rate({app="web"}[1m]))`
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := c.Query(firstCtx, q, ts); first <- err }()
	<-arrived
	second := make(chan error, 1)
	go func() { _, err := c.Query(context.Background(), q, ts); second <- err }()
	backendtest.WaitGauge(t, reg, "gantry_backend_queries_waiting", float64(2)) // the second caller joined
	cancelFirst()
	var be *backend.Error
	if err := <-first; !errors.As(err, &be) || be.Reason != "timeout" {
		t.Errorf("first caller, cancelled: %v, want a timeout *backend.Error", err)
	}
	close(release)
	select {
	case err := <-second:
		if err != nil {
			t.Errorf("second caller: %v, want the shared answer", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second caller never answered")
	}
	if calls := len(api.Seen()); calls != 1 {
		t.Errorf("backend calls = %d, want 1", calls)
	}
}

// TestMetricsBesidePrometheusClient checks that a Prometheus and a Loki
// client share one registry, in either order of construction: the same
// metric families, told apart by the backend label.
func TestMetricsBesidePrometheusClient(t *testing.T) {
	for _, lokiFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("loki first %v", lokiFirst), func(t *testing.T) {
			api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/loki/") {
					vectorOK(w, r)
					return
				}
				write(w, 200, "application/json", `{"status":"success","data":{"resultType":"vector","result":[]}}`)
			})
			reg := promclient.NewRegistry()
			var lc *lokicollector.Client
			if lokiFirst {
				lc = newClient(t, lokicollector.Options{URL: api.URL}, reg)
			}
			pc, err := promcollector.New(promcollector.Options{URL: api.URL}, reg)
			if err != nil {
				t.Fatalf("prometheus client beside a loki client: %v", err)
			}
			if !lokiFirst {
				lc = newClient(t, lokicollector.Options{URL: api.URL}, reg)
			}
			ctx := context.Background()
			if _, err := lc.Query(ctx, `sum(rate({app="web"}[1m]))`, time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := pc.Query(ctx, `up`, time.Now()); err != nil {
				t.Fatal(err)
			}
			n, err := testutil.GatherAndCount(reg, "gantry_backend_request_duration_seconds")
			if err != nil {
				t.Fatal(err)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			backends := map[string]bool{}
			for _, mf := range mfs {
				if mf.GetName() != "gantry_backend_request_duration_seconds" {
					continue
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "backend" {
							backends[l.GetValue()] = true
						}
					}
				}
			}
			if !backends["loki"] {
				t.Errorf("no loki series of gantry_backend_request_duration_seconds (%d series): %v", n, backends)
			}
			if !backends["prometheus"] {
				t.Errorf("no prometheus series of gantry_backend_request_duration_seconds (%d series): %v", n, backends)
			}
		})
	}
}

func rep(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func repT(ts time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = ts
	}
	return out
}
