package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/adapter"
)

// TestHelpGroupsFlags: `gantry --help` lists the flags in sections by
// concern, Gantry's own first, each flag once; none of Gantry's own flags
// falls through to the API server's section (a new flag needs a group).
func TestHelpGroupsFlags(t *testing.T) {
	code, stdout, stderr := runGantry(t, "--help")
	if code != 0 || stdout != "" {
		t.Fatalf("gantry --help: exit %d, stdout %q", code, stdout)
	}
	var titles []string
	for _, m := range regexp.MustCompile(`(?m)^(\S.*) flags:$`).FindAllStringSubmatch(stderr, -1) {
		titles = append(titles, m[1])
	}
	want := []string{"Rules and discovery", "MetricRules (namespaced rules teams own)", "Prometheus", "Loki", "Backend calls (Prometheus and Loki)", "Caches", "kube-state-metrics", "Kubelet collector (metrics.k8s.io without Prometheus)", "API server", "Logging"}
	if strings.Join(titles, "|") != strings.Join(want, "|") {
		t.Errorf("sections %q, want %q", titles, want)
	}
	for _, flag := range []string{"config", "prometheus-url", "loki-url", "value-cache-ttl", "secure-port", "v"} {
		re := regexp.MustCompile(`(?m)^\s+(-\w, )?--` + regexp.QuoteMeta(flag) + `[ =]`)
		if n := len(re.FindAllString(stderr, -1)); n != 1 {
			t.Errorf("--%s is listed %d times in --help, want once", flag, n)
		}
	}

	// Gantry's own flags, registered alone, each have a group.
	fs := pflag.NewFlagSet("own", pflag.ContinueOnError)
	var o adapter.Options
	o.AddFlags(fs)
	o.Kubelet.AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if g := flagGroup(f.Name); g == "API server" || g == "Logging" {
			t.Errorf("--%s is in the %q section; add it to flagGroups", f.Name, g)
		}
	})
}
