package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateRules runs `gantry migrate-rules` both ways: manifests on
// stdout with the report on stderr, and one file per namespace with the
// report on stdout. What the split decides is adapter/migrate's tests'.
func TestMigrateRules(t *testing.T) {
	noCluster(t)
	const file = "../../adapter/migrate/testdata/teams.yaml"

	code, stdout, stderr := runGantry(t, "migrate-rules", "--config", file)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if n := strings.Count(stdout, "kind: MetricRule\n"); n != 2 || strings.Count(stdout, "\n---\n") != 1 {
		t.Errorf("stdout has %d MetricRules, want 2 documents:\n%s", n, stdout)
	}
	for _, want := range []string{
		file + ": rules[1] (shop_checkout_duration_seconds_count): moves to MetricRule shop/migrated spec.rules[0]\n",
		file + ": rules[0] (^(.+)_total$): stays central: seriesQuery: namespace!=\"\" selects every namespace\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr = runGantry(t, "migrate-rules", "--config", file, "--out", out, "--name", "team-rules", "--allowed-backends", "local")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, ns := range []string{"payments", "shop"} {
		path := filepath.Join(out, ns+".yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "  name: team-rules\n  namespace: "+ns+"\n") {
			t.Errorf("%s is not MetricRule %s/team-rules:\n%s", path, ns, b)
		}
		if !strings.Contains(stdout, "wrote "+path+"\n") {
			t.Errorf("stdout does not say it wrote %s:\n%s", path, stdout)
		}
	}
	if want := "rules[7] (shop_unavailable_replicas): moves to MetricRule shop/team-rules spec.rules[2]\n"; !strings.Contains(stdout, want) {
		t.Errorf("--allowed-backends local: stdout lacks %q:\n%s", want, stdout)
	}

	for _, tc := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"migrate-rules"}, 2, "gantry migrate-rules: --config is required\n"},
		{[]string{"migrate-rules", "--config", "testdata/broken.yaml"}, 1, "testdata/broken.yaml"},
		{[]string{"migrate-rules", "--config", "no-such.yaml"}, 1, "reading config"},
	} {
		code, _, stderr := runGantry(t, tc.args...)
		if code != tc.wantCode || !strings.Contains(stderr, tc.want) {
			t.Errorf("gantry %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.wantCode, tc.want)
		}
	}
}
