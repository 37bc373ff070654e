package dashboards_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/test/toolbin"
)

// linter returns the dashboard-linter binary that `make tools` builds
// (test/tools/install-dashboard-linter.sh); a missing binary fails the test.
func linter(t *testing.T) string {
	t.Helper()
	return filepath.Join(toolbin.Require(t, "dashboard-linter"), "dashboard-linter")
}

// lint runs `dashboard-linter lint --strict` on file with the .lint
// configuration beside the dashboards; --strict makes any error or warning
// a non-zero exit.
func lint(t *testing.T, bin, file, config string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, "lint", "--strict", "--config", config, file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestDashboardLinter runs Grafana's dashboard-linter over every dashboard.
// The rules it skips, and why, are in .lint.
func TestDashboardLinter(t *testing.T) {
	bin := linter(t)
	config, err := filepath.Abs(".lint")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range loadCommitted(t) {
		t.Run(c.name, func(t *testing.T) {
			if out, err := lint(t, bin, c.name, config); err != nil {
				t.Errorf("dashboard-linter: %v\n%s", err, out)
			}
		})
	}

	// The linter and the configuration must still catch problems: an
	// editable dashboard, and the job/instance rules on a dashboard the
	// exclusions do not name.
	for _, tc := range []struct {
		name, file, from, to, want string
	}{
		{"editable dashboard", "gantry-overview.json", `"editable": false`, `"editable": true`, "is editable"},
		{"exclusions name their dashboards", "gantry-autoscaling.json", `"title": "Gantry / Autoscaling"`, `"title": "Gantry / Something else"`, "is missing the job template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte(tc.from)) {
				t.Fatalf("%s has no %s", tc.file, tc.from)
			}
			file := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(file, bytes.Replace(raw, []byte(tc.from), []byte(tc.to), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := lint(t, bin, file, config)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("dashboard-linter passed or did not say %q: %v\n%s", tc.want, err, out)
			}
		})
	}
}
