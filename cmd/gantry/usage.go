package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// flagGroups sort the flags of `gantry --help` by concern, in this order;
// a flag belongs to the first group one of whose prefixes it starts with
// (a prefix ending in "-" is a family, any other is one flag). Flags of no
// group are the API server's (generic apiserver, authn/authz, client QPS)
// and klog's, listed last.
var flagGroups = []struct {
	title    string
	prefixes []string
}{
	{"Rules and discovery", []string{"config", "config-reload-interval", "metrics-relist-interval", "metrics-max-age", "resource-metrics"}},
	{"MetricRules (namespaced rules teams own)", []string{"metricrules", "metricrule-"}},
	{"Prometheus", []string{"prometheus-"}},
	{"Loki", []string{"loki-"}},
	{"Backend calls (Prometheus and Loki)", []string{"backend-"}},
	{"Caches", []string{"value-cache-", "selector-cache-", "object-resync-period"}},
	{"kube-state-metrics", []string{"kube-state-metrics-"}},
	{"Kubelet collector (metrics.k8s.io without Prometheus)", []string{"kubelet-"}},
}

// klogFlags are klog's flags, shown under Logging.
var klogFlags = map[string]bool{
	"v": true, "vmodule": true, "logtostderr": true, "alsologtostderr": true, "stderrthreshold": true,
	"log_dir": true, "log_file": true, "log_file_max_size": true, "add_dir_header": true,
	"skip_headers": true, "skip_log_headers": true, "one_output": true, "log_backtrace_at": true,
	"legacy_stderr_threshold_behavior": true,
}

// flagGroup names the --help section of a flag.
func flagGroup(name string) string {
	for _, g := range flagGroups {
		for _, p := range g.prefixes {
			if name == p || (strings.HasSuffix(p, "-") && strings.HasPrefix(name, p)) {
				return g.title
			}
		}
	}
	if klogFlags[name] {
		return "Logging"
	}
	return "API server"
}

// groupedUsage prints fs's flags in sections, Gantry's own first.
func groupedUsage(w io.Writer, fs *pflag.FlagSet, synopsis string) {
	sets := map[string]*pflag.FlagSet{}
	fs.VisitAll(func(f *pflag.Flag) {
		g := flagGroup(f.Name)
		if sets[g] == nil {
			sets[g] = pflag.NewFlagSet(g, pflag.ContinueOnError)
		}
		sets[g].AddFlag(f)
	})
	fmt.Fprintf(w, "Usage:\n  %s\n", synopsis)
	titles := make([]string, 0, len(flagGroups)+2)
	for _, g := range flagGroups {
		titles = append(titles, g.title)
	}
	for _, title := range append(titles, "API server", "Logging") {
		if s := sets[title]; s != nil {
			fmt.Fprintf(w, "\n%s flags:\n%s", title, s.FlagUsages())
		}
	}
}
