package licenses_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// module is one entry of `go list -m -json all` or `go mod download -json`.
type module struct {
	Path    string
	Version string
	Main    bool
	Dir     string
	Replace *module
	Error   *struct{ Err string }
}

// files is the module whose files are built: the replacement, if any.
func (m module) files() module {
	if m.Replace != nil {
		return *m.Replace
	}
	return m
}

func (m module) String() string {
	s := m.Path + "@" + m.Version
	if r := m.Replace; r != nil {
		s += " => " + r.Path
		if r.Version != "" {
			s += "@" + r.Version
		}
	}
	return s
}

// repoRoot is the repository's root, two levels up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(raw, []byte("module github.com/gantry-dev/gantry\n")) {
		t.Fatalf("%s is not Gantry's root (go.mod: %v)", root, err)
	}
	return root
}

// goMods lists every go.mod under root, as paths relative to it, skipping
// what the go command skips (directories named testdata or vendor, or
// starting with . or _) and bin/, where `make tools` unpacks modules.
func goMods(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || rel == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "go.mod" {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// goCommand runs the go command in dir, the module's directory, with the
// module settings of `make test` and no workspace. Callers pass -modfile
// with a copy of the module's go.mod (copyModFile): -mod=mod may add sums,
// and they go to the copy, never to the repository.
func goCommand(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func decodeModules(raw []byte) ([]module, error) {
	var out []module
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		var m module
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
}

// copyModFile copies the go.mod at gomod, and its go.sum, to a new pair
// x.mod, x.sum under tmp (the names -modfile wants) and returns x.mod.
func copyModFile(gomod, tmp string) (string, error) {
	f, err := os.CreateTemp(tmp, "*.mod")
	if err != nil {
		return "", err
	}
	defer f.Close()
	raw, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(raw); err != nil {
		return "", err
	}
	sum, err := os.ReadFile(strings.TrimSuffix(gomod, ".mod") + ".sum")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return f.Name(), os.WriteFile(strings.TrimSuffix(f.Name(), ".mod")+".sum", sum, 0o644)
}

// report is what checking one go.mod found.
type report struct {
	modules, built, downloaded int
	// failures name the module and say why it fails.
	failures []string
	// notes are modules whose license could not be read but that no build
	// compiles.
	notes []string
}

// checkGoMod lists the build graph of gomod (`go list -m -e -json all`) and
// the modules whose packages its builds compile (`go list -deps` of every
// package, tests and the tools build tag included), downloads the modules
// the cache lacks, and applies the policy to each module that only selects
// (nil: all). Allowances used are marked.
func checkGoMod(ctx context.Context, gomod, tmp string, allows []*allowance, only func(path string) bool) (report, error) {
	var r report
	dir := filepath.Dir(gomod)
	modfile, err := copyModFile(gomod, tmp)
	if err != nil {
		return r, err
	}
	// -e: a module whose metadata the proxy no longer serves is listed
	// with an error instead of failing the listing.
	raw, err := goCommand(ctx, dir, "list", "-modfile="+modfile, "-m", "-e", "-json", "all")
	if err != nil {
		return r, err
	}
	all, err := decodeModules(raw)
	if err != nil {
		return r, fmt.Errorf("decoding go list output: %w", err)
	}
	raw, err = goCommand(ctx, dir, "list", "-modfile="+modfile, "-e", "-deps", "-test", "-tags", "tools", "-f", "{{with .Module}}{{.Path}}{{end}}", "./...")
	if err != nil {
		return r, err
	}
	built := map[string]bool{}
	for _, p := range strings.Fields(string(raw)) {
		built[p] = true
	}

	var mods []module
	var missing []string
	for _, m := range all {
		if m.Main || (only != nil && !only(m.Path)) {
			continue
		}
		mods = append(mods, m)
		if built[m.Path] {
			r.built++
		}
		if f := m.files(); f.Dir == "" && f.Version != "" && m.Error == nil {
			missing = append(missing, f.Path+"@"+f.Version)
		}
	}
	r.modules = len(mods)

	// A module in the graph whose packages no build needed is not in the
	// cache until downloaded.
	dirs := map[string]module{}
	if len(missing) > 0 {
		raw, err := goCommand(ctx, dir, append([]string{"mod", "download", "-modfile=" + modfile, "-json"}, missing...)...)
		got, derr := decodeModules(raw)
		if derr != nil || (err != nil && len(got) == 0) {
			return r, errors.Join(err, derr)
		}
		for _, m := range got {
			dirs[m.Path+"@"+m.Version] = m
		}
		r.downloaded = len(missing)
	}

	for _, m := range mods {
		f, isBuilt := m.files(), built[m.Path]
		if f.Dir == "" {
			d := dirs[f.Path+"@"+f.Version]
			if d.Dir == "" {
				why := "not downloaded"
				switch {
				case m.Error != nil:
					why = m.Error.Err
				case d.Error != nil:
					why = d.Error.Err
				}
				msg := fmt.Sprintf("%s: cannot read its license: %s", m, why)
				if isBuilt {
					r.failures = append(r.failures, msg)
				} else {
					r.notes = append(r.notes, msg+" (no build compiles it)")
				}
				continue
			}
			f.Dir = d.Dir
		}
		ids, files, err := classify(f.Dir)
		if err != nil {
			r.failures = append(r.failures, fmt.Sprintf("%s: %v", m, err))
			continue
		}
		a := find(allows, m.Path, m.Version)
		v := decide(ids, isBuilt, a)
		if v.allowed {
			a.used = true
		}
		if !v.ok {
			found := strings.Join(files, ", ")
			if found == "" {
				found = "no license file"
			}
			r.failures = append(r.failures, fmt.Sprintf("%s: %s (%s: %s)", m, v.why, found, orNone(ids)))
		}
	}
	return r, nil
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "nothing recognized"
	}
	return strings.Join(ids, ", ")
}

// TestModuleLicenses checks every module in the build graph of every go.mod
// in the repository against the license policy (policy_test.go, README
// "Licenses"). It reads the Go module cache and downloads what a build has
// not put there from the Go module proxy, so it is not in the -short tier.
func TestModuleLicenses(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the license of every module of every go.mod from the Go module cache, downloading what is missing: not in -short (make unit); make test runs it")
	}
	root := repoRoot(t)
	allows, err := readAllowances("allowed.txt")
	if err != nil {
		t.Fatal(err)
	}
	gomods, err := goMods(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	checked := 0
	for _, gomod := range gomods {
		t.Run(gomod, func(t *testing.T) {
			start := time.Now()
			r, err := checkGoMod(ctx, filepath.Join(root, gomod), tmp, allows, nil)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			t.Logf("%d modules in the graph, %d of them built, %d downloaded now, in %s", r.modules, r.built, r.downloaded, time.Since(start).Round(time.Millisecond))
			for _, n := range r.notes {
				t.Logf("%s: %s", gomod, n)
			}
			for _, f := range r.failures {
				t.Error(gomod + ": " + f)
			}
		})
	}
	// An allowance no module needs any more is removed, not kept "just in
	// case": every line of allowed.txt was reviewed for a module in use.
	if checked == len(gomods) && !t.Failed() {
		for _, a := range allows {
			if !a.used {
				t.Errorf("allowed.txt:%d: %s needs no allowance (in no module graph, or its license is accepted): remove the line", a.line, a.path)
			}
		}
	}
}
