package licenses_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGoModsFound: every go.mod is found, nested ones too, except where the
// go command itself would not look (testdata, vendor, . and _ directories)
// and bin/, where `make tools` unpacks modules.
func TestGoModsFound(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{".", "test/tools/a", "test/tools/b/nested", "bin/x", "test/vendor/y", "test/testdata/z", ".git/w", "_old/v", "cmd"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if dir == "cmd" {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, dir, "go.mod"), []byte("module example.com/x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := goMods(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"go.mod", "test/tools/a/go.mod", "test/tools/b/nested/go.mod"}
	if !slices.Equal(got, want) {
		t.Errorf("goMods = %v, want %v", got, want)
	}
}

// TestClassifyCachedModules classifies modules of Gantry's build, whose
// licenses are known, from the module cache (where building Gantry put
// them; go mod download fetches one that is missing): the classifier must
// name them, and the policy accept them.
func TestClassifyCachedModules(t *testing.T) {
	if testing.Short() {
		t.Skip("licensecheck compiles its ~380 license patterns on first use (seconds, up to 20 s under -race): not in -short (make unit); make test runs it")
	}
	root := repoRoot(t)
	modfile, err := copyModFile(filepath.Join(root, "go.mod"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ module, want string }{
		{"github.com/google/licensecheck", "BSD-3-Clause"},
		{"github.com/grafana/grafana-foundation-sdk/go", "Apache-2.0"},
		{"gopkg.in/yaml.v3", "MIT"}, // MIT and Apache-2.0 in one LICENSE
	} {
		t.Run(tc.module, func(t *testing.T) {
			raw, err := goCommand(context.Background(), root, "mod", "download", "-modfile="+modfile, "-json", tc.module)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := decodeModules(raw)
			if err != nil || len(ms) != 1 || ms[0].Dir == "" {
				t.Fatalf("go mod download %s: %v %+v", tc.module, err, ms)
			}
			ids, files, err := classify(ms[0].Dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(ids, tc.want) {
				t.Errorf("%s (%v): recognized %v, want %s among them", tc.module, files, ids, tc.want)
			}
			if v := decide(ids, true, nil); !v.ok {
				t.Errorf("%s: %s", tc.module, v.why)
			}
		})
	}
}

// TestAGPLModuleFails proves the check on a real AGPL module: a repository
// tree whose tools module requires Loki 3 (AGPL-3.0) and builds one of its
// packages. goMods finds that go.mod, and checkGoMod lists Loki 3 in its
// graph, sees a package of it built, reads its LICENSE from the module
// cache (downloading the module, 29 MB, once per machine) and fails naming
// the go.mod, the module and the license. Only Loki 3 itself is classified:
// downloading its whole graph would prove nothing more.
func TestAGPLModuleFails(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads github.com/grafana/loki/v3 from the Go module proxy: not in -short (make unit); make test runs it")
	}
	const loki = "github.com/grafana/loki/v3"
	root := t.TempDir()
	tools := filepath.Join(root, "test", "tools", "agpl")
	if err := os.MkdirAll(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		filepath.Join(root, "go.mod"):    "module example.com/probe\n\ngo 1.26.8\n",
		filepath.Join(tools, "go.mod"):   "module example.com/probe/test/tools/agpl\n\ngo 1.26.8\n\nrequire " + loki + " v3.7.8\n",
		filepath.Join(tools, "tools.go"): "//go:build tools\n\npackage tools\n\n// A package of Loki 3 without imports: built, without Loki's dependencies.\nimport _ \"" + loki + "/pkg/util/constants\"\n",
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gomods, err := goMods(root)
	if err != nil {
		t.Fatal(err)
	}
	const gomod = "test/tools/agpl/go.mod"
	if !slices.Contains(gomods, gomod) {
		t.Fatalf("goMods found %v, not %s", gomods, gomod)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	// An allowance for Loki 3 must not help: AGPL cannot be allowed.
	allows := []*allowance{{path: loki, license: "AGPL-3.0", reason: "no"}}
	r, err := checkGoMod(ctx, filepath.Join(root, gomod), t.TempDir(), allows, func(path string) bool { return path == loki })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checked in %s: %d module(s), %d built, %d downloaded", time.Since(start).Round(time.Millisecond), r.modules, r.built, r.downloaded)
	want := loki + "@v3.7.8: AGPL-3.0 is not accepted (copyleft or not open source); no allowance can admit it (LICENSE: AGPL-3.0)"
	if len(r.failures) != 1 || r.failures[0] != want {
		t.Errorf("failures %q, want [%q]", r.failures, want)
	}
	if r.built != 1 {
		t.Errorf("%d module(s) built, want 1 (Loki 3)", r.built)
	}
	for _, f := range r.failures {
		t.Logf("as TestModuleLicenses reports it: %s: %s", gomod, f)
		if !strings.HasPrefix(f, loki+"@") {
			t.Errorf("failure names another module: %s", f)
		}
	}
}
