package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// podWorkload is a PromQL expression mapping pods to the workload that owns
// them, one series {namespace, pod, workload} of value 1 per pod, from
// kube-state-metrics: the Deployment for pods of a ReplicaSet that a
// Deployment owns, else the pod's own controller (StatefulSet, DaemonSet,
// Job, ...). No single series names a pod's Deployment, hence the join over
// the ReplicaSet. ns and owner are matchers ("" for none); owner applies to
// the workload's name.
func podWorkload(ns, owner string) string {
	direct := fmt.Sprintf(`label_replace(%s, "workload", "$1", "owner_name", "(.+)")`,
		sel("kube_pod_owner", ns, `owner_kind!="ReplicaSet"`, `owner_kind!="<none>"`, owner))
	pods := fmt.Sprintf(`label_replace(%s, "replicaset", "$1", "owner_name", "(.+)")`,
		sel("kube_pod_owner", ns, `owner_kind="ReplicaSet"`))
	deployments := fmt.Sprintf(`group by (namespace, replicaset, workload) (label_replace(%s, "workload", "$1", "owner_name", "(.+)"))`,
		sel("kube_replicaset_owner", ns, `owner_kind="Deployment"`, owner))
	return fmt.Sprintf("group by (namespace, pod, workload) (%s or %s * on (namespace, replicaset) group_left (workload) %s)",
		direct, pods, deployments)
}

// workloadNS and workloadOwner select the namespace and workloads picked in
// the workloads dashboard's variables.
const (
	workloadNS    = `namespace="$namespace"`
	workloadOwner = `owner_name=~"$workload"`
)

// ofWorkloads restricts a per-pod expression to the picked workloads and
// adds the workload label.
func ofWorkloads(expr string) string {
	return fmt.Sprintf("%s * on (namespace, pod) group_left (workload) %s", expr, podWorkload(workloadNS, workloadOwner))
}

// resource is what one row of the workloads dashboard shows.
type resource struct {
	name, title, unit string
	usage             string // per-container usage, a PromQL expression
	usageDoc          string
}

func workloads() *dashboard.DashboardBuilder {
	cpu := resource{
		name: "cpu", title: "CPU", unit: unitShort,
		usage:    rate("container_cpu_usage_seconds_total", workloadNS, `container!=""`),
		usageDoc: "CPU used, in cores (rate of container_cpu_usage_seconds_total)",
	}
	memory := resource{
		name: "memory", title: "Memory", unit: unitBytes,
		usage:    sel("container_memory_working_set_bytes", workloadNS, `container!=""`),
		usageDoc: "Memory working set (container_memory_working_set_bytes), what the kubelet and metrics.k8s.io report",
	}
	requests := func(r resource) string {
		return sel("kube_pod_container_resource_requests", workloadNS, fmt.Sprintf(`resource="%s"`, r.name))
	}

	b := newDashboard("gantry-workloads", "Gantry / Workload resources",
		"CPU and memory of the pods of a workload, per pod and container, from cAdvisor (kubelet) and kube-state-metrics: what Resource metrics and VPA recommendations are computed from.").
		WithVariable(queryVariable("namespace", "Namespace", `label_values(container_cpu_usage_seconds_total{container!=""}, namespace)`)).
		WithVariable(multiVariable("workload", "Workload", fmt.Sprintf("query_result(count by (workload) (%s))", podWorkload(workloadNS, ""))).
			Regex(`/workload="([^"]+)"/`)).
		WithRow(dashboard.NewRowBuilder("Totals"))

	for _, r := range []resource{cpu, memory} {
		b.WithPanel(single(r.title+" usage",
			"Sum over the pods of the selected workloads: "+r.usageDoc+".",
			r.unit,
			q(fmt.Sprintf("sum(%s)", ofWorkloads(r.usage)), "usage")))
		b.WithPanel(single(r.title+" requests",
			"Sum of the "+r.name+" requests of the containers of the selected workloads' pods (kube_pod_container_resource_requests).",
			r.unit,
			q(fmt.Sprintf("sum(%s)", ofWorkloads(requests(r))), "requests")))
	}

	for _, r := range []resource{cpu, memory} {
		g := func(title, description, unit string, qs ...query) *dashboard.DashboardBuilder {
			p := graph(title, description, unit, qs...).Min(0)
			if r.name == "cpu" {
				p.AxisLabel("cores")
			}
			return b.WithPanel(p)
		}
		b.WithRow(dashboard.NewRowBuilder(r.title))
		g(r.title+" usage by pod",
			r.usageDoc+", summed over each pod's containers.",
			r.unit,
			q(fmt.Sprintf("sum by (pod) (%s)", ofWorkloads(r.usage)), "{{pod}}"))
		g(r.title+" usage by container",
			r.usageDoc+", per container of each pod.",
			r.unit,
			q(fmt.Sprintf("sum by (pod, container) (%s)", ofWorkloads(r.usage)), "{{pod}} {{container}}"))
		g(r.title+" usage relative to requests",
			"Usage divided by the container's "+r.name+" request. Utilization targets of HPA Resource metrics are this ratio averaged over the pods; containers without a request are left out.",
			unitRatio,
			q(fmt.Sprintf("sum by (pod, container) (%s) / sum by (pod, container) (%s)", ofWorkloads(r.usage), ofWorkloads(requests(r))), "{{pod}} {{container}}"))
		g(r.title+" usage and requests by workload",
			"Usage and requests summed over each workload's pods.",
			r.unit,
			q(fmt.Sprintf("sum by (workload) (%s)", ofWorkloads(r.usage)), "{{workload}} usage"),
			q(fmt.Sprintf("sum by (workload) (%s)", ofWorkloads(requests(r))), "{{workload}} requests"))
	}
	return b
}
