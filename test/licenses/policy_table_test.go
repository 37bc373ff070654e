package licenses_test

import (
	"strings"
	"testing"
)

// TestDecide: the policy on the licenses a module's files show.
func TestDecide(t *testing.T) {
	allow := &allowance{path: "example.com/m", license: "x", reason: "reviewed"}
	for _, tc := range []struct {
		name  string
		ids   []string
		built bool
		allow *allowance
		ok    bool
		why   string // in the failure
	}{
		{name: "Apache-2.0", ids: []string{"Apache-2.0"}, built: true, ok: true},
		{name: "dual MIT and Apache-2.0", ids: []string{"Apache-2.0", "MIT"}, built: true, ok: true},
		{name: "MPL-2.0 is accepted", ids: []string{"MPL-2.0"}, built: true, ok: true},
		{name: "AGPL fails", ids: []string{"AGPL-3.0"}, built: true, why: "AGPL-3.0 is not accepted"},
		{name: "AGPL cannot be allowed", ids: []string{"AGPL-3.0"}, built: true, allow: allow, why: "no allowance can admit it"},
		{name: "GPL cannot be allowed", ids: []string{"GPL-2.0", "GPL-2.0-only"}, built: true, allow: allow, why: "GPL-2.0, GPL-2.0-only is not accepted"},
		{name: "SSPL fails", ids: []string{"SSPL-1.0"}, built: true, why: "SSPL-1.0 is not accepted"},
		{name: "BUSL fails", ids: []string{"BUSL-1.1"}, built: true, allow: allow, why: "BUSL-1.1 is not accepted"},
		{name: "LGPL needs an allowance", ids: []string{"LGPL-3.0"}, built: true, why: "LGPL-3.0 is not an accepted license; needs a reviewed entry"},
		{name: "LGPL with an allowance", ids: []string{"LGPL-3.0"}, built: true, allow: allow, ok: true},
		{name: "no license recognized", built: true, why: "no license recognized; needs a reviewed entry"},
		{name: "no license recognized, allowed", built: true, allow: allow, ok: true},
		{name: "MIT beside GPL needs a person", ids: []string{"GPL-2.0", "MIT"}, built: true, why: "GPL-2.0 beside MIT: a dual license or a quoted notice?"},
		{name: "MIT beside GPL, reviewed", ids: []string{"GPL-2.0", "MIT"}, built: true, allow: allow, ok: true},
		{name: "a non-commercial rider cannot be allowed", ids: []string{"Apache-2.0", "CommonsClause"}, built: true, allow: allow, why: "CommonsClause restricts use"},
		{name: "graph only: GPL needs an allowance", ids: []string{"GPL-2.0"}, why: "in the module graph though no build here compiles it"},
		{name: "graph only: GPL with an allowance", ids: []string{"GPL-2.0"}, allow: allow, ok: true},
		{name: "graph only: no license is not checked", ok: true},
		{name: "graph only: LGPL is not checked", ids: []string{"LGPL-2.1"}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := decide(tc.ids, tc.built, tc.allow)
			if v.ok != tc.ok || !strings.Contains(v.why, tc.why) {
				t.Errorf("decide(%v, built %v, allowance %v) = %+v, want ok %v and a reason saying %q", tc.ids, tc.built, tc.allow != nil, v, tc.ok, tc.why)
			}
			if v.allowed && tc.allow == nil {
				t.Error("allowed without an allowance")
			}
		})
	}
}

// TestAllowedFile: allowed.txt parses, and names no module twice.
func TestAllowedFile(t *testing.T) {
	allows, err := readAllowances("allowed.txt")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, a := range allows {
		key := a.path + "@" + a.version
		if prev, dup := seen[key]; dup {
			t.Errorf("allowed.txt:%d: %s is also on line %d", a.line, key, prev)
		}
		seen[key] = a.line
	}
}
