package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// defaultRequestTimeout bounds each request when --request-timeout is not set:
// a plugin that hangs on an unavailable APIService answers nobody.
const defaultRequestTimeout = 30 * time.Second

// usageError is the command line's fault: run exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// options are the flags every command shares: kubectl's connection flags
// (--kubeconfig, --context, -n, ...) and the output format.
type options struct {
	config *genericclioptions.ConfigFlags
	output string
	stdout io.Writer
	stderr io.Writer
	// now is the time "ago" is counted from (time.Now but in tests).
	now func() time.Time
}

func newRootCommand(stdout, stderr io.Writer, now func() time.Time) *cobra.Command {
	o := &options{
		config: genericclioptions.NewConfigFlags(true),
		stdout: stdout,
		stderr: stderr,
		now:    now,
	}
	root := &cobra.Command{
		Use: "kubectl-gantry",
		// kubectl runs the plugin as "kubectl gantry": help says so.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl gantry"},
		Short:       "Explain how Gantry serves an HPA's metrics, and check a cluster's Gantry",
		Long: `kubectl gantry explains, step by step, how Gantry answers the metrics of a
HorizontalPodAutoscaler (or of a raw metrics request), and checks every HPA in
scope together with Gantry's APIServices, replicas, config and MetricRules.

Everything comes through the kube-apiserver: your RBAC decides what you see.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		// A bare "kubectl gantry" prints the help; an unknown word is an error.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	o.config.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "", "Output format: json or yaml (default: text for people)")
	root.AddCommand(newExplainCommand(o), newDoctorCommand(o), newVersionCommand(o))
	return root
}

func newVersionCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(o.stdout, "kubectl-gantry", version)
			return nil
		},
	}
}

// validateOutput checks -o before any request is made.
func (o *options) validateOutput() error {
	switch o.output {
	case "", "json", "yaml":
		return nil
	}
	return usagef("unknown output format %q: use -o json or -o yaml (or no -o for text)", o.output)
}

// namespace is -n, or else the kubeconfig context's namespace, or "default".
func (o *options) namespace() (string, error) {
	ns, _, err := o.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig: %w", err)
	}
	return ns, nil
}

// clients are what the commands talk to, all built from one rest.Config.
type clients struct {
	kube    kubernetes.Interface
	dynamic dynamic.Interface
	// raw reaches the aggregated diagnostics.gantry.dev API by path.
	raw rest.Interface
}

func (o *options) clients() (*clients, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultRequestTimeout
	}
	cfg.UserAgent = "kubectl-gantry/" + version
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	return &clients{kube: kube, dynamic: dyn, raw: kube.Discovery().RESTClient()}, nil
}
