package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

// The rules of prometheus-adapter's docs (config.md, sample-config.yaml,
// config-walkthrough.md, walkthrough.md, externalmetrics.md). sample-config's
// metricsQuery is written there in double quotes around double quotes, which
// is not valid YAML; the query itself is kept.
var (
	// config.md and sample-config.yaml: cumulative cAdvisor seconds.
	docContainerSeconds = config.DiscoveryRule{
		SeriesQuery: `{__name__=~"^container_.*",container!="POD",namespace!="",pod!=""}`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"namespace": {Resource: "namespace"},
			"pod":       {Resource: "pod"},
		}},
		Name:         config.NameMapping{Matches: "^container_(.*)_seconds_total$"},
		MetricsQuery: `sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[2m])) by (<<.GroupBy>>)`,
	}
	// sample-config.yaml: cumulative cAdvisor metrics not in seconds.
	docContainerTotals = config.DiscoveryRule{
		SeriesQuery: `{__name__=~"^container_.*_total",container!="POD",namespace!="",pod!=""}`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"namespace": {Resource: "namespace"},
			"pod":       {Resource: "pod"},
		}},
		SeriesFilters: []config.RegexFilter{{IsNot: "^container_.*_seconds_total$"}},
		Name:          config.NameMapping{Matches: "^container_(.*)_total$"},
		MetricsQuery:  `sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[2m])) by (<<.GroupBy>>)`,
	}
	// sample-config.yaml: cumulative non-cAdvisor metrics, generic labels.
	docGeneric = config.DiscoveryRule{
		SeriesQuery:  `{namespace!="",__name__!="^container_.*"}`,
		Name:         config.NameMapping{Matches: "^(.*)_total$"},
		Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
		MetricsQuery: `sum(rate(<<.Series>>{<<.LabelMatchers>>,container!="POD"}[2m])) by (<<.GroupBy>>)`,
	}
	// sample-config.yaml: one series, renamed, constant query.
	docCheddar = config.DiscoveryRule{
		SeriesQuery: `cheddar{sharp="true"}`,
		Name:        config.NameMapping{As: "cheesy_goodness"},
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"brand": {Group: "cheese.io", Resource: "brand"},
		}},
		MetricsQuery: `count(cheddar{sharp="true"})`,
	}
	// config-walkthrough.md.
	docWalkthroughHTTP = config.DiscoveryRule{
		SeriesQuery: `http_requests_total{kubernetes_namespace!="",kubernetes_pod_name!=""}`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"kubernetes_namespace": {Resource: "namespace"},
			"kubernetes_pod_name":  {Resource: "pod"},
		}},
		Name:         config.NameMapping{Matches: "^(.*)_total", As: "${1}_per_second"},
		MetricsQuery: `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`,
	}
	// walkthrough.md's ConfigMap, block scalars and all.
	docWalkthroughIrate = config.DiscoveryRule{
		SeriesQuery:  "{namespace!=\"\",__name__!~\"^container_.*\"}\n",
		Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
		Name:         config.NameMapping{Matches: "^(.*)_total", As: ""},
		MetricsQuery: "sum by (<<.GroupBy>>) (\n  irate (\n    <<.Series>>{<<.LabelMatchers>>}[1m]\n  )\n)\n",
	}
	// externalmetrics.md and sample-config.yaml.
	docQueueLag = config.DiscoveryRule{
		SeriesQuery:  `{__name__="queue_consumer_lag",name!=""}`,
		MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>}) by (name)`,
		Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
			"namespace": {Resource: "namespace"},
		}},
	}
	docQueueDepth = config.DiscoveryRule{
		SeriesQuery:  `{__name__="queue_depth",name!=""}`,
		MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>}) by (name)`,
		Resources:    config.ResourceMapping{Namespaced: ptr(false)},
	}
	// sample-config.yaml's first external rule: no resources at all.
	docQueueLagNoResources = config.DiscoveryRule{
		SeriesQuery:  `{__name__="queue_consumer_lag",name!=""}`,
		MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>}) by (name)`,
	}
)

func ptr[T any](v T) *T { return &v }

func TestMetricName(t *testing.T) {
	tests := []struct {
		name   string
		rule   config.DiscoveryRule
		series map[string]string // series → API name; "" when rejected
	}{
		{
			name: "config.md: container seconds, implicit $1",
			rule: docContainerSeconds,
			series: map[string]string{
				"container_cpu_usage_seconds_total":         "cpu_usage",
				"container_cpu_cfs_throttled_seconds_total": "cpu_cfs_throttled",
				"container_memory_usage_bytes":              "",
				"container_network_receive_bytes_total":     "",
				// The whole name must match: the pattern is anchored.
				"xcontainer_cpu_usage_seconds_total": "",
				// Nothing is left for the name.
				"container__seconds_total": "",
			},
		},
		{
			name: "sample-config: isNot filter removes what the rule above serves",
			rule: docContainerTotals,
			series: map[string]string{
				"container_network_receive_bytes_total": "network_receive_bytes",
				"container_fs_reads_total":              "fs_reads",
				"container_cpu_usage_seconds_total":     "",
				"container_memory_usage_bytes":          "",
			},
		},
		{
			name: "sample-config: generic totals",
			rule: docGeneric,
			series: map[string]string{
				"http_requests_total":   "http_requests",
				"http_requests":         "",
				"jobs_total_total":      "jobs_total",
				"http_request_duration": "",
			},
		},
		{
			name: "sample-config: fixed name, no pattern",
			rule: docCheddar,
			series: map[string]string{
				"cheddar": "cheesy_goodness",
				// The rule's seriesQuery decides which series come here; the
				// name mapping takes whatever it gets.
				"gouda": "cheesy_goodness",
			},
		},
		{
			name: "config walkthrough: unanchored pattern, ${1} replacement",
			rule: docWalkthroughHTTP,
			series: map[string]string{
				"http_requests_total": "http_requests_per_second",
				// Only the replacement is kept, not what follows the match.
				"http_requests_total_created": "http_requests_per_second",
				"grpc_calls":                  "",
			},
		},
		{
			name: "walkthrough: empty as means the default",
			rule: docWalkthroughIrate,
			series: map[string]string{
				"http_requests_total": "http_requests",
			},
		},
		{
			name: "no name mapping keeps the series name",
			rule: docQueueLag,
			series: map[string]string{
				"queue_consumer_lag": "queue_consumer_lag",
			},
		},
		{
			name: "is and isNot filters must all pass",
			rule: config.DiscoveryRule{
				SeriesQuery: `{__name__=~"^cache_.*"}`,
				SeriesFilters: []config.RegexFilter{
					{Is: "^cache_"},
					{Is: "_total$"},
					{IsNot: "_bucket"},
					{IsNot: "^cache_internal_"},
				},
				MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)`,
			},
			series: map[string]string{
				"cache_hits_total":            "cache_hits_total",
				"cache_hits":                  "",
				"cache_hits_bucket_total":     "",
				"cache_internal_evicts_total": "",
				"db_hits_total":               "",
				// Filters are unanchored unless they say otherwise.
				"cache_hits_total_total": "cache_hits_total_total",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, tc.rule, false)
			got := map[string]string{}
			for s := range tc.series {
				name, ok := r.MetricName(s)
				if ok == (name == "") {
					t.Errorf("MetricName(%q) = %q, %v: ok must say whether there is a name", s, name, ok)
				}
				got[s] = name
			}
			if diff := cmp.Diff(tc.series, got); diff != "" {
				t.Errorf("MetricName (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompile(t *testing.T) {
	t.Run("fields of the compiled rule", func(t *testing.T) {
		r := mustCompile(t, docQueueDepth, true)
		want := struct {
			ID, SeriesQuery      string
			External, Namespaced bool
			Window               time.Duration
		}{"rules[0] (queue_depth)", `{__name__="queue_depth",name!=""}`, true, false, 0}
		got := want
		got.ID, got.SeriesQuery, got.External, got.Namespaced, got.Window = r.ID, r.SeriesQuery, r.External, r.Namespaced, r.Window
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	windows := []struct {
		name  string
		query string
		set   time.Duration
		want  time.Duration
	}{
		{"from the rate range", `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`, 0, 2 * time.Minute},
		{"the longest range wins", `sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s]) + increase(<<.Series>>{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>)`, 0, 5 * time.Minute},
		{"subquery range", `max_over_time(sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)[10m:1m])`, 0, 10 * time.Minute},
		{"no range, no window", `sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)`, 0, 0},
		{"set in the rule", `sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)`, 45 * time.Second, 45 * time.Second},
	}
	for _, tc := range windows {
		t.Run("window: "+tc.name, func(t *testing.T) {
			r := mustCompile(t, config.DiscoveryRule{SeriesQuery: "x", MetricsQuery: tc.query, Window: config.Duration(tc.set)}, false)
			if r.Window != tc.want {
				t.Errorf("Window = %v, want %v", r.Window, tc.want)
			}
		})
	}

	errs := []struct {
		name string
		rule config.DiscoveryRule
		want string
	}{
		{
			name: "every problem at once",
			rule: config.DiscoveryRule{
				SeriesQuery:   "x",
				SeriesFilters: []config.RegexFilter{{Is: "("}, {IsNot: "[z-a]"}},
				Name:          config.NameMapping{Matches: "(a)(b)"},
				Resources:     config.ResourceMapping{Overrides: map[string]config.GroupResource{"gadget": {Resource: "gadget"}}},
				MetricsQuery:  "<<.Series",
			},
			want: "rules[7] (x): seriesFilters[0].is: error parsing regexp: missing closing ): `(`\n" +
				"seriesFilters[1].isNot: error parsing regexp: invalid character class range: `z-a`\n" +
				`name.as: required when name.matches "(a)(b)" has 2 capture groups` + "\n" +
				`resources: overrides.gadget: resource "gadget" not known to the cluster: no matches for /, Resource=gadget` + "\n" +
				"metricsQuery: not a valid template: line 1: unclosed action",
		},
	}
	for _, tc := range errs {
		t.Run("error: "+tc.name, func(t *testing.T) {
			_, err := Compile("rules[7] (x)", tc.rule, false, testMapper())
			if err == nil {
				t.Fatal("Compile succeeded")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

// objectRequest is a custom metrics API request: metric on objects.
type objectRequest struct {
	series    string
	gr        schema.GroupResource
	namespace string
	names     []string
	selector  string // metric label selector
	extra     []model.LabelName
}

func TestObjectQuery(t *testing.T) {
	tests := []struct {
		name string
		rule config.DiscoveryRule
		req  objectRequest
		// want is Gantry's query, exactly.
		want string
		// adapter, when set, is the query prometheus-adapter sends for the
		// same request; it must do the same thing as want.
		adapter      string
		wantMatchers []Matcher
	}{
		{
			name:    "config.md: two pods in a namespace",
			rule:    docContainerSeconds,
			req:     objectRequest{series: "container_cpu_usage_seconds_total", gr: Pods, namespace: "somens", names: []string{"pod1", "pod2"}},
			want:    `sum(rate(container_cpu_usage_seconds_total{namespace="somens",pod=~"pod1|pod2",container!="POD"}[2m])) by (pod)`,
			adapter: `sum(rate(container_cpu_usage_seconds_total{namespace="somens",pod=~"pod1|pod2",container!="POD"}[2m])) by (pod)`,
			wantMatchers: []Matcher{
				{Label: "namespace", Type: labels.MatchEqual, Values: []string{"somens"}},
				{Label: "pod", Type: labels.MatchRegexp, Values: []string{"pod1", "pod2"}},
			},
		},
		{
			name:    "config.md: one pod is an equality matcher",
			rule:    docContainerSeconds,
			req:     objectRequest{series: "container_cpu_usage_seconds_total", gr: Pods, namespace: "somens", names: []string{"pod1"}},
			want:    `sum(rate(container_cpu_usage_seconds_total{namespace="somens",pod="pod1",container!="POD"}[2m])) by (pod)`,
			adapter: `sum(rate(container_cpu_usage_seconds_total{namespace="somens",pod="pod1",container!="POD"}[2m])) by (pod)`,
		},
		{
			name: "config.md: a namespace's own metric has no separate namespace matcher",
			rule: docContainerSeconds,
			req:  objectRequest{series: "container_cpu_usage_seconds_total", gr: Namespaces, names: []string{"somens"}},
			want: `sum(rate(container_cpu_usage_seconds_total{namespace="somens",container!="POD"}[2m])) by (namespace)`,
		},
		{
			name: "a namespace's metric, namespace passed too",
			rule: docContainerSeconds,
			req:  objectRequest{series: "container_cpu_usage_seconds_total", gr: Namespaces, namespace: "somens", names: []string{"somens"}},
			want: `sum(rate(container_cpu_usage_seconds_total{namespace="somens",container!="POD"}[2m])) by (namespace)`,
		},
		{
			name:    "config walkthrough: frontend pods in production",
			rule:    docWalkthroughHTTP,
			req:     objectRequest{series: "http_requests_total", gr: Pods, namespace: "production", names: []string{"frontend-server-abcd-0123", "frontend-server-abcd-4567"}},
			want:    `sum(rate(http_requests_total{kubernetes_namespace="production",kubernetes_pod_name=~"frontend-server-abcd-(?:0123|4567)"}[2m])) by (kubernetes_pod_name)`,
			adapter: `sum(rate(http_requests_total{kubernetes_namespace="production",kubernetes_pod_name=~"frontend-server-abcd-0123|frontend-server-abcd-4567"}[2m])) by (kubernetes_pod_name)`,
		},
		{
			name: "config walkthrough: the production namespace itself",
			rule: docWalkthroughHTTP,
			req:  objectRequest{series: "http_requests_total", gr: Namespaces, names: []string{"production"}},
			want: `sum(rate(http_requests_total{kubernetes_namespace="production"}[2m])) by (kubernetes_namespace)`,
		},
		{
			name: "walkthrough: pods of the sample app, multi-line template kept as written",
			rule: docWalkthroughIrate,
			req:  objectRequest{series: "http_requests_total", gr: Pods, namespace: "default", names: []string{"sample-app-7cfb596f98-8h5fv", "sample-app-7cfb596f98-kjw2p"}},
			want: "sum by (pod) (\n  irate (\n    http_requests_total{namespace=\"default\",pod=~\"sample-app-7cfb596f98-(?:8h5fv|kjw2p)\"}[1m]\n  )\n)\n",
		},
		{
			name:    "sample-config: services through the <<.Resource>> template",
			rule:    docGeneric,
			req:     objectRequest{series: "http_requests_total", gr: services, namespace: "shop", names: []string{"frontend"}},
			want:    `sum(rate(http_requests_total{namespace="shop",service="frontend",container!="POD"}[2m])) by (service)`,
			adapter: `sum(rate(http_requests_total{namespace="shop",service="frontend",container!="POD"}[2m])) by (service)`,
		},
		{
			name: "sample-config: deployments through the template",
			rule: docGeneric,
			req:  objectRequest{series: "http_requests_total", gr: deployments, namespace: "shop", names: []string{"web", "api"}},
			want: `sum(rate(http_requests_total{namespace="shop",deployment=~"api|web",container!="POD"}[2m])) by (deployment)`,
		},
		{
			name: "sample-config: cluster-scoped nodes through the template",
			rule: docGeneric,
			req:  objectRequest{series: "http_requests_total", gr: Nodes, names: []string{"ip-10-0-1-17.ec2.internal"}},
			want: `sum(rate(http_requests_total{node="ip-10-0-1-17.ec2.internal",container!="POD"}[2m])) by (node)`,
		},
		{
			name: "sample-config: the constant cheddar query ignores the request",
			rule: docCheddar,
			req:  objectRequest{series: "cheddar", gr: brands, names: []string{"wyke-farms"}},
			want: `count(cheddar{sharp="true"})`,
		},
		{
			name:    "a metric selector comes first, in key order, as prometheus-adapter writes it",
			rule:    docWalkthroughHTTP,
			req:     objectRequest{series: "http_requests_total", gr: Pods, namespace: "production", names: []string{"frontend-0"}, selector: "verb in (GET,HEAD),code!=500,path"},
			want:    `sum(rate(http_requests_total{code!="500",path!="",verb=~"GET|HEAD",kubernetes_namespace="production",kubernetes_pod_name="frontend-0"}[2m])) by (kubernetes_pod_name)`,
			adapter: `sum(rate(http_requests_total{code!="500",path!="",verb=~"GET|HEAD",kubernetes_namespace="production",kubernetes_pod_name="frontend-0"}[2m])) by (kubernetes_pod_name)`,
		},
		{
			name: "extra group-by labels follow the resource label",
			rule: docContainerSeconds,
			req:  objectRequest{series: "container_cpu_usage_seconds_total", gr: Pods, namespace: "ns", names: []string{"a", "b"}, extra: []model.LabelName{"container"}},
			want: `sum(rate(container_cpu_usage_seconds_total{namespace="ns",pod=~"a|b",container!="POD"}[2m])) by (pod,container)`,
		},
		{
			name: "duplicate names are matched once",
			rule: docContainerSeconds,
			req:  objectRequest{series: "container_cpu_usage_seconds_total", gr: Pods, namespace: "ns", names: []string{"web-1", "web-0", "web-1"}},
			want: `sum(rate(container_cpu_usage_seconds_total{namespace="ns",pod=~"web-0|web-1",container!="POD"}[2m])) by (pod)`,
		},
		{
			name: "LabelValuesByName: escaped for a double-quoted regexp",
			rule: config.DiscoveryRule{
				SeriesQuery:  "x",
				Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
				MetricsQuery: `sum(<<.Series>>{node=~"<<index .LabelValuesByName "node">>"}) by (<<.GroupBy>>)`,
			},
			req:  objectRequest{series: "node_load1", gr: Nodes, names: []string{"ip-10-0-1-17.ec2.internal", "ip-10-0-1-18.ec2.internal"}},
			want: `sum(node_load1{node=~"ip-10-0-1-1(?:7\\.ec2\\.internal|8\\.ec2\\.internal)"}) by (node)`,
		},
		{
			name: "GroupBySlice",
			rule: config.DiscoveryRule{
				SeriesQuery:  "x",
				Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
				MetricsQuery: `sum by (<<range $i, $l := .GroupBySlice>><<if $i>>,<<end>><<$l>><<end>>) (<<.Series>>{<<.LabelMatchers>>})`,
			},
			req:  objectRequest{series: "jobs", gr: Pods, namespace: "ns", names: []string{"a"}, extra: []model.LabelName{"queue"}},
			want: `sum by (pod,queue) (jobs{namespace="ns",pod="a"})`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, tc.rule, false)
			q, err := r.ObjectQuery(tc.req.series, tc.req.gr, tc.req.namespace, tc.req.names, mustSelector(t, tc.req.selector), tc.req.extra...)
			if err != nil {
				t.Fatalf("ObjectQuery: %v", err)
			}
			if diff := cmp.Diff(tc.want, q.Text); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			mustParse(t, q.Text)
			if tc.adapter != "" {
				probes := append([]string{"", "pod", "pod12", "pod1|pod2", "GET|HEAD", "frontend-server-abcd-0123x", "ge"}, tc.req.names...)
				sameQuery(t, q.Text, tc.adapter, probes)
			}
			if tc.wantMatchers != nil {
				if diff := cmp.Diff(tc.wantMatchers, q.Matchers); diff != "" {
					t.Errorf("matchers (-want +got):\n%s", diff)
				}
			}
			wantLabel, err := r.Labels.LabelFor(tc.req.gr)
			if err != nil {
				t.Fatal(err)
			}
			if q.ResourceLabel != wantLabel {
				t.Errorf("ResourceLabel = %q, want %q", q.ResourceLabel, wantLabel)
			}
		})
	}
}

func TestObjectQueryErrors(t *testing.T) {
	tests := []struct {
		name string
		rule config.DiscoveryRule
		req  objectRequest
		want string
	}{
		{
			name: "no objects",
			rule: docContainerSeconds,
			req:  objectRequest{series: "s", gr: Pods, namespace: "ns"},
			want: "rules[0] (^container_(.*)_seconds_total$): no objects to query",
		},
		{
			name: "an empty name would match series without the label",
			rule: docContainerSeconds,
			req:  objectRequest{series: "s", gr: Pods, namespace: "ns", names: []string{"a", ""}},
			want: "rules[0] (^container_(.*)_seconds_total$): an object name is empty",
		},
		{
			name: "a resource the rule has no label for",
			rule: docContainerSeconds,
			req:  objectRequest{series: "s", gr: deployments, namespace: "ns", names: []string{"web"}},
			want: `rules[0] (^container_(.*)_seconds_total$): no label is mapped to resource "deployments.apps" (add it to the rule's resources.overrides or set resources.template)`,
		},
		{
			name: "a namespaced request on a rule with no namespace label",
			rule: docCheddar,
			req:  objectRequest{series: "cheddar", gr: brands, namespace: "dairy", names: []string{"wyke-farms"}},
			want: `rules[0] (cheesy_goodness): namespace: no label is mapped to resource "namespaces" (add it to the rule's resources.overrides or set resources.template)`,
		},
		{
			name: "a selector key that is no Prometheus label",
			rule: docContainerSeconds,
			req:  objectRequest{series: "s", gr: Pods, namespace: "ns", names: []string{"a"}, selector: "app.kubernetes.io/name=web"},
			want: `label "app.kubernetes.io/name" in the metric selector is not a valid Prometheus label name`,
		},
		{
			name: "a selector operator with no PromQL form",
			rule: docContainerSeconds,
			req:  objectRequest{series: "s", gr: Pods, namespace: "ns", names: []string{"a"}, selector: "replicas>3"},
			want: `operator "gt" in the metric selector is not supported`,
		},
		{
			name: "a template that renders nothing for this request",
			rule: config.DiscoveryRule{
				SeriesQuery:  "x",
				Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
				MetricsQuery: `<<if eq .GroupBy "pod">>sum(<<.Series>>{<<.LabelMatchers>>})<<end>>`,
			},
			req:  objectRequest{series: "s", gr: services, namespace: "ns", names: []string{"a"}},
			want: `rules[0] (x): metricsQuery: renders an empty query`,
		},
		{
			name: "a template that needs a label the request does not have",
			rule: config.DiscoveryRule{
				SeriesQuery:  "x",
				Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
				MetricsQuery: `sum(<<.Series>>{pod=~"<<.LabelValuesByName.pod>>"})`,
			},
			req:  objectRequest{series: "s", gr: services, namespace: "ns", names: []string{"a"}},
			want: `rules[0] (x): metricsQuery: rendering: template: metricsQuery:1:42: executing "metricsQuery" at <.LabelValuesByName.pod>: map has no entry for key "pod"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, tc.rule, false)
			_, err := r.ObjectQuery(tc.req.series, tc.req.gr, tc.req.namespace, tc.req.names, mustSelector(t, tc.req.selector))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("ObjectQuery error:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
	t.Run("selector errors are the request's fault", func(t *testing.T) {
		r := mustCompile(t, docContainerSeconds, false)
		_, err := r.ObjectQuery("s", Pods, "ns", []string{"a"}, mustSelector(t, "a.b=c"))
		if _, ok := err.(*InvalidSelectorError); !ok {
			t.Errorf("error %T %v, want *InvalidSelectorError", err, err)
		}
	})
}

func TestExternalQuery(t *testing.T) {
	tests := []struct {
		name      string
		rule      config.DiscoveryRule
		series    string
		namespace string
		selector  string
		want      string
		adapter   string
	}{
		{
			name:      "externalmetrics.md: the HPA's namespace is matched",
			rule:      docQueueLag,
			series:    "queue_consumer_lag",
			namespace: "default",
			want:      `sum(queue_consumer_lag{namespace="default"}) by (name)`,
			adapter:   `sum(queue_consumer_lag{namespace="default"}) by (name)`,
		},
		{
			name:      "externalmetrics.md: selector first, then the namespace",
			rule:      docQueueLag,
			series:    "queue_consumer_lag",
			namespace: "default",
			selector:  "name=my-sample-queue",
			want:      `sum(queue_consumer_lag{name="my-sample-queue",namespace="default"}) by (name)`,
			adapter:   `sum(queue_consumer_lag{name="my-sample-queue",namespace="default"}) by (name)`,
		},
		{
			name:      "externalmetrics.md: namespaced false ignores the HPA's namespace and the selector picks one",
			rule:      docQueueDepth,
			series:    "queue_depth",
			namespace: "default",
			selector:  "namespace=queue,name=my-sample-queue",
			want:      `sum(queue_depth{name="my-sample-queue",namespace="queue"}) by (name)`,
			adapter:   `sum(queue_depth{name="my-sample-queue",namespace="queue"}) by (name)`,
		},
		{
			name:      "namespaced false without a selector",
			rule:      docQueueDepth,
			series:    "queue_depth",
			namespace: "default",
			want:      `sum(queue_depth{}) by (name)`,
		},
		{
			// prometheus-adapter fails this request: the rule maps no
			// namespace label. Gantry uses the conventional one.
			name:      "sample-config: no resources, so the namespace label is \"namespace\"",
			rule:      docQueueLagNoResources,
			series:    "queue_consumer_lag",
			namespace: "default",
			want:      `sum(queue_consumer_lag{namespace="default"}) by (name)`,
		},
		{
			name:      "a namespace override is used",
			rule:      config.DiscoveryRule{SeriesQuery: "x", MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>})`, Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{"exported_namespace": {Resource: "namespaces"}}}},
			series:    "jobs_waiting",
			namespace: "batch",
			selector:  "queue notin (low,lowest),tier",
			want:      `sum(jobs_waiting{queue!~"low|lowest",tier!="",exported_namespace="batch"})`,
			adapter:   `sum(jobs_waiting{queue!~"low|lowest",tier!="",exported_namespace="batch"})`,
		},
		{
			name:    "GroupBy is empty for external metrics",
			rule:    config.DiscoveryRule{SeriesQuery: "x", MetricsQuery: `sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)`, Resources: config.ResourceMapping{Namespaced: ptr(false)}},
			series:  "jobs_waiting",
			want:    `sum(jobs_waiting{}) by ()`,
			adapter: `sum(jobs_waiting{}) by ()`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, tc.rule, true)
			q, err := r.ExternalQuery(tc.series, tc.namespace, mustSelector(t, tc.selector))
			if err != nil {
				t.Fatalf("ExternalQuery: %v", err)
			}
			if diff := cmp.Diff(tc.want, q.Text); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if q.ResourceLabel != "" {
				t.Errorf("ResourceLabel = %q, want none", q.ResourceLabel)
			}
			if tc.adapter != "" {
				sameQuery(t, q.Text, tc.adapter, []string{"", "low", "lowest", "low|lowest", "lowe", "est"})
			}
		})
	}
}

func TestSelectorMatchers(t *testing.T) {
	tests := []struct {
		selector string
		want     []string
		wantErr  string
	}{
		{selector: "", want: nil},
		{selector: "a=b", want: []string{`a="b"`}},
		{selector: "a==b", want: []string{`a="b"`}},
		{selector: "a!=b", want: []string{`a!="b"`}},
		{selector: "a in (b)", want: []string{`a="b"`}},
		{selector: "a in (c,b)", want: []string{`a=~"b|c"`}},
		{selector: "a notin (b)", want: []string{`a!="b"`}},
		{selector: "a notin (b,c)", want: []string{`a!~"b|c"`}},
		{selector: "a", want: []string{`a!=""`}},
		{selector: "!a", want: []string{`a=""`}},
		{selector: "a in (x.y,x-z)", want: []string{`a=~"x-z|x\\.y"`}},
		{selector: "z=1,a=2", want: []string{`a="2"`, `z="1"`}},
		{selector: "a.b/c=d", wantErr: `label "a.b/c" in the metric selector is not a valid Prometheus label name`},
		{selector: "a<3", wantErr: `operator "lt" in the metric selector is not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.selector, func(t *testing.T) {
			ms, err := SelectorMatchers(mustSelector(t, tc.selector))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("reserved label", func(t *testing.T) {
		// labels.Parse refuses "__name__"; a selector built without
		// validation must not pick another metric either.
		sel := k8slabels.SelectorFromValidatedSet(k8slabels.Set{"__name__": "up"})
		const want = `label "__name__" in the metric selector is reserved for Prometheus' internal use`
		var ise *InvalidSelectorError
		if ms, err := SelectorMatchers(sel); !errors.As(err, &ise) || err.Error() != want {
			t.Errorf("SelectorMatchers(%v) = %v, %v; want an InvalidSelectorError %q", sel, ms, err, want)
		}
	})
	t.Run("nil and Everything", func(t *testing.T) {
		for _, sel := range []k8slabels.Selector{nil, k8slabels.Everything(), k8slabels.NewSelector()} {
			if ms, err := SelectorMatchers(sel); err != nil || ms != nil {
				t.Errorf("SelectorMatchers(%v) = %v, %v", sel, ms, err)
			}
		}
	})
}

func TestMatcherString(t *testing.T) {
	tests := []struct {
		name string
		m    Matcher
		want string
	}{
		{"equal", Matcher{"pod", labels.MatchEqual, []string{"web-0"}}, `pod="web-0"`},
		{"not equal", Matcher{"pod", labels.MatchNotEqual, []string{"web-0"}}, `pod!="web-0"`},
		{"equal keeps regexp characters as they are", Matcher{"path", labels.MatchEqual, []string{"/a.b*"}}, `path="/a.b*"`},
		{"equal escapes quotes and backslashes", Matcher{"x", labels.MatchEqual, []string{`a"b\c`}}, `x="a\"b\\c"`},
		{"equal escapes control characters", Matcher{"x", labels.MatchEqual, []string{"a\nb\x00"}}, `x="a\nb\x00"`},
		{"equal keeps printable unicode", Matcher{"x", labels.MatchEqual, []string{"café ☕"}}, `x="café ☕"`},
		{"equal with no value", Matcher{"x", labels.MatchEqual, nil}, `x=""`},
		{"regexp of one value is escaped", Matcher{"pod", labels.MatchRegexp, []string{"a.b"}}, `pod=~"a\\.b"`},
		{"regexp: plain alternation in sorted order, as prometheus-adapter writes it", Matcher{"pod", labels.MatchRegexp, []string{"web", "api"}}, `pod=~"api|web"`},
		{"regexp: a prefix is factored out only where that is shorter", Matcher{"pod", labels.MatchRegexp, []string{"web-1", "web-2", "web-10"}}, `pod=~"web-(?:1|10|2)"`},
		{"regexp: prefixes factored level by level", Matcher{"pod", labels.MatchRegexp, []string{"frontend-6f7d9c-abcde", "frontend-6f7d9c-fghij", "frontend-84b5d7-klmno"}}, `pod=~"frontend-(?:6f7d9c-(?:abcde|fghij)|84b5d7-klmno)"`},
		{"regexp with the prefix as a value", Matcher{"pod", labels.MatchRegexp, []string{"frontend", "frontend-0", "frontend-1"}}, `pod=~"frontend(?:|-0|-1)"`},
		{"regexp metacharacters are escaped", Matcher{"v", labels.MatchRegexp, []string{"a|b", ".*", "(x)", "[y]", "z+?", "^$", `\d`}}, `v=~"\\(x\\)|\\.\\*|\\[y\\]|\\\\d|\\^\\$|a\\|b|z\\+\\?"`},
		{"not regexp", Matcher{"v", labels.MatchNotRegexp, []string{"a", "b"}}, `v!~"a|b"`},
		{"regexp with no values matches nothing", Matcher{"v", labels.MatchRegexp, nil}, `v=~"[^\\x00-\\x{10FFFF}]"`},
		{"multi-byte prefixes are not split", Matcher{"v", labels.MatchRegexp, []string{"é1", "è2"}}, `v=~"è2|é1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.m.String()
			if got != tc.want {
				t.Errorf("String() = %s, want %s", got, tc.want)
			}
			// It must parse, and match exactly its values.
			vs := vectorSelectors(mustParse(t, "x{"+got+"}"))
			pm := vs[0].LabelMatchers[0]
			if pm.Name != string(tc.m.Label) || pm.Type != tc.m.Type {
				t.Fatalf("parsed as %s", pm)
			}
			for _, v := range tc.m.Values {
				if !pm.Matches(v) == (tc.m.Type == labels.MatchEqual || tc.m.Type == labels.MatchRegexp) {
					t.Errorf("%s does not treat its own value %q as it should", pm, v)
				}
			}
			if tc.m.Type == labels.MatchRegexp && len(tc.m.Values) == 0 {
				for _, v := range []string{"", "a", "\x00", "\U0010FFFF"} {
					if pm.Matches(v) {
						t.Errorf("%s matches %q", pm, v)
					}
				}
			}
		})
	}
}

// TestQueryInjection sends request values that would change a query's shape
// if pasted into it: they must arrive as one literal label value each.
func TestQueryInjection(t *testing.T) {
	hostile := []string{
		`x"} or vector(1) #`,
		`x"}[5m]) or on() vector(1) or sum(up{a="`,
		`x',y="1`,
		"x`} or vector(1)",
		`a\`,
		`a\"`,
		`\"} or vector(1) #`,
		`.*`,
		`a|b`,
		`(?i)web`,
		`web-0$|.*`,
		"line\nbreak",
		`${1}`,
		`<<.Series>>`,
	}
	rules := map[string]config.DiscoveryRule{
		"LabelMatchers": docWalkthroughHTTP,
		"LabelValuesByName in double quotes": {
			SeriesQuery: "x",
			Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
				"kubernetes_namespace": {Resource: "namespace"}, "kubernetes_pod_name": {Resource: "pod"},
			}},
			MetricsQuery: `sum(rate(<<.Series>>{kubernetes_namespace=~"<<.LabelValuesByName.kubernetes_namespace>>",kubernetes_pod_name=~"<<index .LabelValuesByName "kubernetes_pod_name">>"}[2m])) by (<<.GroupBy>>)`,
		},
		"LabelValuesByName in single quotes": {
			SeriesQuery: "x",
			Resources: config.ResourceMapping{Overrides: map[string]config.GroupResource{
				"kubernetes_namespace": {Resource: "namespace"}, "kubernetes_pod_name": {Resource: "pod"},
			}},
			MetricsQuery: `sum(rate(<<.Series>>{kubernetes_namespace=~'<<.LabelValuesByName.kubernetes_namespace>>',kubernetes_pod_name=~'<<index .LabelValuesByName "kubernetes_pod_name">>'}[2m])) by (<<.GroupBy>>)`,
		},
	}
	for ruleName, rule := range rules {
		r := mustCompile(t, rule, false)
		clean, err := r.ObjectQuery("http_requests_total", Pods, "production", []string{"frontend-0"}, mustSelector(t, "verb=GET"))
		if err != nil {
			t.Fatal(err)
		}
		wantSelectors := len(vectorSelectors(mustParse(t, clean.Text)))
		for _, v := range hostile {
			for _, where := range []string{"name", "one of two names", "namespace"} {
				t.Run(ruleName+"/"+where+"/"+v, func(t *testing.T) {
					ns, names := "production", []string{"frontend-0"}
					var want []string
					switch where {
					case "name":
						names, want = []string{v}, []string{v}
					case "one of two names":
						names, want = []string{v, "frontend-0"}, []string{v, "frontend-0"}
					case "namespace":
						ns, want = v, []string{"frontend-0"}
					}
					q, err := r.ObjectQuery("http_requests_total", Pods, ns, names, mustSelector(t, "verb=GET"))
					if err != nil {
						t.Fatalf("ObjectQuery: %v", err)
					}
					vss := vectorSelectors(mustParse(t, q.Text))
					if len(vss) != wantSelectors {
						t.Fatalf("query has %d series selectors, want %d:\n%s", len(vss), wantSelectors, q.Text)
					}
					var pod, namespace *labels.Matcher
					for _, m := range vss[0].LabelMatchers {
						switch m.Name {
						case "kubernetes_pod_name":
							pod = m
						case "kubernetes_namespace":
							namespace = m
						}
					}
					if pod == nil || namespace == nil {
						t.Fatalf("matchers missing in %s", q.Text)
					}
					if !namespace.Matches(ns) || namespace.Matches(ns+"x") || namespace.Matches("x"+ns) {
						t.Errorf("namespace matcher %s does not match exactly %q", namespace, ns)
					}
					if (pod.Type == labels.MatchEqual) && pod.Value != v && where == "name" {
						t.Errorf("pod matcher value %q, want the raw %q", pod.Value, v)
					}
					for _, w := range want {
						if !pod.Matches(w) {
							t.Errorf("pod matcher %s does not match %q", pod, w)
						}
					}
					for _, other := range append(hostile, "", "frontend-1", "a", "b", "web", "x") {
						if !contains(want, other) && pod.Matches(other) {
							t.Errorf("pod matcher %s matches %q, which was not asked for", pod, other)
						}
					}
				})
			}
		}
	}
	t.Run("selector values", func(t *testing.T) {
		// Kubernetes validates selector values, so regexp metacharacters
		// other than "." cannot arrive here; they are still escaped.
		r := mustCompile(t, docQueueLag, true)
		q, err := r.ExternalQuery("queue_consumer_lag", `de"fault`, mustSelector(t, "name in (a.b,a_b,a-b)"))
		if err != nil {
			t.Fatal(err)
		}
		vs := vectorSelectors(mustParse(t, q.Text))
		if len(vs) != 1 {
			t.Fatalf("%d selectors in %s", len(vs), q.Text)
		}
		name := vs[0].LabelMatchers[0]
		for v, want := range map[string]bool{"a.b": true, "a_b": true, "a-b": true, "aXb": false, "a.bc": false} {
			if name.Matches(v) != want {
				t.Errorf("%s matches %q: %v, want %v", name, v, !want, want)
			}
		}
		if ns := vs[0].LabelMatchers[1]; ns.Value != `de"fault` {
			t.Errorf("namespace matcher value %q", ns.Value)
		}
	})
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

func TestLongNameList(t *testing.T) {
	const n = 5000
	names := make([]string, n)
	for i := range names {
		// Pods of two ReplicaSets of one Deployment, mid-rollout.
		rs := "7d9f8c6b5"
		if i%3 == 0 {
			rs = "5c6d7e8f9"
		}
		names[i] = "checkout-api-" + rs + "-" + suffix(i)
	}
	m := Matcher{Label: "pod", Type: labels.MatchRegexp, Values: names}
	got := m.String()
	naive := `pod=~"` + strings.Join(names, "|") + `"`
	if len(got) >= len(naive)*3/4 {
		t.Errorf("matcher is %d bytes, the plain alternation %d: want it at least a quarter shorter", len(got), len(naive))
	}
	pm := vectorSelectors(mustParse(t, "x{"+got+"}"))[0].LabelMatchers[0]
	for _, v := range names {
		if !pm.Matches(v) {
			t.Fatalf("does not match %q", v)
		}
	}
	for _, v := range []string{"checkout-api-7d9f8c6b5-", "checkout-api-7d9f8c6b5-zzzzz", "checkout-api-5c6d7e8f9-" + suffix(1), "checkout-api", names[0] + "x", "x" + names[0], ""} {
		if pm.Matches(v) {
			t.Errorf("matches %q", v)
		}
	}
	t.Logf("%d names: %d bytes, plain alternation %d bytes", n, len(got), len(naive))
}

// suffix is a pod-name-like random suffix, deterministic in i.
func suffix(i int) string {
	const chars = "bcdfghjklmnpqrstvwxz2456789"
	x := uint32(i)*2654435761 + 12345
	b := make([]byte, 5)
	for j := range b {
		b[j] = chars[x%uint32(len(chars))]
		x /= uint32(len(chars))
		x ^= x << 7
	}
	return string(b)
}

func BenchmarkObjectQuery(b *testing.B) {
	r := mustCompile(b, docWalkthroughHTTP, false)
	names := make([]string, 500)
	for i := range names {
		names[i] = "frontend-7d9f8c6b5-" + suffix(i)
	}
	sel := mustSelector(b, "verb=GET")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ObjectQuery("http_requests_total", Pods, "production", names, sel); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNamespaceQuery(t *testing.T) {
	tests := []struct {
		name      string
		rule      config.DiscoveryRule
		gr        schema.GroupResource
		namespace string
		selector  string
		want      string
		wantErr   string
	}{
		{
			name:      "every pod of the namespace: the resource label only has to be set",
			rule:      docContainerSeconds,
			gr:        Pods,
			namespace: "somens",
			want:      `sum(rate(container_cpu_usage_seconds_total{namespace="somens",pod!="",container!="POD"}[2m])) by (pod)`,
		},
		{
			name:      "metric selector matchers come first, as in ObjectQuery",
			rule:      docContainerSeconds,
			gr:        Pods,
			namespace: `a"b`,
			selector:  "container=app",
			want:      `sum(rate(container_cpu_usage_seconds_total{container="app",namespace="a\"b",pod!="",container!="POD"}[2m])) by (pod)`,
		},
		{
			name:    "needs a namespace",
			rule:    docContainerSeconds,
			gr:      Pods,
			wantErr: "rules[0] (^container_(.*)_seconds_total$): a namespace query needs a namespace and a namespaced resource",
		},
		{
			name: "a template that reads the names cannot have them",
			rule: config.DiscoveryRule{
				SeriesQuery:  "x",
				Resources:    config.ResourceMapping{Template: "<<.Resource>>"},
				MetricsQuery: `sum(<<.Series>>{pod=~"<<.LabelValuesByName.pod>>"}) by (pod)`,
			},
			gr:        Pods,
			namespace: "ns",
			wantErr:   "rules[0] (x): metricsQuery uses LabelValuesByName, which needs the objects' names",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCompile(t, tc.rule, false)
			if got, want := r.NamespaceQueryable(), !strings.Contains(tc.rule.MetricsQuery, "LabelValuesByName"); got != want {
				t.Errorf("NamespaceQueryable() = %v, want %v", got, want)
			}
			q, err := r.NamespaceQuery("container_cpu_usage_seconds_total", tc.gr, tc.namespace, mustSelector(t, tc.selector))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error:\n got %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.Text != tc.want {
				t.Errorf("query:\n got %s\nwant %s", q.Text, tc.want)
			}
			if q.ResourceLabel != "pod" {
				t.Errorf("ResourceLabel = %q, want pod", q.ResourceLabel)
			}
		})
	}
}
