package backend_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	commoncfg "github.com/prometheus/common/config"

	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
)

// member is a fake HA member that answers with its name, or fails with a
// 503 or by hanging while broken is set.
type member struct {
	*backendtest.API
	name   string
	broken atomic.Int32 // 0 healthy, 1 answers 503, 2 hangs until the request ends
}

func newMember(t *testing.T, name string) *member {
	m := &member{name: name}
	m.API = backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch m.broken.Load() {
		case 1:
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		case 2:
			<-r.Context().Done()
		default:
			io.WriteString(w, m.name)
		}
	})
	return m
}

// hits counts the requests m got for path (the probes excluded).
func (m *member) hits(path string) int {
	n := 0
	for _, r := range m.Seen() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func haClient(t *testing.T, reg *promclient.Registry, members ...*member) *http.Client {
	t.Helper()
	var urls []string
	for _, m := range members {
		urls = append(urls, m.URL+"/prefix")
	}
	parsed, err := backend.ParseMembers("test", urls)
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := backend.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := backend.NewHTTPClient(backend.ClientOptions{Backend: "test", URLs: parsed, HTTP: commoncfg.DefaultHTTPClientConfig, ProbePath: "/probe", ProbeInterval: 20 * time.Millisecond, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// ask POSTs a form to the set (built for the first member's URL, as the
// clients do) and returns the answering member's name.
func ask(t *testing.T, hc *http.Client, first *member, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, first.URL+"/prefix/api/v1/query", strings.NewReader(url.Values{"query": {"up"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &url.Error{Op: "status", URL: "", Err: io.ErrUnexpectedEOF}
	}
	return string(body), nil
}

// TestHASetFailsOver: the preferred member answers while healthy; when it
// fails (503, or no answer at all) the same request, body and all, is
// answered by the other within its deadline; after failing twice in a row
// the member is skipped (member_up 0) until a probe finds it healthy, and
// then preferred again.
func TestHASetFailsOver(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int32
	}{{"5xx", 1}, {"hangs", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newMember(t, "a"), newMember(t, "b")
			reg := promclient.NewRegistry()
			hc := haClient(t, reg, a, b)
			const path = "/prefix/api/v1/query"

			if got, err := ask(t, hc, a, 5*time.Second); err != nil || got != "a" {
				t.Fatalf("healthy set: answered by %q (%v), want the first member", got, err)
			}
			a.broken.Store(tc.mode)
			for i := range 2 {
				got, err := ask(t, hc, a, 2*time.Second)
				if err != nil || got != "b" {
					t.Fatalf("request %d with the first member broken: answered by %q (%v), want b", i, got, err)
				}
			}
			for _, r := range b.Seen() {
				if r.Path == path && r.Form.Get("query") != "up" {
					t.Fatalf("the retried request lost its body: form %v", r.Form)
				}
			}
			backendtest.WaitGauge(t, reg, "gantry_backend_member_up", 1) // a down, b up
			triedA := a.hits(path)
			for range 3 {
				if got, err := ask(t, hc, a, 2*time.Second); err != nil || got != "b" {
					t.Fatalf("first member down: answered by %q (%v), want b", got, err)
				}
			}
			if n := a.hits(path); n != triedA {
				t.Errorf("a member that is down got %d more requests; want it skipped", n-triedA)
			}
			if n := backendtest.CounterValue(t, reg, "gantry_backend_member_retries_total"); n < 2 {
				t.Errorf("gantry_backend_member_retries_total = %v, want >= 2", n)
			}

			a.broken.Store(0)
			backendtest.WaitGauge(t, reg, "gantry_backend_member_up", 2)
			if got, err := ask(t, hc, a, 5*time.Second); err != nil || got != "a" {
				t.Fatalf("after recovery: answered by %q (%v), want a again", got, err)
			}
		})
	}
}

// TestHASetAllDown: when every member fails, the request fails with the
// last member's answer, within its deadline, and no member is left out
// for good.
func TestHASetAllDown(t *testing.T) {
	a, b := newMember(t, "a"), newMember(t, "b")
	a.broken.Store(2)
	b.broken.Store(1)
	hc := haClient(t, promclient.NewRegistry(), a, b)
	start := time.Now()
	if got, err := ask(t, hc, a, time.Second); err == nil {
		t.Fatalf("answered %q with every member broken", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v with a 1s deadline", d)
	}
}

// TestTenantHeader: a request goes out with its context's tenant in the
// configured header, replacing a value set on it; one without a tenant
// is refused before it is sent.
func TestTenantHeader(t *testing.T) {
	api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {})
	u, _ := url.Parse(api.URL)
	hc, err := backend.NewHTTPClient(backend.ClientOptions{Backend: "test", URLs: []*url.URL{u}, HTTP: commoncfg.DefaultHTTPClientConfig, TenantHeader: "THANOS-TENANT"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.URL+"/x", nil)
		req.Header.Set("Thanos-Tenant", "forged")
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := send(backend.WithTenant(context.Background(), "team-a")); err != nil {
		t.Fatal(err)
	}
	if err := send(context.Background()); err == nil {
		t.Fatal("a request without a tenant was sent")
	}
	seen := api.Seen()
	if len(seen) != 1 {
		t.Fatalf("backend got %d requests, want 1", len(seen))
	}
	if got := seen[0].Header.Values("Thanos-Tenant"); len(got) != 1 || got[0] != "team-a" {
		t.Errorf("tenant header = %q, want [team-a]", got)
	}
}

func TestTenancyOf(t *testing.T) {
	tn := &backend.Tenancy{Header: "X-Scope-OrgID", ByNamespace: map[string]string{"shop": "team-shop"}, Template: "t-$namespace", Namespaces: func() []string { return []string{"b", "a", "shop"} }}
	for ns, want := range map[string]string{"shop": "team-shop", "web": "t-web", "": ""} {
		got, ok := tn.Of(ns)
		if got != want || ok != (want != "") {
			t.Errorf("Of(%q) = %q, %v; want %q", ns, got, ok, want)
		}
	}
	if got := strings.Join(tn.All(), ","); got != "t-a,t-b,team-shop" {
		t.Errorf("All() = %s", got)
	}
	table := &backend.Tenancy{Header: "X-Scope-OrgID", ByNamespace: map[string]string{"a": "ta"}}
	if _, err := table.TenantOf(backend.WithNamespace(context.Background(), "b"), "cortex"); err == nil || !strings.Contains(err.Error(), `no tenant for namespace "b"`) {
		t.Errorf("unmapped namespace: err = %v", err)
	}
	if got, err := table.TenantOf(backend.WithNamespace(context.Background(), "a"), "cortex"); err != nil || got != "ta" {
		t.Errorf("mapped namespace: %q, %v", got, err)
	}
	for _, bad := range []*backend.Tenancy{
		{Header: "X-Scope-OrgID"},
		{Header: "bad header", Fixed: "x"},
		{Header: "X-Scope-OrgID", Fixed: "a\r\nb"},
		{Header: "X-Scope-OrgID", ByNamespace: map[string]string{"a": ""}},
	} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
}
