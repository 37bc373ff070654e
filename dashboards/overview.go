package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// gantry selects the series of the Gantry instances picked in the job and
// instance variables.
var gantry = []string{`job=~"$job"`, `instance=~"$instance"`}

// gantrySel is sel(metric, gantry matchers..., extra...).
func gantrySel(metric string, extra ...string) string {
	return sel(metric, append(gantry[:len(gantry):len(gantry)], extra...)...)
}

func gantryRate(metric string, extra ...string) string {
	return rate(metric, append(gantry[:len(gantry):len(gantry)], extra...)...)
}

// quantile is the q-quantile of a histogram's rate, by the given labels.
func quantile(q float64, histogram, by string, extra ...string) string {
	if by != "" {
		by = ", " + by
	}
	return fmt.Sprintf("histogram_quantile(%g, sum by (le%s) (%s))", q, by, gantryRate(histogram+"_bucket", extra...))
}

// requestRatio is the share of Gantry's API requests whose code matches
// codeRegexp; 0, not "no data", when there are requests but none match.
func requestRatio(codeRegexp string) string {
	return fmt.Sprintf("(sum(%s) or vector(0)) / sum(%s)",
		gantryRate("gantry_requests_total", `code=~"`+codeRegexp+`"`), gantryRate("gantry_requests_total"))
}

// metricRuleSeries is one of Gantry's series about MetricRules, by
// namespace and name, with the MetricRule's namespace in the namespace
// label: where the scrape sets a namespace label of its own (a
// ServiceMonitor sets Gantry's), Prometheus keeps the MetricRule's in
// exported_namespace. agg combines the instances (min: a rule is Ready
// where every instance serves it).
func metricRuleSeries(agg, metric string) string {
	return fmt.Sprintf(`%s by (namespace, name) (label_replace(%s, "namespace", "$1", "exported_namespace", "(.+)"))`, agg, gantrySel(metric))
}

func overview() *dashboard.DashboardBuilder {
	const discoverySeries = "gantry_discovery_last_success_timestamp_seconds"
	return newDashboard("gantry-overview", "Gantry / Overview",
		"Gantry's own metrics: metrics API requests, backend queries, metric discovery and the process.").
		WithVariable(multiVariable("job", "Job", fmt.Sprintf("label_values(%s, job)", discoverySeries))).
		WithVariable(multiVariable("instance", "Instance", fmt.Sprintf(`label_values(%s{job=~"$job"}, instance)`, discoverySeries))).

		// --- Requests -------------------------------------------------------
		WithRow(dashboard.NewRowBuilder("Metrics API requests")).
		WithPanel(single("Request rate",
			"Requests to custom.metrics.k8s.io, external.metrics.k8s.io and metrics.k8s.io that passed authentication and authorization, per second.",
			unitReqps,
			q(fmt.Sprintf("sum(%s)", gantryRate("gantry_requests_total")), "requests"))).
		WithPanel(single("Server errors",
			"Share of requests answered with a 5xx code: the backend failed or timed out, or Gantry is not ready.",
			unitRatio,
			q(requestRatio("5.."), "5xx")).
			Thresholds(thresholds(at(0.01, "orange"), at(0.05, "red")))).
		WithPanel(single("Client errors",
			"Share of requests answered with a 4xx code, mostly 404: an HPA asks for a metric no rule serves, or for objects without data.",
			unitRatio,
			q(requestRatio("4.."), "4xx")).
			Thresholds(thresholds(at(0.05, "orange"), at(0.25, "red")))).
		WithPanel(single("p99 latency",
			"99th percentile of the time Gantry took to answer a metrics API request.",
			unitSeconds,
			q(quantile(0.99, "gantry_request_duration_seconds", ""), "p99")).
			Thresholds(thresholds(at(1, "orange"), at(5, "red")))).
		WithPanel(graph("Requests by API and code",
			"Requests per second by API group and HTTP status code.",
			unitReqps,
			q(fmt.Sprintf("sum by (api, code) (%s)", gantryRate("gantry_requests_total")), "{{api}} {{code}}")).
			Min(0)).
		WithPanel(graph("Request latency",
			"Percentiles of the time Gantry took to answer, by API group.",
			unitSeconds,
			q(quantile(0.5, "gantry_request_duration_seconds", "api"), "p50 {{api}}"),
			q(quantile(0.9, "gantry_request_duration_seconds", "api"), "p90 {{api}}"),
			q(quantile(0.99, "gantry_request_duration_seconds", "api"), "p99 {{api}}")).
			Min(0)).
		WithPanel(graph("Requests by metric",
			"Requests per second for each metric name (pods and nodes for metrics.k8s.io). Lists and failed lookups carry no metric and are left out.",
			unitReqps,
			q(fmt.Sprintf("sum by (api, metric) (%s)", gantryRate("gantry_requests_total", `metric!=""`)), "{{api}} {{metric}}")).
			Min(0)).
		WithPanel(graph("Failed requests by metric",
			"Requests per second answered with a code other than 2xx, by metric and code. A 404 for a metric means no rule produces it for the requested objects.",
			unitReqps,
			q(fmt.Sprintf("sum by (api, metric, code) (%s)", gantryRate("gantry_requests_total", `code!~"2.."`)), "{{api}} {{metric}} {{code}}")).
			Min(0)).

		// --- Backend --------------------------------------------------------
		WithRow(dashboard.NewRowBuilder("Backend queries")).
		WithPanel(graph("Backend call latency",
			"Percentiles of the duration of calls to the metrics backends (query: metric values; series: discovery), successful or not.",
			unitSeconds,
			q(quantile(0.5, "gantry_backend_request_duration_seconds", "backend, call"), "p50 {{backend}} {{call}}"),
			q(quantile(0.99, "gantry_backend_request_duration_seconds", "backend, call"), "p99 {{backend}} {{call}}")).
			Min(0)).
		WithPanel(graph("Backend calls by outcome",
			"Calls per second to each backend, by call and outcome (success or error).",
			unitReqps,
			q(fmt.Sprintf("sum by (backend, call, outcome) (%s)", gantryRate("gantry_backend_request_duration_seconds_count")), "{{backend}} {{call}} {{outcome}}")).
			Min(0)).
		WithPanel(graph("Backend errors by reason",
			"Failed backend calls per second by reason: timeout, unreachable, bad_query, bad_response or backend_error. Gantry's log has the details.",
			unitReqps,
			q(fmt.Sprintf("sum by (backend, call, reason) (%s)", gantryRate("gantry_backend_errors_total")), "{{backend}} {{call}} {{reason}}")).
			Min(0)).
		WithPanel(graph("Shared queries",
			"Queries per second answered by an identical query already in flight instead of a new backend call (several HPAs asking for the same metric at once).",
			unitReqps,
			q(fmt.Sprintf("sum by (backend) (%s)", gantryRate("gantry_backend_shared_queries_total")), "{{backend}}")).
			Min(0)).

		// --- Discovery ------------------------------------------------------
		WithRow(dashboard.NewRowBuilder("Metric discovery")).
		WithPanel(single("Discovered metrics",
			"Metrics Gantry serves now, by API, as found by the last relist of the series the rules select.",
			unitNone,
			q(fmt.Sprintf("max by (api) (%s)", gantrySel("gantry_discovery_metrics")), "{{api}}"))).
		WithPanel(single("Since last successful relist",
			"Time since the last relist in which every series query succeeded, for the worst instance. Gantry reports not ready when this exceeds three relist intervals plus a minute (4m with the default --metrics-relist-interval=1m).",
			unitSeconds,
			q(fmt.Sprintf("max(time() - %s)", gantrySel(discoverySeries)), "age")).
			Thresholds(thresholds(at(150, "orange"), at(240, "red")))).
		WithPanel(single("Metric name conflicts",
			"Metric names produced by more than one rule or series in the last relist; the last rule in file order wins, as in prometheus-adapter. Rename or narrow the rules.",
			unitNone,
			q(fmt.Sprintf("max(%s)", gantrySel("gantry_discovery_conflicts")), "conflicts")).
			Thresholds(thresholds(at(1, "orange")))).
		WithPanel(single("Relist failures",
			"Series queries that failed during relists in the selected time range; Gantry kept serving the last good result for those rules.",
			unitNone,
			q(fmt.Sprintf("sum(increase(%s[$__range])) or vector(0)", gantrySel("gantry_discovery_relist_failures_total")), "failures")).
			Thresholds(thresholds(at(1, "orange")))).
		WithPanel(graph("Discovered metrics",
			"Metrics served by API, and names in conflict, over time. A drop means series matching a rule disappeared from the backend.",
			unitNone,
			q(fmt.Sprintf("max by (api) (%s)", gantrySel("gantry_discovery_metrics")), "{{api}}"),
			q(fmt.Sprintf("max(%s)", gantrySel("gantry_discovery_conflicts")), "conflicts")).
			Min(0)).
		WithPanel(graph("Time since last successful relist",
			"Age of the last fully successful relist, per instance. It should saw-tooth below the relist interval.",
			unitSeconds,
			q(fmt.Sprintf("time() - %s", gantrySel(discoverySeries)), "{{instance}}")).
			Min(0)).
		WithPanel(graph("Relist duration",
			"Percentiles of the time one relist of every rule's series query took. Relists run once per interval (1m by default), so the panel's minimum interval is 2m to have observations in every window.",
			unitSeconds,
			q(quantile(0.5, "gantry_discovery_relist_duration_seconds", ""), "p50"),
			q(quantile(0.99, "gantry_discovery_relist_duration_seconds", ""), "p99")).
			Interval("2m").
			Min(0)).
		WithPanel(graph("Relist failures by rule",
			"Failed series queries per minute, by rule, named as in the config file: rules[3] (http_requests).",
			unitOpm,
			q(fmt.Sprintf("60 * sum by (rule) (%s)", gantryRate("gantry_discovery_relist_failures_total")), "{{rule}}")).
			Min(0)).

		// --- Namespaced rules -----------------------------------------------
		WithRow(dashboard.NewRowBuilder("Namespaced rules")).
		WithPanel(single("MetricRules",
			"MetricRules (gantry.dev/v1alpha1, the rules app teams keep in their own namespaces) that Gantry knows.",
			unitNone,
			q(fmt.Sprintf("count(%s)", metricRuleSeries("max", "gantry_metricrule_ready")), "MetricRules")).
			NoValue("0")).
		WithPanel(single("MetricRules not Ready",
			"MetricRules whose Ready condition is false on some instance: refused (invalid, namespace or backend not allowed, too many rules) or serving nothing (no series, discovery failed, name taken by a cluster rule). kubectl get metricrules -A shows why.",
			unitNone,
			q(fmt.Sprintf("count(%s == 0) or vector(0)", metricRuleSeries("min", "gantry_metricrule_ready")), "not Ready")).
			Thresholds(thresholds(at(1, "red")))).
		WithPanel(single("Metrics served by MetricRules",
			"Metrics the MetricRules serve now, each in its own namespace only.",
			unitNone,
			q(fmt.Sprintf("sum(%s)", metricRuleSeries("max", "gantry_metricrule_metrics")), "metrics")).
			NoValue("0")).
		WithPanel(single("Apply to served p99",
			"99th percentile, over the selected time range, of the time from Gantry seeing a new generation of a MetricRule to its metrics being served.",
			unitSeconds,
			q(fmt.Sprintf("histogram_quantile(0.99, sum by (le) (increase(%s[$__range])))", gantrySel("gantry_metricrule_apply_to_served_seconds_bucket")), "p99")).
			Thresholds(thresholds(at(5, "orange"), at(30, "red")))).
		WithPanel(graph("MetricRules not Ready by namespace",
			"MetricRules not Ready, per namespace. A namespace's broken or oversized rules affect no other namespace.",
			unitNone,
			q(fmt.Sprintf("count by (namespace) (%s == 0)", metricRuleSeries("min", "gantry_metricrule_ready")), "{{namespace}}")).
			Span(8).
			Min(0)).
		WithPanel(graph("Metrics served by namespace",
			"Metrics served by the MetricRules of each namespace.",
			unitNone,
			q(fmt.Sprintf("sum by (namespace) (%s)", metricRuleSeries("max", "gantry_metricrule_metrics")), "{{namespace}}")).
			Span(8).
			Min(0)).
		WithPanel(graph("Apply to served latency",
			"Percentiles of the time from Gantry seeing a new generation of a MetricRule (an apply) to its metrics being served. Applies are rare: windows without one have no value, hence the panel's minimum interval of 2m.",
			unitSeconds,
			q(quantile(0.5, "gantry_metricrule_apply_to_served_seconds", ""), "p50"),
			q(quantile(0.99, "gantry_metricrule_apply_to_served_seconds", ""), "p99")).
			Interval("2m").
			Span(8).
			Min(0)).

		// --- Process --------------------------------------------------------
		WithRow(dashboard.NewRowBuilder("Process")).
		WithPanel(graph("CPU",
			"CPU used by each Gantry process, in cores.",
			unitShort,
			q(gantryRate("process_cpu_seconds_total"), "{{instance}}")).
			AxisLabel("cores").
			Span(8).
			Min(0)).
		WithPanel(graph("Memory",
			"Resident memory of each Gantry process, and the Go heap in use.",
			unitBytes,
			q(gantrySel("process_resident_memory_bytes"), "{{instance}} resident"),
			q(gantrySel("go_memstats_heap_inuse_bytes"), "{{instance}} heap in use")).
			Span(8).
			Min(0)).
		WithPanel(graph("Goroutines",
			"Goroutines per process; steady growth hints at a leak of requests or watches.",
			unitNone,
			q(gantrySel("go_goroutines"), "{{instance}}")).
			Span(8).
			Min(0))
}
