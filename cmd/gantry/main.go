// Command gantry is the Gantry metrics adapter: an aggregated API server
// serving custom.metrics.k8s.io, external.metrics.k8s.io and metrics.k8s.io.
//
//	gantry --config rules.yaml --prometheus-url http://prometheus:9090 [API server flags]
//	gantry check-config --config rules.yaml [--prometheus-url URL] [--kubeconfig FILE]
//	gantry migrate-rules --config rules.yaml [--out DIR] [--namespace-label namespace]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/gantry-dev/gantry/adapter"
	"github.com/gantry-dev/gantry/adapter/checkconfig"
	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/filters"
)

// version is set at build time.
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		switch args[0] {
		case "check-config":
			return checkConfig(ctx, args[1:], stdout, stderr)
		case "migrate-rules":
			return migrateRules(ctx, args[1:], stdout, stderr)
		case "version", "--version":
			fmt.Fprintln(stdout, "gantry", version)
			return 0
		}
	}
	fs := pflag.NewFlagSet("gantry", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	srv := adapter.NewServer(fs)
	fs.Usage = func() {
		groupedUsage(stderr, fs, "gantry --config rules.yaml --prometheus-url URL [flags]\n  gantry check-config --help\n  gantry migrate-rules --help")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		// With ContinueOnError, pflag leaves reporting the error to us.
		fmt.Fprintf(stderr, "gantry: %v\nRun 'gantry --help' for usage.\n", err)
		return 2
	}
	defer klog.Flush()
	// From -v=8 on, client-go logs request bodies, TokenReviews included.
	klog.SetLogFilter(filters.LogFilter{})
	klog.InfoS("gantry", "version", version)
	if err := srv.Run(ctx); err != nil {
		klog.ErrorS(err, "gantry stopped")
		fmt.Fprintln(stderr, "gantry:", err)
		return 1
	}
	return 0
}

func checkConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("gantry check-config", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts adapter.Options
	opts.AddFlags(fs)
	var kubeconfig string
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Check the resources rules name against the API discovery of this kubeconfig's cluster, CRDs included. Without it only the built-in kinds are known, and a resource of another API group is taken as written, with a warning.")
	var offline bool
	fs.BoolVar(&offline, "offline", false, "Validate the file only: list no backend's series, not even those of the file's backends section.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "gantry check-config: %v\nRun 'gantry check-config --help' for usage.\n", err)
		return 2
	}
	if opts.ConfigFile == "" {
		fmt.Fprintln(stderr, "gantry check-config: --config is required")
		return 2
	}
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if offline {
		opts.PrometheusURL, opts.LokiURL = "", ""
	}
	listers, err := adapter.CheckListers(&opts, cfg)
	if offline {
		listers = nil
	}
	if err != nil {
		fmt.Fprintln(stderr, "gantry check-config:", err)
		return 1
	}
	maxAge := opts.MaxAge
	if maxAge == 0 {
		maxAge = 10 * time.Minute
	}
	check := checkconfig.Check{Listers: listers, MaxAge: maxAge}
	if kubeconfig != "" {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		check.Mapper, err = checkconfig.ClusterMapper(mctx, kubeconfig)
		cancel()
		if err != nil {
			fmt.Fprintln(stderr, "gantry check-config:", err)
			return 1
		}
	}
	res, err := check.Run(ctx, opts.ConfigFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	res.Report(stdout, opts.ConfigFile)
	return 0
}
