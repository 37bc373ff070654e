// Package rules holds Gantry's Prometheus rule files — alerts on Gantry
// itself (gantry.rules.yaml) and on the autoscalers it feeds
// (autoscaling.rules.yaml) — and gives Go code, such as the e2e tests, their
// content as shipped. runbooks.md explains every alert; the kustomize
// component deploy/manifests/components/prometheusrule holds the same groups
// for the Prometheus Operator, kept equal by this package's tests.
package rules

import (
	"embed"
	"io/fs"
	"strings"
)

// runbooks is where every alert's runbook_url points, at the section named
// after the alert.
const runbooks = "https://github.com/gantry-dev/gantry/blob/main/deploy/rules/runbooks.md"

//go:embed *.rules.yaml
var files embed.FS

// Files returns the content of every rule file by name, for example
// "gantry.rules.yaml".
func Files() (map[string][]byte, error) {
	names, err := fs.Glob(files, "*.rules.yaml")
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}

// RunbookURL is the runbook_url of an alert: the section of runbooks.md
// headed by the alert's name.
func RunbookURL(alert string) string {
	return runbooks + "#" + strings.ToLower(alert)
}
