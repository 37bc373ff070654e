package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"
)

// FuzzParse feeds arbitrary bytes to the loader. Parse must not panic; an
// error must name the file in every problem it reports (errors.Join'ed
// problems each start with "file:" or "file:line:"); a config it accepts must
// pass Validate and survive a marshal/parse round trip unchanged.
//
// The seeds are every testdata/*.yaml file plus testdata/fuzz/FuzzParse
// (hostile YAML: alias bombs, deep nesting, tags, binary).
//
//	go test ./adapter/config -run '^$' -fuzz FuzzParse -fuzztime 60s
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	const file = "fuzz/rules.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			t.Skip()
		}
		cfg, err := Parse(data, file)
		if err != nil {
			if cfg != nil {
				t.Errorf("Parse returned a config and an error: %v", err)
			}
			for _, p := range problems(err) {
				if !strings.HasPrefix(p.Error(), file+":") {
					t.Errorf("problem does not name the file %s: %q", file, p.Error())
				}
			}
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if err := cfg.Validate(file); err != nil {
			t.Errorf("Validate after a successful Parse: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshalling an accepted config: %v", err)
		}
		again, err := Parse(out, file)
		if err != nil {
			t.Fatalf("Parse of the marshalled config: %v\n%s", err, out)
		}
		if diff := cmp.Diff(cfg, again, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip changed the config (-parsed +reparsed):\n%s", diff)
		}
	})
}

// problems flattens errors.Join trees into the problems they report.
func problems(err error) []error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range joined.Unwrap() {
		out = append(out, problems(e)...)
	}
	return out
}
