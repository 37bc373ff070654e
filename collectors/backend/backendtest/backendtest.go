// Package backendtest holds what the query backends' tests
// (collectors/prometheus, collectors/loki) share: a fake HTTP API that
// records what it is asked, and readers of the backend metrics that
// collectors/backend registers. It is imported by tests only.
package backendtest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Request is what the fake API saw of one request.
type Request struct {
	Method, Path, RawQuery, ContentType string
	Form                                url.Values // the parsed body
	Header                              http.Header
}

// API is an httptest server standing in for a backend's HTTP API, for
// what the real backend cannot be made to do on demand (hang, fail,
// answer garbage, echo headers). It records every request.
type API struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
}

// NewAPI starts an API that answers with respond; it is closed when the
// test ends.
func NewAPI(t testing.TB, respond func(w http.ResponseWriter, r *http.Request)) *API {
	t.Helper()
	a := &API{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.RawQuery
		ct := r.Header.Get("Content-Type")
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		a.mu.Lock()
		a.requests = append(a.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: raw, ContentType: ct, Form: form, Header: r.Header.Clone()})
		a.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

// Seen are the requests the API got so far, in order.
func (a *API) Seen() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// RedirectTo answers every request with a 307 to the same path under
// base(), which keeps the method and the form.
func RedirectTo(base func() string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, base()+r.URL.Path, http.StatusTemporaryRedirect)
	}
}

// Rejected reads gantry_backend_answers_rejected_total by backend, call
// and limit ("prometheus/query/max_samples").
func Rejected(t testing.TB, reg promclient.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "gantry_backend_answers_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[l["backend"]+"/"+l["call"]+"/"+l["limit"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

// WriteFile writes content to a file called name in a directory of its
// own that is removed when the test ends, and returns its path.
func WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ClosedURL is the URL of a local address where nothing listens.
func ClosedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// WaitGauge waits, within 10s, for the gauge's series in reg to sum to
// want.
func WaitGauge(t testing.TB, reg promclient.Gatherer, name string, want float64) {
	t.Helper()
	WaitFor(t, name, want, func() float64 { return GaugeValue(t, reg, name) })
}

// WaitCounter waits, within 10s, for the counter's series in reg to sum
// to want.
func WaitCounter(t testing.TB, reg promclient.Gatherer, name string, want float64) {
	t.Helper()
	WaitFor(t, name, want, func() float64 { return CounterValue(t, reg, name) })
}

// WaitFor polls value, within 10s, until it is want; what names it in
// the failure.
func WaitFor(t testing.TB, what string, want float64, value func() float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := value()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10s, want %v", what, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// GaugeValue sums a gauge's series in reg.
func GaugeValue(t testing.TB, reg promclient.Gatherer, name string) float64 {
	t.Helper()
	return sum(t, reg, name, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

// CounterValue sums a counter's series in reg.
func CounterValue(t testing.TB, reg promclient.Gatherer, name string) float64 {
	t.Helper()
	return sum(t, reg, name, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

func sum(t testing.TB, reg promclient.Gatherer, name string, value func(*dto.Metric) float64) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += value(m)
			}
		}
	}
	return v
}
