package loki_test

import (
	"context"
	"errors"
	"github.com/gantry-dev/gantry/test/toolbin"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/loki"
)

// TestStartPushStop covers the non-testing variant: its own work dir,
// Loki's build info, a push accepted, and after Stop a process that is
// really gone and a work dir removed.
func TestStartPushStop(t *testing.T) {
	binDir := toolbin.Require(t, "loki")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := loki.Start(ctx, loki.Options{BinDir: binDir, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	workDir := strings.TrimSuffix(s.LogPath(), "/loki.log")
	defer s.Stop()

	resp, err := http.Get(s.URL() + "/loki/api/v1/status/buildinfo")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"version":"3.7.8"`) {
		t.Errorf("buildinfo: %s %s, want version 3.7.8 (install-loki.sh sets it)", resp.Status, body)
	}
	if err := s.Push(ctx, []loki.Stream{{Labels: map[string]string{"app": "web"}, Entries: []loki.Entry{{Time: time.Now(), Line: "hello"}}}}); err != nil {
		t.Errorf("Push: %v", err)
	}
	// Lines older than a week are refused (reject_old_samples): Push
	// reports Loki's answer.
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := s.Push(ctx, []loki.Stream{{Labels: map[string]string{"app": "web"}, Entries: []loki.Entry{{Time: old, Line: "x"}}}}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("Push of a month-old line: %v, want Loki's 400", err)
	}

	pid := s.PID()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d after Stop: kill -0 gave %v, want ESRCH", pid, err)
	}
	if _, err := os.Stat(workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir %s after Stop: stat gave %v, want not-exist", workDir, err)
	}
}

func TestStartMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := loki.Start(context.Background(), loki.Options{BinDir: dir, WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "run `make tools`") {
		t.Fatalf("Start with no binary in %s: got error %v, want one saying to run `make tools`", dir, err)
	}
}
