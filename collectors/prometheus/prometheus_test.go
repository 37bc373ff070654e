package prometheus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
	"github.com/gantry-dev/gantry/test/prom"
)

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// vectorOK answers every query with one sample of value 1.
func vectorOK(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/v1/series":
		writeJSON(w, 200, `{"status":"success","data":[{"__name__":"up","job":"x"}]}`)
	default:
		writeJSON(w, 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1700000000,"1"]}]}}`)
	}
}

func newClient(t *testing.T, opts promcollector.Options, reg promclient.Registerer) *promcollector.Client {
	t.Helper()
	if reg == nil {
		reg = promclient.NewRegistry()
	}
	c, err := promcollector.New(opts, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// TestRequestShape checks that queries are POSTed with their parameters in
// the body (long selectors do not hit URL limits, and do not land in proxy
// access logs), to the API paths under the base URL's path.
func TestRequestShape(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	start, end := ts.Add(-10*time.Minute), ts
	query := `sum(rate(http_requests_total{namespace="shop",pod=~"web-1|web-2"}[2m])) by (pod)`
	cases := []struct {
		name     string
		basePath string
		call     func(ctx context.Context, c *promcollector.Client) error
		want     backendtest.Request
	}{{
		name: "instant query",
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Query(ctx, query, ts)
			return err
		},
		want: backendtest.Request{Method: http.MethodPost, Path: "/api/v1/query", ContentType: "application/x-www-form-urlencoded",
			Form: url.Values{"query": {query}, "time": {"1700000000"}, "timeout": {"<whole seconds>"}}},
	}, {
		name:     "instant query under a path prefix",
		basePath: "/prometheus",
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Query(ctx, "up", ts)
			return err
		},
		want: backendtest.Request{Method: http.MethodPost, Path: "/prometheus/api/v1/query", ContentType: "application/x-www-form-urlencoded",
			Form: url.Values{"query": {"up"}, "time": {"1700000000"}, "timeout": {"<whole seconds>"}}},
	}, {
		name: "series",
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Series(ctx, []string{`{__name__=~"http_.*",namespace!=""}`}, start, end)
			return err
		},
		want: backendtest.Request{Method: http.MethodPost, Path: "/api/v1/series", ContentType: "application/x-www-form-urlencoded",
			Form: url.Values{"match[]": {`{__name__=~"http_.*",namespace!=""}`}, "start": {"1699999400"}, "end": {"1700000000"}}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, vectorOK)
			c := newClient(t, promcollector.Options{URL: api.URL + tc.basePath, Timeout: 10 * time.Second}, nil)
			if err := tc.call(context.Background(), c); err != nil {
				t.Fatalf("call: %v", err)
			}
			reqs := api.Seen()
			if len(reqs) != 1 {
				t.Fatalf("requests = %d, want 1: %+v", len(reqs), reqs)
			}
			got := reqs[0]
			got.Header = nil
			// The evaluation timeout depends on the time left; its format is
			// TestEvalTimeoutFormat's business.
			if to := got.Form.Get("timeout"); to != "" {
				d, err := model.ParseDuration(to)
				if err != nil || time.Duration(d)%time.Second != 0 || time.Duration(d) > 10*time.Second {
					t.Errorf("timeout=%q, want whole seconds up to 10s", to)
				}
				got.Form.Set("timeout", "<whole seconds>")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("request mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCredentialsAndHeaders checks that what the connection flags configure
// reaches Prometheus: a bearer token from --prometheus-token-file (re-read
// on every request), basic auth and headers from --prometheus-auth-config (a
// Prometheus HTTP client config or a kubeconfig), and --prometheus-header.
func TestCredentialsAndHeaders(t *testing.T) {
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	cases := []struct {
		name  string
		flags func(t *testing.T) backend.HTTPFlags
		// between runs before the second request.
		between func(t *testing.T, flags backend.HTTPFlags)
		want    [2]map[string]string // headers of the first and second request
	}{{
		name: "bearer token file, re-read after rotation",
		flags: func(t *testing.T) backend.HTTPFlags {
			return backend.HTTPFlags{TokenFile: backendtest.WriteFile(t, "token", "first-token\n")}
		},
		between: func(t *testing.T, f backend.HTTPFlags) {
			if err := os.WriteFile(f.TokenFile, []byte("second-token\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		want: [2]map[string]string{{"Authorization": "Bearer first-token"}, {"Authorization": "Bearer second-token"}},
	}, {
		name: "tenant header from --prometheus-header",
		flags: func(t *testing.T) backend.HTTPFlags {
			return backend.HTTPFlags{Headers: []string{"X-Scope-OrgID=team-a", "X-Extra=a=b"}}
		},
		want: [2]map[string]string{
			{"X-Scope-Orgid": "team-a", "X-Extra": "a=b", "Authorization": ""},
			{"X-Scope-Orgid": "team-a", "X-Extra": "a=b", "Authorization": ""},
		},
	}, {
		name: "basic auth and headers from an HTTP client config",
		flags: func(t *testing.T) backend.HTTPFlags {
			pw := backendtest.WriteFile(t, "password", "s3cret")
			return backend.HTTPFlags{
				AuthConfigFile: backendtest.WriteFile(t, "auth.yaml", fmt.Sprintf(`
basic_auth:
  username: gantry
  password_file: %s
http_headers:
  X-Scope-OrgID:
    values: [team-b]
`, pw)),
				Headers: []string{"X-Extra=1"},
			}
		},
		want: [2]map[string]string{
			{"Authorization": basic("gantry", "s3cret"), "X-Scope-Orgid": "team-b", "X-Extra": "1"},
			{"Authorization": basic("gantry", "s3cret"), "X-Scope-Orgid": "team-b", "X-Extra": "1"},
		},
	}, {
		name: "token from a kubeconfig, as prometheus-adapter takes it",
		flags: func(t *testing.T) backend.HTTPFlags {
			return backend.HTTPFlags{AuthConfigFile: backendtest.WriteFile(t, "kubeconfig", `
apiVersion: v1
kind: Config
clusters:
- name: prom
  cluster:
    server: https://prometheus.example:9090
contexts:
- name: prom
  context: {cluster: prom, user: gantry}
current-context: prom
users:
- name: gantry
  user:
    token: kube-token
`)}
		},
		want: [2]map[string]string{{"Authorization": "Bearer kube-token"}, {"Authorization": "Bearer kube-token"}},
	}, {
		name: "basic auth from a kubeconfig with a single unnamed-current context",
		flags: func(t *testing.T) backend.HTTPFlags {
			return backend.HTTPFlags{AuthConfigFile: backendtest.WriteFile(t, "kubeconfig", `
apiVersion: v1
kind: Config
clusters:
- name: prom
  cluster: {server: "https://prometheus.example:9090"}
contexts:
- name: only
  context: {cluster: prom, user: gantry}
users:
- name: gantry
  user: {username: admin, password: pw}
`)}
		},
		want: [2]map[string]string{{"Authorization": basic("admin", "pw")}, {"Authorization": basic("admin", "pw")}},
	}, {
		name: "--prometheus-token-file takes over a kubeconfig's token",
		flags: func(t *testing.T) backend.HTTPFlags {
			return backend.HTTPFlags{
				TokenFile: backendtest.WriteFile(t, "token", "flag-token"),
				AuthConfigFile: backendtest.WriteFile(t, "kubeconfig", `
kind: Config
clusters: [{name: p, cluster: {server: "https://p"}}]
contexts: [{name: p, context: {cluster: p, user: u}}]
current-context: p
users: [{name: u, user: {token: kube-token}}]
`)}
		},
		want: [2]map[string]string{{"Authorization": "Bearer flag-token"}, {"Authorization": "Bearer flag-token"}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, vectorOK)
			flags := tc.flags(t)
			httpCfg, _, err := flags.HTTPConfig()
			if err != nil {
				t.Fatalf("HTTPConfig: %v", err)
			}
			c := newClient(t, promcollector.Options{URL: api.URL, HTTP: httpCfg}, nil)
			ctx := context.Background()
			if _, err := c.Query(ctx, "up", time.Unix(1700000000, 0)); err != nil {
				t.Fatalf("first query: %v", err)
			}
			if tc.between != nil {
				tc.between(t, flags)
			}
			if _, err := c.Series(ctx, []string{"up"}, time.Unix(1699999000, 0), time.Unix(1700000000, 0)); err != nil {
				t.Fatalf("second call: %v", err)
			}
			reqs := api.Seen()
			if len(reqs) != 2 {
				t.Fatalf("requests = %d, want 2", len(reqs))
			}
			for i, want := range tc.want {
				got := map[string]string{}
				for name := range want {
					got[name] = strings.Join(reqs[i].Header.Values(name), ",")
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("request %d headers (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// TestEvalTimeoutAgainstPrometheus sends queries to a real Prometheus with
// configured timeouts that are not whole seconds: Prometheus rejects a
// timeout parameter such as "9.99s" as bad_data, so the client must round
// it to a form Prometheus reads.
func TestEvalTimeoutAgainstPrometheus(t *testing.T) {
	srv := prom.Start(t)
	cases := []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration // caller's deadline; 0 for none
	}{
		{name: "fractional seconds", timeout: 9990 * time.Millisecond},
		{name: "whole seconds", timeout: 5 * time.Second},
		{name: "minutes and a fraction", timeout: 90*time.Second + 500*time.Millisecond},
		{name: "under a second with microseconds", timeout: 750*time.Millisecond + 500*time.Microsecond},
		{name: "caller's deadline shorter than the configured timeout", timeout: time.Minute, ctx: 2500 * time.Millisecond},
		{name: "caller's deadline under a second", timeout: time.Minute, ctx: 900 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, promcollector.Options{URL: srv.URL(), Timeout: tc.timeout}, nil)
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			vec, err := c.Query(ctx, "vector(42)", time.Now())
			if err != nil {
				t.Fatalf("query with timeout %s: %v", tc.timeout, err)
			}
			if len(vec) != 1 || vec[0].Value != 42 {
				t.Errorf("result = %v, want one sample of 42", vec)
			}
		})
	}
}

// TestEvalTimeoutFormat checks the timeout parameter on the wire: Go-like
// duration without fractions, never more than the time the call has.
func TestEvalTimeoutFormat(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration
		max     time.Duration // the parameter is at most this
		unit    time.Duration // and a whole number of these
	}{
		{name: "fraction of a second above ten seconds", timeout: 9990 * time.Millisecond, max: 9 * time.Second, unit: time.Second},
		{name: "minutes", timeout: 90*time.Second + 500*time.Millisecond, max: 90 * time.Second, unit: time.Second},
		{name: "under a second", timeout: 750*time.Millisecond + 500*time.Microsecond, max: 750 * time.Millisecond, unit: time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, vectorOK)
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: tc.timeout}, nil)
			if _, err := c.Query(context.Background(), "up", time.Now()); err != nil {
				t.Fatal(err)
			}
			to := api.Seen()[0].Form.Get("timeout")
			d, err := model.ParseDuration(to)
			if err != nil {
				t.Fatalf("timeout=%q does not parse as Prometheus reads it: %v", to, err)
			}
			if got := time.Duration(d); got > tc.max || got <= 0 || got%tc.unit != 0 {
				t.Errorf("timeout=%q, want a positive whole number of %s up to %s", to, tc.unit, tc.max)
			}
		})
	}
}

// TestSlowBackend checks that a Prometheus that does not answer turns into
// a timeout error once the caller's deadline or the configured timeout has
// passed, instead of hanging.
func TestSlowBackend(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration // Options.Timeout
		ctx     time.Duration // caller's deadline; 0 for none
		call    func(ctx context.Context, c *promcollector.Client) error
	}{{
		name: "query bounded by the caller's deadline", timeout: time.Hour, ctx: 200 * time.Millisecond,
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Query(ctx, "up", time.Now())
			return err
		},
	}, {
		name: "query bounded by the configured timeout", timeout: 200 * time.Millisecond,
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Query(ctx, "up", time.Now())
			return err
		},
	}, {
		name: "series bounded by the caller's deadline", timeout: time.Hour, ctx: 200 * time.Millisecond,
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Series(ctx, []string{"up"}, time.Now().Add(-time.Minute), time.Now())
			return err
		},
	}, {
		name: "series bounded by the configured timeout", timeout: 200 * time.Millisecond,
		call: func(ctx context.Context, c *promcollector.Client) error {
			_, err := c.Series(ctx, []string{"up"}, time.Now().Add(-time.Minute), time.Now())
			return err
		},
	}}
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
			reg := promclient.NewRegistry()
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: tc.timeout}, reg)
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			errc := make(chan error, 1)
			go func() { errc <- tc.call(ctx, c) }()
			var err error
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatal("call did not return although its deadline passed long ago")
			}
			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T), want a *backend.Error", err, err)
			}
			if be.Reason != "timeout" || be.BadQuery() {
				t.Errorf("reason = %q (BadQuery %v), want timeout: %v", be.Reason, be.BadQuery(), err)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(api.URL, "http://")) {
				t.Errorf("error names the backend's address: %v", err)
			}
		})
	}
}

// TestBackendErrors checks how failures are classified, and that no error
// message carries the backend's address or the credentials.
func TestBackendErrors(t *testing.T) {
	const token = "tok-very-secret"
	cases := []struct {
		name       string
		respond    func(w http.ResponseWriter, r *http.Request) // nil: nothing listens
		wantReason string
		wantBad    bool
		wantMsg    string // the message contains this
	}{{
		name:       "connection refused",
		wantReason: "unreachable",
		wantMsg:    "connection refused",
	}, {
		name: "400 bad_data: the query is at fault",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 400, `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"}`)
		},
		wantReason: "bad_query", wantBad: true,
		wantMsg: `parse error: unclosed left parenthesis`,
	}, {
		name: "422 execution error",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 422, `{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}`)
		},
		wantReason: "backend_error",
		wantMsg:    "too many samples",
	}, {
		name: "503 timeout from Prometheus' own evaluation timeout",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 503, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`)
		},
		wantReason: "timeout",
		wantMsg:    "query timed out",
	}, {
		name: "500 internal error keeps Prometheus' message",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 500, `{"status":"error","errorType":"internal","error":"unexpected error reading block"}`)
		},
		wantReason: "backend_error",
		wantMsg:    "internal: unexpected error reading block",
	}, {
		name: "502 from a proxy, whose page echoes the URL and the token",
		respond: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			fmt.Fprintf(w, "<html>Bad gateway for http://%s%s with %s</html>", r.Host, r.URL.Path, r.Header.Get("Authorization"))
		},
		wantReason: "backend_error",
		wantMsg:    "502",
	}, {
		name: "200 with a body that is not the API's",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, `<html>login page</html>`)
		},
		wantReason: "bad_response",
	}, {
		name: "200 success without data",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, `{"status":"success"}`)
		},
		wantReason: "bad_response",
		wantMsg:    "query returned no result",
	}, {
		name: "a range vector instead of an instant vector",
		respond: func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
		},
		wantReason: "bad_response",
		wantMsg:    "expected an instant vector",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := backendtest.ClosedURL(t)
			if tc.respond != nil {
				u = backendtest.NewAPI(t, tc.respond).URL
			}
			tokenFile := backendtest.WriteFile(t, "token", token)
			httpCfg, _, err := backend.HTTPFlags{TokenFile: tokenFile}.HTTPConfig()
			if err != nil {
				t.Fatal(err)
			}
			reg := promclient.NewRegistry()
			c := newClient(t, promcollector.Options{URL: u, HTTP: httpCfg, Timeout: 10 * time.Second}, reg)
			_, err = c.Query(context.Background(), "sum(rate(x[1m]))", time.Now())
			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T), want a *backend.Error", err, err)
			}
			if be.Reason != tc.wantReason || be.BadQuery() != tc.wantBad {
				t.Errorf("reason %q, BadQuery %v; want %q, %v (%v)", be.Reason, be.BadQuery(), tc.wantReason, tc.wantBad, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "prometheus: "+tc.wantReason+": ") {
				t.Errorf("message %q does not start with the backend and reason", msg)
			}
			if !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tc.wantMsg)
			}
			for _, secret := range []string{u, strings.TrimPrefix(u, "http://"), token, tokenFile} {
				if strings.Contains(msg, secret) {
					t.Errorf("message %q contains %q", msg, secret)
				}
			}
			want := fmt.Sprintf(`
# HELP gantry_backend_errors_total Failed calls to a metrics backend, by backend, call and reason.
# TYPE gantry_backend_errors_total counter
gantry_backend_errors_total{backend="prometheus",call="query",reason=%q} 1
`, tc.wantReason)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_backend_errors_total"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestNonFiniteSamplesDropped checks that NaN and ±Inf never reach a
// provider: an HPA cannot scale on them.
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
			{"metric":{"pod":"e"},"value":[1700000000,"0"]}]}`,
		want: model.Vector{
			{Metric: model.Metric{"pod": "b"}, Value: 1.5, Timestamp: 1700000000000},
			{Metric: model.Metric{"pod": "e"}, Value: 0, Timestamp: 1700000000000},
		},
	}, {
		name:   "only NaN",
		result: `{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1700000000,"NaN"]}]}`,
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
				writeJSON(w, 200, `{"status":"success","data":`+tc.result+`}`)
			})
			c := newClient(t, promcollector.Options{URL: api.URL}, nil)
			got, err := c.Query(context.Background(), "x", time.Unix(1700000000, 0))
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
// time make one backend call, that gantry_backend_shared_queries_total
// counts the queries answered by another's call, and that different queries
// are not shared.
func TestSharedQueries(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	cases := []struct {
		name     string
		queries  []string
		times    []time.Time
		distinct int // distinct (query, time) pairs
	}{
		{name: "eight identical queries", queries: rep("up", 8), times: repT(ts, 8), distinct: 1},
		{name: "same query at two evaluation times", queries: rep("up", 6), times: append(repT(ts, 3), repT(ts.Add(time.Second), 3)...), distinct: 2},
		{name: "two different queries", queries: append(rep("up", 3), rep("down", 3)...), times: repT(ts, 6), distinct: 2},
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
			c := newClient(t, promcollector.Options{URL: api.URL, Timeout: 30 * time.Second}, reg)

			n := len(tc.queries)
			var wg sync.WaitGroup
			errs := make([]error, n)
			vals := make([]model.Vector, n)
			for i := range n {
				wg.Go(func() { vals[i], errs[i] = c.Query(context.Background(), tc.queries[i], tc.times[i]) })
			}
			// Hold the backend until every distinct query has arrived and
			// every caller waits for an answer: the duplicates joined.
			for range tc.distinct {
				select {
				case <-arrived:
				case <-time.After(10 * time.Second):
					t.Fatal("backend never called")
				}
			}
			backendtest.WaitGauge(t, reg, "gantry_backend_queries_waiting", float64(n))
			close(release)
			wg.Wait()

			for i, err := range errs {
				if err != nil {
					t.Fatalf("query %d: %v", i, err)
				}
				if diff := cmp.Diff(vals[0], vals[i]); diff != "" {
					t.Errorf("query %d got a different answer (-first +this):\n%s", i, diff)
				}
			}
			calls := len(api.Seen())
			shared := int(backendtest.CounterValue(t, reg, "gantry_backend_shared_queries_total"))
			if calls < tc.distinct || calls >= n {
				t.Errorf("backend calls = %d for %d queries of %d distinct, want duplicates shared", calls, n, tc.distinct)
			}
			if calls+shared != n {
				t.Errorf("backend calls %d + shared %d != %d queries: every query is either a call or answered by one", calls, shared, n)
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
	c := newClient(t, promcollector.Options{URL: api.URL, Timeout: 30 * time.Second}, reg)
	ts := time.Unix(1700000000, 0)

	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := c.Query(firstCtx, "up", ts); first <- err }()
	<-arrived
	second := make(chan error, 1)
	go func() { _, err := c.Query(context.Background(), "up", ts); second <- err }()
	backendtest.WaitGauge(t, reg, "gantry_backend_queries_waiting", 2) // the second caller joined
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

// TestNewRejectsBadURL checks --prometheus-url.
func TestNewRejectsBadURL(t *testing.T) {
	cases := []struct {
		name, url, wantErr string
	}{
		{name: "empty", url: "", wantErr: "prometheus URL is required (--prometheus-url)"},
		{name: "no scheme", url: "prometheus:9090", wantErr: `prometheus URL "prometheus:9090": expected http(s)://host[:port][/path]`},
		{name: "other scheme", url: "ftp://prometheus", wantErr: `expected http(s)://host[:port][/path]`},
		{name: "no host", url: "http:///api", wantErr: `expected http(s)://host[:port][/path]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := promcollector.New(promcollector.Options{URL: tc.url}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New(%q) error = %v, want it to contain %q", tc.url, err, tc.wantErr)
			}
		})
	}
}

// keyPair is a self-signed certificate usable as CA, server and client
// certificate.
type keyPair struct {
	certPEM, keyPEM []byte
	tls             tls.Certificate
}

func selfSigned(t *testing.T, cn string) keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	kp := keyPair{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	if kp.tls, err = tls.X509KeyPair(kp.certPEM, kp.keyPEM); err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestTLS runs the client against a TLS server: the CA and client
// certificate come from the flags or from a kubeconfig, and a flag takes
// over what the kubeconfig says.
func TestTLS(t *testing.T) {
	server, client, stranger := selfSigned(t, "prometheus"), selfSigned(t, "gantry"), selfSigned(t, "someone else")
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	kubeconfig := func(ca, cert, key []byte) string {
		return backendtest.WriteFile(t, "kubeconfig", fmt.Sprintf(`
apiVersion: v1
kind: Config
clusters:
- name: prom
  cluster: {server: "https://127.0.0.1", certificate-authority-data: %q}
contexts:
- name: prom
  context: {cluster: prom, user: gantry}
current-context: prom
users:
- name: gantry
  user: {client-certificate-data: %q, client-key-data: %q}
`, b64(ca), b64(cert), b64(key)))
	}
	caFile := backendtest.WriteFile(t, "ca.crt", string(server.certPEM))
	certFile, keyFile := backendtest.WriteFile(t, "tls.crt", string(client.certPEM)), backendtest.WriteFile(t, "tls.key", string(client.keyPEM))

	cases := []struct {
		name       string
		mutual     bool // the server requires a client certificate signed by client
		flags      backend.HTTPFlags
		wantReason string // empty: the query succeeds
		wantMsg    string
	}{{
		name:  "CA from --prometheus-ca-file",
		flags: backend.HTTPFlags{CAFile: caFile},
	}, {
		name:  "CA from a kubeconfig",
		flags: backend.HTTPFlags{AuthConfigFile: kubeconfig(server.certPEM, client.certPEM, client.keyPEM)},
	}, {
		name:  "--prometheus-ca-file takes over a kubeconfig's CA",
		flags: backend.HTTPFlags{AuthConfigFile: kubeconfig(stranger.certPEM, client.certPEM, client.keyPEM), CAFile: caFile},
	}, {
		name:   "mutual TLS with the client certificate flags",
		mutual: true,
		flags:  backend.HTTPFlags{CAFile: caFile, ClientCertFile: certFile, ClientKeyFile: keyFile},
	}, {
		name:   "mutual TLS with a kubeconfig's client certificate",
		mutual: true,
		flags:  backend.HTTPFlags{AuthConfigFile: kubeconfig(server.certPEM, client.certPEM, client.keyPEM)},
	}, {
		name:   "client certificate flags take over a kubeconfig's",
		mutual: true,
		flags:  backend.HTTPFlags{AuthConfigFile: kubeconfig(server.certPEM, stranger.certPEM, stranger.keyPEM), ClientCertFile: certFile, ClientKeyFile: keyFile},
	}, {
		name:       "server certificate from an unknown CA",
		flags:      backend.HTTPFlags{},
		wantReason: "unreachable",
		wantMsg:    "certificate signed by unknown authority",
	}, {
		name:       "mutual TLS without a client certificate",
		mutual:     true,
		flags:      backend.HTTPFlags{CAFile: caFile},
		wantReason: "unreachable",
		wantMsg:    "certificate required",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(vectorOK))
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{server.tls}, MinVersion: tls.VersionTLS13}
			if tc.mutual {
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(client.certPEM)
				srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pool
			}
			srv.StartTLS()
			t.Cleanup(srv.Close)

			httpCfg, _, err := tc.flags.HTTPConfig()
			if err != nil {
				t.Fatalf("HTTPConfig: %v", err)
			}
			c, err := promcollector.New(promcollector.Options{URL: srv.URL, HTTP: httpCfg, Timeout: 10 * time.Second}, nil)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			_, err = c.Query(context.Background(), "up", time.Now())
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("query: %v", err)
				}
				return
			}
			var be *backend.Error
			if !errors.As(err, &be) || be.Reason != tc.wantReason || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %v, want reason %q containing %q", err, tc.wantReason, tc.wantMsg)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "https://")) {
				t.Errorf("error names the backend's address: %v", err)
			}
		})
	}
}
