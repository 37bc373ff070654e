// Command gen writes Gantry's Grafana dashboards (package dashboards) as
// JSON files:
//
//	go run ./dashboards/gen -out dashboards [-component deploy/manifests/components/grafana-dashboards]
//
// -component also writes a copy of each file into the kustomize component
// that packs them into ConfigMaps; kustomize cannot read files outside a
// component's directory. `go generate ./dashboards` runs it with both.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantry-dev/gantry/dashboards"
)

func main() {
	os.Exit(run())
}

func run() int {
	out := flag.String("out", "", "directory to write the dashboards to (required)")
	component := flag.String("component", "", "kustomize component directory to copy the dashboards into")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		return 2
	}
	files, err := dashboards.All()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		return 1
	}
	for _, dir := range []string{*out, *component} {
		if dir == "" {
			continue
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f.Name), f.JSON, 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "gen:", err)
				return 1
			}
		}
	}
	return 0
}
