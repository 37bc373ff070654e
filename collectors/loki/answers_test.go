package loki_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	promclient "github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	lokicollector "github.com/gantry-dev/gantry/collectors/loki"
)

// secretConfig is an HTTP client config with a bearer token and a custom
// secret header; with the tenant, every secret a Loki request carries.
func secretConfig(t *testing.T) commoncfg.HTTPClientConfig {
	cfg := commoncfg.DefaultHTTPClientConfig
	cfg.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: backendtest.WriteFile(t, "token", "tok-secret")}
	cfg.HTTPHeaders = &commoncfg.Headers{Headers: map[string]commoncfg.Header{"X-Api-Key": {Secrets: []commoncfg.Secret{"key-secret"}}}}
	return cfg
}

var secretHeaders = []string{"Authorization", "X-Api-Key", "X-Scope-Orgid"}

// TestCrossHostRedirect: a Loki that redirects to another host (another
// port of 127.0.0.1 is one) gets a backend error naming the redirect by
// default, and the other host is not asked; with redirects to other hosts
// allowed, they are followed without the tenant, credentials or headers.
func TestCrossHostRedirect(t *testing.T) {
	ctx := context.Background()
	calls := func(c *lokicollector.Client) map[string]func() (int, error) {
		return map[string]func() (int, error){
			"query": func() (int, error) {
				vec, err := c.Query(ctx, `sum(rate({app="web"}[1m]))`, time.Unix(1700000000, 0))
				return len(vec), err
			},
			"series": func() (int, error) {
				sets, err := c.Series(ctx, []string{`{app="web"}`}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
				return len(sets), err
			},
		}
	}
	t.Run("not followed by default", func(t *testing.T) {
		other := backendtest.NewAPI(t, vectorOK)
		origin := backendtest.NewAPI(t, backendtest.RedirectTo(func() string { return other.URL }))
		c := newClient(t, lokicollector.Options{URL: origin.URL, HTTP: secretConfig(t), Tenant: "team-a"}, nil)
		for name, call := range calls(c) {
			n, err := call()
			var be *backend.Error
			if !errors.As(err, &be) || be.Reason != "redirected" || !strings.Contains(err.Error(), "another host") {
				t.Errorf("%s = %d, %v; want a backend error with reason redirected, saying it led to another host", name, n, err)
			}
			if err != nil && strings.Contains(err.Error(), other.Listener.Addr().String()) {
				t.Errorf("%s: message %q names the other host", name, err)
			}
		}
		if n := len(other.Seen()); n != 0 {
			t.Errorf("the other host got %d requests, want none", n)
		}
	})
	t.Run("followed without secrets when allowed", func(t *testing.T) {
		other := backendtest.NewAPI(t, vectorOK)
		origin := backendtest.NewAPI(t, backendtest.RedirectTo(func() string { return other.URL }))
		c := newClient(t, lokicollector.Options{URL: origin.URL, HTTP: secretConfig(t), Tenant: "team-a", Redirects: backend.AnyOrigin}, nil)
		for name, call := range calls(c) {
			if n, err := call(); err != nil || n != 1 {
				t.Errorf("%s = %d, %v; want the other host's answer", name, n, err)
			}
		}
		reqs := other.Seen()
		if len(reqs) != 2 {
			t.Fatalf("the other host got %d requests, want 2", len(reqs))
		}
		for _, r := range reqs {
			for _, h := range secretHeaders {
				if v := r.Header.Values(h); len(v) != 0 {
					t.Errorf("%s %s at the other host carried %s: %q", r.Method, r.Path, h, v)
				}
			}
		}
		first := origin.Seen()[0]
		got := map[string]string{}
		for _, h := range secretHeaders {
			got[h] = first.Header.Get(h)
		}
		if diff := cmp.Diff(map[string]string{"Authorization": "Bearer tok-secret", "X-Api-Key": "key-secret", "X-Scope-Orgid": "team-a"}, got); diff != "" {
			t.Errorf("headers at Loki (-want +got):\n%s", diff)
		}
	})
}

// TestSameHostRedirect: a redirect within Loki's own scheme, host and port
// (a gateway moving the API under a path) is followed with the tenant and
// credentials by default, and not at all with NoRedirects (follow_redirects:
// false).
func TestSameHostRedirect(t *testing.T) {
	var origin *backendtest.API
	origin = backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/moved/") {
			vectorOK(w, r)
			return
		}
		backendtest.RedirectTo(func() string { return origin.URL + "/moved" })(w, r)
	})
	t.Run("followed by default", func(t *testing.T) {
		c := newClient(t, lokicollector.Options{URL: origin.URL, HTTP: secretConfig(t), Tenant: "team-a"}, nil)
		vec, err := c.Query(context.Background(), `sum(rate({app="web"}[1m]))`, time.Unix(1700000000, 0))
		if err != nil || len(vec) != 1 {
			t.Fatalf("query = %v, %v; want the moved API's sample", vec, err)
		}
		reqs := origin.Seen()
		last := reqs[len(reqs)-1]
		got := map[string]string{"path": last.Path}
		for _, h := range secretHeaders {
			got[h] = last.Header.Get(h)
		}
		want := map[string]string{"path": "/moved/loki/api/v1/query", "Authorization": "Bearer tok-secret", "X-Api-Key": "key-secret", "X-Scope-Orgid": "team-a"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("the moved API's request (-want +got):\n%s", diff)
		}
	})
	t.Run("not with NoRedirects", func(t *testing.T) {
		c := newClient(t, lokicollector.Options{URL: origin.URL, HTTP: secretConfig(t), Redirects: backend.NoRedirects}, nil)
		_, err := c.Series(context.Background(), []string{`{app="web"}`}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
		var be *backend.Error
		if !errors.As(err, &be) || be.Reason != "redirected" || !strings.Contains(err.Error(), "follow_redirects") {
			t.Errorf("error %v, want reason redirected naming follow_redirects", err)
		}
	})
}

// TestTLS runs the client against a TLS server: with the server's CA it
// queries, without it the call is unreachable with the certificate error,
// and neither message names the server's address.
func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(vectorOK))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := backendtest.WriteFile(t, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))

	withCA := commoncfg.DefaultHTTPClientConfig
	withCA.TLSConfig.CAFile = caFile
	c := newClient(t, lokicollector.Options{URL: srv.URL, HTTP: withCA, Timeout: 10 * time.Second}, nil)
	if _, err := c.Query(context.Background(), `sum(rate({app="web"}[1m]))`, time.Now()); err != nil {
		t.Errorf("query with the CA: %v", err)
	}

	c = newClient(t, lokicollector.Options{URL: srv.URL, Timeout: 10 * time.Second}, nil)
	_, err := c.Query(context.Background(), `sum(rate({app="web"}[1m]))`, time.Now())
	var be *backend.Error
	if !errors.As(err, &be) || be.Reason != "unreachable" || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("query without the CA: %v, want unreachable naming the unknown authority", err)
	}
	if strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "https://")) {
		t.Errorf("error names Loki's address: %v", err)
	}
}

// TestConfiguredLimits: the limits are the client's options, not only the
// defaults TestAnswerLimits checks.
func TestConfiguredLimits(t *testing.T) {
	vector := func(n int) func(w http.ResponseWriter, r *http.Request) {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"metric":{"pod":"web-%d"},"value":[1700000000,"1"]}`, i)
		}
		sb.WriteString(`]}}`)
		body := sb.String()
		return func(w http.ResponseWriter, r *http.Request) { write(w, 200, "application/json", body) }
	}
	streams := func(n int) func(w http.ResponseWriter, r *http.Request) {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"app":"web","pod":"web-%d"}`, i)
		}
		sb.WriteString(`]}`)
		body := sb.String()
		return func(w http.ResponseWriter, r *http.Request) { write(w, 200, "application/json", body) }
	}
	cases := []struct {
		name      string
		limits    backend.Limits
		respond   func(w http.ResponseWriter, r *http.Request)
		series    bool
		wantN     int
		wantLimit string // "" for none
	}{
		{name: "query within max samples", limits: backend.Limits{MaxSamples: 3}, respond: vector(3), wantN: 3},
		{name: "query over max samples", limits: backend.Limits{MaxSamples: 3}, respond: vector(4), wantLimit: "max_samples"},
		{name: "query over max response bytes", limits: backend.Limits{MaxResponseBytes: 1024}, respond: vector(20), wantLimit: "max_response_bytes"},
		{name: "series within max series", limits: backend.Limits{MaxSeries: 2}, respond: streams(2), series: true, wantN: 2},
		{name: "series over max series", limits: backend.Limits{MaxSeries: 2}, respond: streams(3), series: true, wantLimit: "max_series"},
		{name: "series over max response bytes", limits: backend.Limits{MaxResponseBytes: 100}, respond: streams(10), series: true, wantLimit: "max_response_bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, tc.respond)
			reg := promclient.NewRegistry()
			c := newClient(t, lokicollector.Options{URL: api.URL, Limits: tc.limits}, reg)
			ctx := context.Background()
			var n int
			var err error
			call := "query"
			if tc.series {
				call = "series"
				var sets []model.LabelSet
				sets, err = c.Series(ctx, []string{`{app="web"}`}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
				n = len(sets)
			} else {
				var vec model.Vector
				vec, err = c.Query(ctx, `sum by (pod) (rate({app="web"}[1m]))`, time.Unix(1700000000, 0))
				n = len(vec)
			}
			if tc.wantLimit == "" {
				if err != nil || n != tc.wantN {
					t.Fatalf("%s = %d, %v; want %d", call, n, err, tc.wantN)
				}
				return
			}
			flag := "--backend-" + strings.ReplaceAll(tc.wantLimit, "_", "-")
			var be *backend.Error
			if !errors.As(err, &be) || be.Reason != "too_large" || !strings.Contains(err.Error(), flag) {
				t.Fatalf("%s = %d, %v; want a too_large backend error naming %s", call, n, err, flag)
			}
			if diff := cmp.Diff(map[string]float64{"loki/" + call + "/" + tc.wantLimit: 1}, backendtest.Rejected(t, reg)); diff != "" {
				t.Errorf("rejected answers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAnswerLimits: query answers with more samples than
// --backend-max-samples, listings with more streams than
// --backend-max-series and answers longer than
// --backend-max-response-bytes are refused with a reason naming the limit,
// and counted.
func TestAnswerLimits(t *testing.T) {
	const defaultBytes = 64 << 20
	vector := func(n int) string {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"metric":{"pod":"web-%d"},"value":[1700000000,"1"]}`, i)
		}
		sb.WriteString(`]}}`)
		return sb.String()
	}
	streams := func(n int) string {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"app":"web","pod":"web-%d"}`, i)
		}
		sb.WriteString(`]}`)
		return sb.String()
	}
	answer := func(body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) { write(w, 200, "application/json", body) }
	}
	long := func(length bool) func(w http.ResponseWriter, r *http.Request) {
		head, tail, size := `{"status":"success","data":{"resultType":"vector","result":[`, `]}}`, defaultBytes+32<<20
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if length {
				w.Header().Set("Content-Length", strconv.Itoa(len(head)+size+len(tail)))
			}
			_, err := io.WriteString(w, head)
			chunk := []byte(strings.Repeat(" ", 1<<20))
			for left := size; left > 0 && err == nil; left -= len(chunk) {
				_, err = w.Write(chunk)
			}
			if err == nil {
				_, _ = io.WriteString(w, tail)
			}
		}
	}
	cases := []struct {
		name      string
		respond   func(w http.ResponseWriter, r *http.Request)
		series    bool
		wantLimit string // "" for none
		wantFlag  string
		wantN     int
	}{{
		name: "as many samples as the limit", respond: answer(vector(100_000)), wantN: 100_000,
	}, {
		name: "one sample more than the limit", respond: answer(vector(100_001)),
		wantLimit: "max_samples", wantFlag: "--backend-max-samples",
	}, {
		name: "as many streams as the limit", respond: answer(streams(100_000)), series: true, wantN: 100_000,
	}, {
		name: "one stream more than the limit", respond: answer(streams(100_001)), series: true,
		wantLimit: "max_series", wantFlag: "--backend-max-series",
	}, {
		name: "an answer longer than the byte limit", respond: long(false),
		wantLimit: "max_response_bytes", wantFlag: "--backend-max-response-bytes",
	}, {
		name: "an answer whose announced length is over the byte limit", respond: long(true),
		wantLimit: "max_response_bytes", wantFlag: "--backend-max-response-bytes",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := backendtest.NewAPI(t, tc.respond)
			reg := promclient.NewRegistry()
			c := newClient(t, lokicollector.Options{URL: api.URL, Timeout: 20 * time.Second}, reg)
			ctx := context.Background()
			var n int
			var err error
			call := "query"
			if tc.series {
				call = "series"
				var sets []model.LabelSet
				sets, err = c.Series(ctx, []string{`{app="web"}`}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
				n = len(sets)
			} else {
				var vec model.Vector
				vec, err = c.Query(ctx, `sum by (pod) (rate({app="web"}[1m]))`, time.Unix(1700000000, 0))
				n = len(vec)
			}
			if tc.wantLimit == "" {
				if err != nil || n != tc.wantN {
					t.Fatalf("%s = %d, %v; want %d", call, n, err, tc.wantN)
				}
				return
			}
			var be *backend.Error
			if !errors.As(err, &be) || be.Reason != "too_large" || !strings.HasPrefix(err.Error(), "loki: too_large: ") || !strings.Contains(err.Error(), tc.wantFlag) {
				t.Fatalf("%s = %d, %v; want a too_large backend error naming %s", call, n, err, tc.wantFlag)
			}
			if diff := cmp.Diff(map[string]float64{"loki/" + call + "/" + tc.wantLimit: 1}, backendtest.Rejected(t, reg)); diff != "" {
				t.Errorf("rejected answers (-want +got):\n%s", diff)
			}
		})
	}
}
