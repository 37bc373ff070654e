package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/adapter/checkconfig"
	"github.com/gantry-dev/gantry/adapter/migrate"
)

// migrateRules is `gantry migrate-rules`: the central config's rules that
// clearly belong to one namespace, as MetricRule manifests, and why each
// other rule stays central.
func migrateRules(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("gantry migrate-rules", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		file, out, kubeconfig string
		opts                  migrate.Options
	)
	fs.StringVar(&file, "config", "", "The central rule file to split, or a ConfigMap manifest holding it (data key config.yaml, or its only key).")
	fs.StringVar(&out, "out", "", "Write one file per namespace, DIR/<namespace>.yaml, and the report to stdout. Without it the manifests go to stdout as one multi-document stream (for kubectl apply -f -) and the report to stderr.")
	fs.StringVar(&opts.NamespaceLabel, "namespace-label", migrate.DefaultNamespaceLabel, "The series label holding the namespace, as Gantry's --metricrule-namespace-label: a rule moves when its seriesQuery has exactly one matcher on it, an equality with a namespace.")
	fs.StringVar(&opts.Name, "name", migrate.DefaultName, "The name of each namespace's MetricRule.")
	fs.StringSliceVar(&opts.AllowedBackends, "allowed-backends", nil, "Backends and sources besides prometheus that MetricRules may use, as Gantry's --metricrule-allowed-backends (e.g. loki,local,thanos); a rule on another one stays central.")
	fs.IntVar(&opts.MaxRulesPerNamespace, "max-rules-per-namespace", migrate.DefaultMaxRulesPerNamespace, "Gantry's --metricrule-max-rules-per-namespace: warn about a namespace that would get more rules.")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Resolve the resources rules name against the API discovery of this kubeconfig's cluster, CRDs included. Without it only the built-in kinds are known, and a resource of another API group is taken as written.")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  gantry migrate-rules --config FILE [--out DIR] [flags]\n\nFlags:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gantry migrate-rules: %v\nRun 'gantry migrate-rules --help' for usage.\n", err)
		return 2
	}
	if file == "" {
		fmt.Fprintln(stderr, "gantry migrate-rules: --config is required")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gantry migrate-rules: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg, name, err := migrate.Load(file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if kubeconfig != "" {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		opts.Mapper, err = checkconfig.ClusterMapper(mctx, kubeconfig)
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "gantry migrate-rules:", err)
			return 1
		}
	}
	plan := migrate.Split(cfg, name, opts)
	if out == "" {
		if err := plan.WriteManifests(stdout); err != nil {
			fmt.Fprintln(stderr, "gantry migrate-rules:", err)
			return 1
		}
		plan.Report(stderr)
		return 0
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		fmt.Fprintln(stderr, "gantry migrate-rules:", err)
		return 1
	}
	for _, mr := range plan.Resources {
		b, err := mr.Manifest()
		if err == nil {
			path := filepath.Join(out, mr.Namespace+".yaml")
			err = os.WriteFile(path, b, 0o644)
			if err == nil {
				fmt.Fprintf(stdout, "wrote %s\n", path)
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, "gantry migrate-rules:", err)
			return 1
		}
	}
	plan.Report(stdout)
	return 0
}
