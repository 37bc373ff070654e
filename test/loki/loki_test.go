package loki_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/loki"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// TestStartPushStop covers the non-testing variant: its own work dir,
// Loki's build info (2.2.1, the Apache-2.0 release), a push accepted, and
// after Stop a process that is really gone and a work dir removed.
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

	// Loki 2 has no buildinfo endpoint; its build info is a metric.
	status, body := get(t, s.URL()+"/metrics", "")
	if status != http.StatusOK || !strings.Contains(body, `loki_build_info{`) || !strings.Contains(body, `version="2.2.1"`) {
		t.Errorf("GET /metrics: %d, loki_build_info %q; want version 2.2.1 (install-loki.sh sets it)", status, grepLine(body, "loki_build_info{"))
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

// TestMultiTenant: with MultiTenant, Loki refuses pushes and queries without
// an X-Scope-OrgID header, and each tenant sees only its own streams.
func TestMultiTenant(t *testing.T) {
	s := loki.StartT(t, loki.Options{MultiTenant: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	push := func(tenant, app string) error {
		return s.PushTenant(ctx, tenant, []loki.Stream{{Labels: map[string]string{"app": app}, Entries: []loki.Entry{{Time: now, Line: "hello"}}}})
	}
	if err := push("", "none"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("push without a tenant: %v, want Loki's 401", err)
	}
	for _, tenant := range []string{"team-a", "team-b"} {
		if err := push(tenant, "app-of-"+tenant); err != nil {
			t.Fatalf("push as %s: %v", tenant, err)
		}
	}
	values := func(tenant string) (int, string) {
		return get(t, s.URL()+"/loki/api/v1/label/app/values?"+url.Values{"start": {now.Add(-time.Minute).Format(time.RFC3339)}}.Encode(), tenant)
	}
	if status, body := values(""); status != http.StatusUnauthorized {
		t.Errorf("query without a tenant: %d %s, want 401", status, body)
	}
	for _, tc := range []struct{ tenant, want, notWant string }{
		{tenant: "team-a", want: `"app-of-team-a"`, notWant: "team-b"},
		{tenant: "team-b", want: `"app-of-team-b"`, notWant: "team-a"},
	} {
		status, body := values(tc.tenant)
		if status != http.StatusOK || !strings.Contains(body, tc.want) || strings.Contains(body, tc.notWant) {
			t.Errorf("app values as %s: %d %s, want %s and nothing of %s", tc.tenant, status, body, tc.want, tc.notWant)
		}
	}
}

// get fetches u, with an X-Scope-OrgID header unless tenant is empty, and
// returns the status and body.
func get(t *testing.T, u, tenant string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// grepLine returns the first line of text that contains s.
func grepLine(text, s string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
