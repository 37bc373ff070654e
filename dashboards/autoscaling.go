package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// The VPA series come from kube-state-metrics' custom resource state
// metrics (KSM dropped its built-in VPA metrics in v2.9), configured with
// deploy/rules/kube-state-metrics-vpa.yaml: the target recommendation
// {namespace, verticalpodautoscaler, target_kind, target_name, container,
// resource}, named as in kube-prometheus' configuration.
const vpaTarget = "kube_customresource_verticalpodautoscaler_status_recommendation_containerrecommendations_target"

const (
	autoscalingNS = `namespace=~"$namespace"`
	hpaMatcher    = `horizontalpodautoscaler=~"$hpa"`
	vpaMatcher    = `verticalpodautoscaler=~"$vpa"`
)

func hpaSel(metric string, extra ...string) string {
	return sel("kube_horizontalpodautoscaler_"+metric, append([]string{autoscalingNS, hpaMatcher}, extra...)...)
}

func hpaCondition(condition, status string) string {
	return sel("kube_horizontalpodautoscaler_status_condition", autoscalingNS,
		fmt.Sprintf(`condition="%s"`, condition), fmt.Sprintf(`status="%s"`, status))
}

// vpaRequests is the largest request for resource of each container of the
// pods the VPAs picked in $vpa target, for comparison with the
// recommendation: the VPA names its target workload, the pods are found
// through podWorkload.
func vpaRequests(resource string) string {
	targets := fmt.Sprintf(`group by (namespace, workload) (label_replace(%s, "workload", "$1", "target_name", "(.+)"))`,
		sel(vpaTarget, autoscalingNS, vpaMatcher))
	pods := fmt.Sprintf("group by (namespace, pod) (%s * on (namespace, workload) group_left () %s)",
		podWorkload(autoscalingNS, ""), targets)
	return fmt.Sprintf("max by (container) (%s * on (namespace, pod) group_left () %s)",
		sel("kube_pod_container_resource_requests", autoscalingNS, fmt.Sprintf(`resource="%s"`, resource)), pods)
}

func autoscaling() *dashboard.DashboardBuilder {
	b := newDashboard("gantry-autoscaling", "Gantry / Autoscaling",
		"HorizontalPodAutoscalers and VerticalPodAutoscalers as kube-state-metrics sees them: replicas against their bounds, the metrics Gantry serves against their targets, conditions, and VPA recommendations against the pods' requests.").
		WithVariable(multiVariable("namespace", "Namespace", "label_values(kube_pod_container_resource_requests, namespace)")).
		WithVariable(multiVariable("hpa", "HPA", fmt.Sprintf("label_values(%s, horizontalpodautoscaler)",
			sel("kube_horizontalpodautoscaler_spec_max_replicas", autoscalingNS)))).
		WithVariable(multiVariable("vpa", "VPA", fmt.Sprintf("label_values(%s, verticalpodautoscaler)",
			sel(vpaTarget, autoscalingNS))))

	// --- Summary --------------------------------------------------------------
	b.WithRow(dashboard.NewRowBuilder("HorizontalPodAutoscalers")).
		WithPanel(single("HPAs",
			"HorizontalPodAutoscalers in the selected namespaces.",
			unitNone,
			q(fmt.Sprintf("count(%s)", sel("kube_horizontalpodautoscaler_spec_max_replicas", autoscalingNS)), "HPAs"))).
		WithPanel(single("At max replicas",
			"HPAs running their maximum number of replicas: more load would not be absorbed.",
			unitNone,
			q(fmt.Sprintf("count(%s >= on (namespace, horizontalpodautoscaler) %s)",
				sel("kube_horizontalpodautoscaler_status_current_replicas", autoscalingNS),
				sel("kube_horizontalpodautoscaler_spec_max_replicas", autoscalingNS)), "at max")).
			NoValue("0").
			Thresholds(thresholds(at(1, "orange")))).
		WithPanel(single("Not scaling",
			"HPAs whose ScalingActive condition is false: the controller cannot compute a replica count, usually because a metric is missing. For Pods, Object and External metrics, check Gantry's failed requests on the overview dashboard.",
			unitNone,
			q(fmt.Sprintf("count(%s == 1)", hpaCondition("ScalingActive", "false")), "not scaling")).
			NoValue("0").
			Thresholds(thresholds(at(1, "red")))).
		WithPanel(single("Scaling limited",
			"HPAs whose ScalingLimited condition is true: the desired count was clamped to the min or max replicas or by a scaling policy.",
			unitNone,
			q(fmt.Sprintf("count(%s == 1)", hpaCondition("ScalingLimited", "true")), "limited")).
			NoValue("0").
			Thresholds(thresholds(at(1, "orange"))))

	// --- One row per HPA --------------------------------------------------------
	b.WithRow(dashboard.NewRowBuilder("HPA $hpa").Repeat("hpa")).
		WithPanel(graph("Replicas",
			"Current and desired replicas against the HPA's min and max.",
			unitNone,
			q(hpaSel("status_current_replicas"), "current ({{namespace}})"),
			q(hpaSel("status_desired_replicas"), "desired ({{namespace}})"),
			q(hpaSel("spec_min_replicas"), "min ({{namespace}})"),
			q(hpaSel("spec_max_replicas"), "max ({{namespace}})")).
			Min(0)).
		WithPanel(graph("Metric value vs target",
			"Each metric of the HPA as the controller last read it (through Gantry for Pods, Object and External metrics), and its target. Units depend on the metric: utilization in percent of the request, values and averages in the metric's own unit.",
			unitShort,
			q(hpaSel("status_target_metric"), "{{metric_name}} {{metric_target_type}} current"),
			q(hpaSel("spec_target_metric"), "{{metric_name}} {{metric_target_type}} target"))).
		WithPanel(states("Conditions",
			"The HPA's conditions over time: AbleToScale, ScalingActive (false means the metrics could not be read) and ScalingLimited.",
			q(fmt.Sprintf("max by (condition) (%s)", hpaSel("status_condition", `status="true"`)), "{{condition}}")))

	// --- One row per VPA --------------------------------------------------------
	b.WithRow(dashboard.NewRowBuilder("VPA $vpa").Repeat("vpa"))
	for _, r := range []struct{ name, title, unit string }{
		{"cpu", "CPU", unitShort},
		{"memory", "Memory", unitBytes},
	} {
		target := fmt.Sprintf("max by (container) (%s)", sel(vpaTarget, autoscalingNS, vpaMatcher, fmt.Sprintf(`resource="%s"`, r.name)))
		p := graph(r.title+" recommendation vs requests",
			"The VPA's target recommendation for each container against the largest "+r.name+" request among the target workload's pods. A VPA in Off mode only recommends; in Auto mode pods are recreated with the target.",
			r.unit,
			q(target, "{{container}} target"),
			q(vpaRequests(r.name), "{{container}} request")).
			Min(0)
		if r.name == "cpu" {
			p.AxisLabel("cores")
		}
		b.WithPanel(p)
	}
	return b
}
