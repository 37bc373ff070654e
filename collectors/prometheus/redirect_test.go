package prometheus_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

// otherHostValue is what the host a backend redirects to answers: a value
// Gantry must not serve as the backend's unless redirects are configured.
const otherHostValue = 666

// answerWith answers queries with one sample of value v and series
// listings with one series.
func answerWith(v int) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/api/v1/series") {
			writeJSON(w, 200, `{"status":"success","data":[{"__name__":"up","job":"x"}]}`)
			return
		}
		writeJSON(w, 200, fmt.Sprintf(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1700000000,"%d"]}]}}`, v))
	}
}

// secretFlags are connection flags with every kind of secret a request
// carries: a bearer token, a tenant header and a custom header from the
// auth config's http_headers. extra is added to the auth config.
func secretFlags(t *testing.T, extra string) backend.HTTPFlags {
	t.Helper()
	return backend.HTTPFlags{
		TokenFile: backendtest.WriteFile(t, "token", "tok-secret"),
		Headers:   []string{"X-Scope-OrgID=team-a"},
		AuthConfigFile: backendtest.WriteFile(t, "auth.yaml", `
http_headers:
  X-Api-Key:
    secrets: [key-secret]
`+extra),
	}
}

// secretHeaders are the headers secretFlags make Gantry send.
var secretHeaders = []string{"Authorization", "X-Api-Key", "X-Scope-Orgid"}

// TestCrossHostRedirectNotFollowed: a Prometheus (or whatever answers at
// its address) that redirects to another host gets a backend error naming
// the redirect; the other host is not asked, so it neither sees the
// credentials nor has its value served. Two ports of 127.0.0.1 are two
// hosts here: what counts is the scheme, host and port.
func TestCrossHostRedirectNotFollowed(t *testing.T) {
	other := backendtest.NewAPI(t, answerWith(otherHostValue))
	origin := backendtest.NewAPI(t, backendtest.RedirectTo(func() string { return other.URL }))
	httpCfg, redirects, err := secretFlags(t, "").HTTPConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, promcollector.Options{URL: origin.URL, HTTP: httpCfg, Redirects: redirects, Timeout: 5 * time.Second}, nil)
	ctx := context.Background()
	calls := map[string]func() error{
		"query": func() error {
			vec, err := c.Query(ctx, "up", time.Unix(1700000000, 0))
			if err == nil {
				return fmt.Errorf("served %v", vec)
			}
			return err
		},
		"series": func() error {
			sets, err := c.Series(ctx, []string{"up"}, time.Unix(1699999000, 0), time.Unix(1700000000, 0))
			if err == nil {
				return fmt.Errorf("listed %v", sets)
			}
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			var be *backend.Error
			if !errors.As(err, &be) || be.Reason != "redirected" {
				t.Fatalf("error %v, want a backend error with reason redirected", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "redirect") || !strings.Contains(msg, "another host") {
				t.Errorf("message %q does not say that a redirect to another host was refused", msg)
			}
			for _, s := range []string{other.Listener.Addr().String(), origin.Listener.Addr().String(), "tok-secret", "key-secret"} {
				if strings.Contains(msg, s) {
					t.Errorf("message %q contains %q", msg, s)
				}
			}
		})
	}
	if n := len(other.Seen()); n != 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
}

// TestCrossHostRedirectWithoutSecrets: with follow_redirects: true in the
// auth config, redirects to another host are followed, but what Gantry
// sends there carries no credentials, tenant or configured headers — nor
// does a request that comes back to the backend after leaving it.
func TestCrossHostRedirectWithoutSecrets(t *testing.T) {
	cases := []struct {
		name string
		// back makes the other host redirect back to the backend
		// instead of answering.
		back bool
	}{
		{name: "to another host"},
		{name: "to another host and back", back: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var origin, other *backendtest.API
			other = backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.back && !strings.HasPrefix(r.URL.Path, "/back") {
					http.Redirect(w, r, origin.URL+"/back"+r.URL.Path, http.StatusTemporaryRedirect)
					return
				}
				answerWith(otherHostValue)(w, r)
			})
			origin = backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/back") {
					answerWith(otherHostValue)(w, r)
					return
				}
				backendtest.RedirectTo(func() string { return other.URL })(w, r)
			})
			httpCfg, redirects, err := secretFlags(t, "follow_redirects: true\n").HTTPConfig()
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, promcollector.Options{URL: origin.URL, HTTP: httpCfg, Redirects: redirects, Timeout: 5 * time.Second}, nil)
			ctx := context.Background()
			vec, err := c.Query(ctx, "up", time.Unix(1700000000, 0))
			if err != nil {
				t.Fatalf("query: %v", err)
			}
			if len(vec) != 1 || vec[0].Value != otherHostValue {
				t.Errorf("query = %v, want the value where the redirect led", vec)
			}
			if _, err := c.Series(ctx, []string{"up"}, time.Unix(1699999000, 0), time.Unix(1700000000, 0)); err != nil {
				t.Fatalf("series: %v", err)
			}
			var after []backendtest.Request // every request after the first hop
			after = append(after, other.Seen()...)
			for _, r := range origin.Seen() {
				if strings.HasPrefix(r.Path, "/back") {
					after = append(after, r)
				}
			}
			if len(after) == 0 {
				t.Fatal("no request followed the redirect")
			}
			for _, r := range after {
				for _, h := range secretHeaders {
					if v := r.Header.Values(h); len(v) != 0 {
						t.Errorf("%s %s after leaving the backend carried %s: %q", r.Method, r.Path, h, v)
					}
				}
				if r.Form.Get("query") == "" && r.Form.Get("match[]") == "" {
					t.Errorf("%s %s after the redirect lost the form: %v", r.Method, r.Path, r.Form)
				}
			}
			// The backend itself got the secrets on the first hop.
			first := origin.Seen()[0]
			got := map[string]string{}
			for _, h := range secretHeaders {
				got[h] = first.Header.Get(h)
			}
			want := map[string]string{"Authorization": "Bearer tok-secret", "X-Api-Key": "key-secret", "X-Scope-Orgid": "team-a"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("headers at the backend (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSameHostRedirect: redirects within the backend's own scheme, host and
// port (a proxy moving the API under a path) are followed with the
// credentials by default, and not at all with follow_redirects: false.
func TestSameHostRedirect(t *testing.T) {
	var origin *backendtest.API
	origin = backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/moved") {
			answerWith(1)(w, r)
			return
		}
		backendtest.RedirectTo(func() string { return origin.URL + "/moved" })(w, r)
	})
	t.Run("followed by default", func(t *testing.T) {
		httpCfg, redirects, err := secretFlags(t, "").HTTPConfig()
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, promcollector.Options{URL: origin.URL, HTTP: httpCfg, Redirects: redirects, Timeout: 5 * time.Second}, nil)
		vec, err := c.Query(context.Background(), "up", time.Unix(1700000000, 0))
		if err != nil || len(vec) != 1 || vec[0].Value != 1 {
			t.Fatalf("query = %v, %v; want the moved API's value", vec, err)
		}
		reqs := origin.Seen()
		last := reqs[len(reqs)-1]
		if last.Path != "/moved/api/v1/query" || last.Header.Get("X-Api-Key") != "key-secret" || last.Header.Get("Authorization") != "Bearer tok-secret" {
			t.Errorf("the moved API got %s with headers %v, want the query with the credentials", last.Path, last.Header)
		}
	})
	t.Run("not with follow_redirects: false", func(t *testing.T) {
		httpCfg, redirects, err := secretFlags(t, "follow_redirects: false\n").HTTPConfig()
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, promcollector.Options{URL: origin.URL, HTTP: httpCfg, Redirects: redirects, Timeout: 5 * time.Second}, nil)
		_, err = c.Query(context.Background(), "up", time.Unix(1700000000, 0))
		var be *backend.Error
		if !errors.As(err, &be) || be.Reason != "redirected" || !strings.Contains(err.Error(), "follow_redirects") {
			t.Errorf("error %v, want reason redirected naming follow_redirects", err)
		}
	})
}
