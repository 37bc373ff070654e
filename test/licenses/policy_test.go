package licenses_test

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/google/licensecheck"
)

// accepted are the licenses a module may be under (SPDX ids as licensecheck
// reports them): permissive licenses that ask for notices at most, and
// MPL-2.0, whose copyleft is per file (changes to MPL files stay MPL; the
// rest of the program is unaffected), which is why HashiCorp's and others'
// MPL modules are in every Kubernetes and Prometheus build.
var accepted = map[string]bool{
	"Apache-2.0":         true,
	"MIT":                true,
	"MIT-0":              true,
	"BSD-2-Clause":       true,
	"BSD-2-Clause-Views": true,
	"BSD-3-Clause":       true,
	"ISC":                true,
	"0BSD":               true,
	"Zlib":               true,
	"BSL-1.0":            true, // Boost
	"CC0-1.0":            true,
	"Unlicense":          true,
	"MPL-2.0":            true,
}

// forbidden are licenses no allowance can admit: the GPL family, whose
// copyleft covers the whole program a platform team redistributes; the AGPL
// and SSPL, which extend it to anyone using the program over a network; the
// BUSL, which is not an open-source license; and riders that forbid
// commercial use.
var forbidden = regexp.MustCompile(`^(AGPL|GPL|SSPL|BUSL|CommonsClause|CC-BY-NC|PolyForm-Noncommercial|Prosperity)`)

// riders restrict the license they come with rather than offering an
// alternative to it, so another license in the same module does not help.
var riders = regexp.MustCompile(`^(CommonsClause|CC-BY-NC|PolyForm-Noncommercial|Prosperity)`)

// licenseFile matches the names of license files at a module's root:
// LICENSE, LICENCE, COPYING, UNLICENSE, COPYRIGHT, with any suffix
// (LICENSE.md, LICENSE-APACHE, COPYING.LESSER).
var licenseFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|unlicense|copyright)([-._ ].*)?$`)

// busl finds the Business Source License, which licensecheck does not know.
var busl = regexp.MustCompile(`(?i)business\s+source\s+license`)

// classify returns the licenses recognized in the license files at a
// module's root (dir), sorted, and those files' names.
func classify(dir string) (ids, files []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if e.IsDir() || !licenseFile.MatchString(e.Name()) {
			continue
		}
		text, err := os.ReadFile(dir + string(os.PathSeparator) + e.Name())
		if err != nil {
			return nil, nil, err
		}
		files = append(files, e.Name())
		for _, m := range licensecheck.Scan(text).Match {
			ids = append(ids, m.ID)
		}
		if busl.Match(text) {
			ids = append(ids, "BUSL-1.1")
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), files, nil
}

// verdict is what the policy says about one module.
type verdict struct {
	ok bool
	// allowed: ok only because allowed.txt says so.
	allowed bool
	// why explains a failure.
	why string
}

// decide applies the policy to the licenses found in a module; built says
// whether any build of the go.mod compiles a package of it, allow is the
// reviewed allowance for it, or nil.
//
// A module that is built:
//   - fails with a forbidden license (AGPL, GPL, SSPL, BUSL) and no accepted
//     license beside it, or with a non-commercial rider; no allowance helps;
//   - passes when its files show only accepted licenses (several: a
//     multi-licensed module, such as MIT or Apache-2.0);
//   - needs a reviewed allowance otherwise: no license recognized, a license
//     that is neither accepted nor forbidden (LGPL, EPL, CC-BY, ...), or an
//     accepted license beside a forbidden one (a dual offer "MIT or GPL"
//     reads like a GPL program quoting an MIT notice: a person decides).
//
// A module that is only in the graph (a dependency's go.mod requires it,
// mostly for its tests, but nothing here compiles it) reaches no binary:
// it fails only with a forbidden license, unless an allowance records it
// (where it comes from); the allowance stops counting once a build
// compiles it.
func decide(ids []string, built bool, allow *allowance) verdict {
	var bad, good, other []string
	for _, id := range ids {
		switch {
		case forbidden.MatchString(id):
			bad = append(bad, id)
		case accepted[id]:
			good = append(good, id)
		default:
			other = append(other, id)
		}
	}
	var why string
	switch {
	case !built && len(bad) == 0:
		return verdict{ok: true}
	case !built:
		why = fmt.Sprintf("%s, in the module graph though no build here compiles it: needs a reviewed entry in allowed.txt saying where it comes from", strings.Join(bad, ", "))
	case slices.ContainsFunc(bad, riders.MatchString):
		return verdict{why: fmt.Sprintf("%s restricts use (not open source); no allowance can admit it", strings.Join(bad, ", "))}
	case len(bad) > 0 && len(good) == 0:
		return verdict{why: fmt.Sprintf("%s is not accepted (copyleft or not open source); no allowance can admit it", strings.Join(bad, ", "))}
	case len(bad) > 0:
		why = fmt.Sprintf("%s beside %s: a dual license or a quoted notice? needs a reviewed entry in allowed.txt", strings.Join(bad, ", "), strings.Join(good, ", "))
	case len(good) > 0:
		return verdict{ok: true}
	case len(other) > 0:
		why = fmt.Sprintf("%s is not an accepted license; needs a reviewed entry in allowed.txt", strings.Join(other, ", "))
	default:
		why = "no license recognized; needs a reviewed entry in allowed.txt"
	}
	if allow != nil {
		return verdict{ok: true, allowed: true}
	}
	return verdict{why: why}
}

// allowance is one reviewed line of allowed.txt: a module (all versions, or
// one), the license a person found it to be under, and why that is
// acceptable.
type allowance struct {
	line            int
	path, version   string
	license, reason string
	used            bool
}

// readAllowances parses allowed.txt: "module[@version] license reason...",
// blank lines and # comments ignored.
func readAllowances(file string) ([]*allowance, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*allowance
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			return nil, fmt.Errorf("%s:%d: want module[@version] license reason, got %q", file, n, line)
		}
		path, version, _ := strings.Cut(fields[0], "@")
		out = append(out, &allowance{line: n, path: path, version: version, license: fields[1], reason: strings.Join(fields[2:], " ")})
	}
	return out, s.Err()
}

// find returns the allowance for path@version, or nil.
func find(allows []*allowance, path, version string) *allowance {
	for _, a := range allows {
		if a.path == path && (a.version == "" || a.version == version) {
			return a
		}
	}
	return nil
}
