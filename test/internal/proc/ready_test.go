package proc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitReady(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs sleep and false")
	}
	notYet := errors.New("not yet")
	t.Run("ready after a few probes", func(t *testing.T) {
		p, err := Start("sleep", exec.Command("sleep", "30"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Terminate(5*time.Second, nil) })
		var calls atomic.Int32
		err = WaitReady(context.Background(), p, time.Millisecond, func(context.Context) error {
			if calls.Add(1) < 3 {
				return notYet
			}
			return nil
		})
		if err != nil || calls.Load() != 3 {
			t.Fatalf("WaitReady = %v after %d probes, want nil after 3", err, calls.Load())
		}
	})
	t.Run("process exits first", func(t *testing.T) {
		p, err := Start("false", exec.Command("false"), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = WaitReady(context.Background(), p, time.Millisecond, func(context.Context) error { return notYet })
		if err == nil || !strings.HasPrefix(err.Error(), "exited before becoming ready: ") {
			t.Fatalf("WaitReady = %v, want an exit error", err)
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		p, err := Start("sleep", exec.Command("sleep", "30"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Terminate(5*time.Second, nil) })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err = WaitReady(ctx, p, time.Hour, func(context.Context) error { return notYet })
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "(last probe: not yet)") {
			t.Fatalf("WaitReady = %v, want context.Canceled naming the last probe", err)
		}
	})
}

func TestGetOK(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			w.Write([]byte("ready\n"))
			return
		}
		http.Error(w, "ingester not ready\nsecond line", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tests := []struct {
		name, path, wantBody, wantErr string
	}{
		{name: "200 returns the body", path: "/ready", wantBody: "ready\n"},
		{name: "other status names path, status and first body line", path: "/other",
			wantErr: "GET /other: 503 Service Unavailable: ingester not ready"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := GetOK(context.Background(), srv.Client(), srv.URL+tc.path, 4096)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("GetOK error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(body) != tc.wantBody {
				t.Fatalf("GetOK = %q, %v; want %q, nil", body, err, tc.wantBody)
			}
		})
	}
}
