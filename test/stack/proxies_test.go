package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// nameServer accepts connections and writes its name on each.
func nameServer(t *testing.T, name string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestBalancer checks that connections alternate between the backends,
// and that a backend that refuses connections is skipped, not failed on.
func TestBalancer(t *testing.T) {
	a, b := nameServer(t, "a"), nameServer(t, "b")
	bal, err := NewBalancer(a.Addr().String(), b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	dial := func() string {
		t.Helper()
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(bal.Port()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	var got []string
	for range 4 {
		got = append(got, dial())
	}
	if diff := cmp.Diff([]string{"a", "b", "a", "b"}, got); diff != "" {
		t.Errorf("round robin (-want +got):\n%s", diff)
	}

	a.Close() // a refuses from now on
	got = nil
	for range 3 {
		got = append(got, dial())
	}
	if diff := cmp.Diff([]string{"b", "b", "b"}, got); diff != "" {
		t.Errorf("with a down (-want +got):\n%s", diff)
	}
	if total := bal.Total(); total[b.Addr().String()] != 5 || total[a.Addr().String()] != 2 {
		t.Errorf("Total() = %v, want a:2 b:5", total)
	}
}

// TestDelayProxy checks the delay, the counts, and that a request whose
// client gives up while held never reaches the backend.
func TestDelayProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		_, _ = io.WriteString(w, "answer to "+r.Form.Get("query"))
	}))
	defer backend.Close()
	p, err := NewDelayProxy(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	post := func(ctx context.Context, query string) (string, time.Duration, error) {
		begin := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.URL()+"/api/v1/query", strings.NewReader(url.Values{"query": {query}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", time.Since(begin), err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), time.Since(begin), err
	}

	ctx := context.Background()
	if got, _, err := post(ctx, "up"); err != nil || got != "answer to up" {
		t.Fatalf("without delay: %q, %v", got, err)
	}
	const delay = 300 * time.Millisecond
	p.SetDelay(delay, delay)
	got, took, err := post(ctx, "up")
	if err != nil || got != "answer to up" {
		t.Fatalf("with delay: %q, %v", got, err)
	}
	if took < delay {
		t.Errorf("with a delay of %s the answer came after %s", delay, took)
	}
	short, cancel := context.WithTimeout(ctx, delay/3)
	defer cancel()
	if _, _, err := post(short, "sum(up)"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a client giving up while held: %v, want its deadline", err)
	}
	// The handler sees the client leave a moment after the client does.
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().InFlight > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	want := DelayStats{
		Requests:    map[string]int{"/api/v1/query": 3},
		Forwarded:   map[string]int{"/api/v1/query": 2},
		Queries:     map[string]int{"up": 2, "sum(up)": 1},
		MaxInFlight: 1,
	}
	if diff := cmp.Diff(want, p.Stats()); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}
}
