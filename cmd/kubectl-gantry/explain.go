package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

func newExplainCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Explain, step by step, how Gantry answers an HPA's metrics or a raw metrics request",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newExplainHPACommand(o), newExplainMetricCommand(o))
	return cmd
}

func newExplainHPACommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "hpa NAME",
		Aliases: []string{"hpas", "horizontalpodautoscaler", "horizontalpodautoscalers"},
		Short:   "Explain every metric of a HorizontalPodAutoscaler",
		Long: `Explain every metric of a HorizontalPodAutoscaler: which API and APIService
serve it, which rule answers it and where the rule lives, whether discovery lists
it, the query Gantry sends and what the backend returned, which objects have no
value and why, the cache, the value served, and what the HPA computes from it
beside what its own status says. Ends with a diagnosis and a hint.

Needs: get hpaexplanations.diagnostics.gantry.dev in the HPA's namespace
(the ClusterRole gantry-diagnostics-view, aggregated to view).`,
		Example: `  kubectl gantry explain hpa web -n shop
  kubectl gantry explain hpa web -n shop -o json`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.explainHPA(cmd.Context(), strings.TrimPrefix(args[0], "hpa/"))
		},
	}
}

// exactArgs is cobra.ExactArgs with a message that names the argument.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d arguments)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func (o *options) explainHPA(ctx context.Context, name string) error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return failed(err)
	}
	c, err := o.clients()
	if err != nil {
		return failed(err)
	}
	body, err := c.getHPAExplanation(ctx, ns, name)
	if err != nil {
		return failed(err)
	}
	if o.output != "" {
		return o.printServed(body)
	}
	var e v1alpha1.HPAExplanation
	if err := json.Unmarshal(body, &e); err != nil {
		return failed(fmt.Errorf("decoding the HPAExplanation of %s/%s: %w", ns, name, err))
	}
	r := renderer{w: o.stdout, now: o.now()}
	r.hpaExplanation(&e)
	return r.err
}

// metricFlags are explain metric's flags.
type metricFlags struct {
	metricType     string
	resource       string
	name           string
	labelSelector  string
	metricSelector string
}

func newExplainMetricCommand(o *options) *cobra.Command {
	var f metricFlags
	cmd := &cobra.Command{
		Use:     "metric METRIC --type pods|object|external",
		Aliases: []string{"metrics"},
		Short:   "Explain a raw metrics request, as an HPA's metric would make it",
		Long: `Explain a raw metrics request, as the HPA controller would make it for a
metric of the given type: useful before writing an HPA.

  pods      the pods selected by -l in the namespace (all of them without -l)
  object    the object --resource/--name (e.g. --resource deployments.apps --name web)
  external  an external metric, optionally narrowed by --metric-selector

Needs: get metricexplanations.diagnostics.gantry.dev in the namespace (the
ClusterRole gantry-diagnostics-view, aggregated to view).`,
		Example: `  kubectl gantry explain metric http_requests_per_second --type pods -l app=web -n shop
  kubectl gantry explain metric requests_per_second --type object --resource ingresses.networking.k8s.io --name main -n shop
  kubectl gantry explain metric queue_messages_ready --type external --metric-selector queue=orders -n shop`,
		Args: exactArgs(1, "METRIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.explainMetric(cmd.Context(), args[0], f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.metricType, "type", "", "Metric type: pods, object or external (required)")
	fs.StringVar(&f.resource, "resource", "", "Resource of the object, for --type object (e.g. deployments.apps, service)")
	fs.StringVar(&f.name, "name", "", "Name of the object, for --type object")
	fs.StringVarP(&f.labelSelector, "selector", "l", "", "Label selector of the pods, for --type pods")
	fs.StringVar(&f.metricSelector, "metric-selector", "", "Label selector on the metric's own labels")
	return cmd
}

func (o *options) explainMetric(ctx context.Context, metric string, f metricFlags) error {
	if err := o.validateOutput(); err != nil {
		return err
	}
	req, err := f.request(metric)
	if err != nil {
		return err
	}
	ns, err := o.namespace()
	if err != nil {
		return failed(err)
	}
	req.namespace = ns
	if req.metricType == "object" {
		req.resource, req.namespace = o.resolveResource(req.resource, ns)
	}
	c, err := o.clients()
	if err != nil {
		return failed(err)
	}
	body, err := c.getMetricExplanation(ctx, req)
	if err != nil {
		return failed(err)
	}
	if o.output != "" {
		return o.printServed(body)
	}
	var e v1alpha1.MetricExplanation
	if err := json.Unmarshal(body, &e); err != nil {
		return failed(fmt.Errorf("decoding the MetricExplanation of %s: %w", metric, err))
	}
	r := renderer{w: o.stdout, now: o.now()}
	r.metricExplanation(&e)
	return r.err
}

// request checks explain metric's flags against the type.
func (f metricFlags) request(metric string) (metricRequest, error) {
	r := metricRequest{
		metric:         metric,
		metricType:     strings.ToLower(f.metricType),
		resource:       f.resource,
		name:           f.name,
		labelSelector:  f.labelSelector,
		metricSelector: f.metricSelector,
	}
	if r.metricSelector != "" {
		if _, err := labels.Parse(r.metricSelector); err != nil {
			return r, usagef("--metric-selector: %v", err)
		}
	}
	if r.labelSelector != "" {
		if _, err := labels.Parse(r.labelSelector); err != nil {
			return r, usagef("-l: %v", err)
		}
	}
	switch r.metricType {
	case "pods":
		if r.resource != "" && r.resource != "pods" && r.resource != "pod" {
			return r, usagef("--resource is for --type object; a pods metric is about pods")
		}
		if r.name != "" {
			return r, usagef("--name is for --type object; select the pods with -l")
		}
		r.resource = "pods"
	case "object":
		if r.resource == "" || r.name == "" {
			return r, usagef("--type object needs --resource and --name (e.g. --resource deployments.apps --name web)")
		}
		if r.labelSelector != "" {
			return r, usagef("-l is for --type pods; an object metric names its object with --name")
		}
	case "external":
		if r.resource != "" || r.name != "" || r.labelSelector != "" {
			return r, usagef("--type external takes only --metric-selector (not --resource, --name or -l)")
		}
	case "":
		return r, usagef("--type is required: pods, object or external")
	default:
		return r, usagef("unknown --type %q: use pods, object or external", f.metricType)
	}
	return r, nil
}

// resolveResource turns what the user typed (deployment, deploy,
// deployments.apps) into the group-resource the API expects, and says
// whether the resource is namespaced ("" namespace when not), the way
// kubectl resolves it: through discovery. Without discovery (no access),
// the text is used as typed, namespaced.
func (o *options) resolveResource(typed, ns string) (string, string) {
	mapper, err := o.config.ToRESTMapper()
	if err != nil {
		return typed, ns
	}
	gr := schema.ParseGroupResource(typed)
	gvr, err := mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return typed, ns
	}
	resolved := gvr.GroupResource().String()
	gvk, err := mapper.KindFor(gvr)
	if err != nil {
		return resolved, ns
	}
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err == nil && mapping.Scope.Name() == meta.RESTScopeNameRoot {
		return resolved, ""
	}
	return resolved, ns
}
