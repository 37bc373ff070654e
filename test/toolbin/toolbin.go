// Package toolbin locates the real component binaries (kube-apiserver, etcd,
// kwok, prometheus, ...) that `make tools` builds into <repo root>/bin, for
// the harnesses under test/ and for `make demo`.
package toolbin

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Env names the environment variable that overrides the bin directory.
const Env = "GANTRY_BIN_DIR"

// modulePath identifies the repository root when walking up from the
// working directory: tools modules under test/tools have go.mod files too.
const modulePath = "github.com/gantry-dev/gantry"

// Dir returns where the tool binaries live: $GANTRY_BIN_DIR if set, else
// <repo root>/bin, the repo root being the nearest directory at or above the
// working directory whose go.mod declares module github.com/gantry-dev/gantry.
func Dir() (string, error) {
	if d := os.Getenv(Env); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repo root: %w", err)
	}
	root, err := repoRoot(wd)
	if err != nil {
		return "", fmt.Errorf("%w; set %s or run from inside the repository", err, Env)
	}
	return filepath.Join(root, "bin"), nil
}

// DirOr returns dir, or Dir() when dir is empty: how a harness resolves
// its Options.BinDir.
func DirOr(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return Dir()
}

// Find returns the executable name in dir (Dir() when dir is empty), or an
// error that tells the reader to run `make tools`.
func Find(dir, name string) (string, error) {
	dir, err := DirOr(dir)
	if err != nil {
		return "", err
	}
	return Path(dir, name)
}

// Path returns dir/name if it is an executable file, else an error that
// tells the reader to run `make tools`.
func Path(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s binary not found or not executable at %s: run `make tools` (or set %s to a directory holding it)", name, p, Env)
	}
	return p, nil
}

func repoRoot(dir string) (string, error) {
	for d := dir; ; {
		if declaresModule(filepath.Join(d, "go.mod"), modulePath) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod for module %s at or above %s", modulePath, dir)
		}
		d = parent
	}
}

// declaresModule reports whether the go.mod at path has `module want`.
func declaresModule(path, want string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		name := strings.Trim(strings.TrimSpace(rest), "\"`")
		return name == want
	}
	return false
}

// Require is how a test that runs real components starts: under
// `go test -short` (`make unit`) it skips the test, saying which
// components it needs; otherwise each named binary must be in Dir(), and a
// missing one fails the test naming it and the target that builds it. A
// real component never silently disappears from `make test`.
func Require(t testing.TB, names ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs the real %s (skipped by -short; `make test` runs it)", strings.Join(names, ", "))
	}
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := Path(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
