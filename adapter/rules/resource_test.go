package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"

	"github.com/gantry-dev/gantry/adapter/config"
)

// cadvisorResourceRules are resourceRules as commonly written for cAdvisor
// and node-exporter series.
func cadvisorResourceRules() *config.ResourceRules {
	overrides := config.ResourceMapping{Overrides: map[string]config.GroupResource{
		"namespace": {Resource: "namespace"},
		"pod":       {Resource: "pod"},
		"node":      {Resource: "node"},
	}}
	return &config.ResourceRules{
		CPU: config.ResourceRule{
			ContainerQuery: `sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!="",container!="POD"}[3m]))`,
			NodeQuery:      `sum by (<<.GroupBy>>) (rate(node_cpu_seconds_total{<<.LabelMatchers>>,mode!="idle"}[3m]))`,
			Resources:      overrides,
			ContainerLabel: "container",
		},
		Memory: config.ResourceRule{
			ContainerQuery: `sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!="",container!="POD"})`,
			NodeQuery:      `sum by (<<.GroupBy>>) (node_memory_MemTotal_bytes{<<.LabelMatchers>>} - node_memory_MemAvailable_bytes{<<.LabelMatchers>>})`,
			Resources:      config.ResourceMapping{Template: "<<.Resource>>"},
			ContainerLabel: "container",
		},
		Window: config.Duration(3 * time.Minute),
	}
}

func TestCompileResourceRules(t *testing.T) {
	t.Run("nil in, nil out", func(t *testing.T) {
		rr, err := CompileResourceRules(nil, testMapper())
		if rr != nil || err != nil {
			t.Errorf("CompileResourceRules(nil) = %v, %v", rr, err)
		}
	})
	t.Run("fields", func(t *testing.T) {
		rr, err := CompileResourceRules(cadvisorResourceRules(), testMapper())
		if err != nil {
			t.Fatal(err)
		}
		if rr.Window != 3*time.Minute || rr.CPU.ID != "resourceRules.cpu" || rr.Memory.ID != "resourceRules.memory" || rr.CPU.ContainerLabel != "container" {
			t.Errorf("compiled %+v", rr)
		}
	})
	t.Run("both resources' errors at once", func(t *testing.T) {
		in := cadvisorResourceRules()
		in.CPU.ContainerQuery = "<<.Series"
		in.Memory.Resources = config.ResourceMapping{Overrides: map[string]config.GroupResource{"pod": {Resource: "gadget"}}}
		in.Memory.NodeQuery = "<<end>>"
		_, err := CompileResourceRules(in, testMapper())
		want := "resourceRules.cpu: containerQuery: not a valid template: line 1: unclosed action\n" +
			"resourceRules.memory: resources: overrides.pod: resource \"gadget\" not known to the cluster: no matches for /, Resource=gadget\n" +
			"nodeQuery: not a valid template: line 1: unexpected {{end}}"
		if err == nil {
			t.Fatal("no error")
		}
		if diff := cmp.Diff(want, err.Error()); diff != "" {
			t.Errorf("error (-want +got):\n%s", diff)
		}
	})
}

func TestContainerQuery(t *testing.T) {
	rr, err := CompileResourceRules(cadvisorResourceRules(), testMapper())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		rq        ResourceQuery
		namespace string
		pods      []string
		want      string
	}{
		{
			name:      "cpu of two pods in a namespace",
			rq:        rr.CPU,
			namespace: "shop",
			pods:      []string{"cart-0", "cart-1"},
			want:      `sum by (namespace,pod,container) (rate(container_cpu_usage_seconds_total{namespace="shop",pod=~"cart-(?:0|1)",container!="",container!="POD"}[3m]))`,
		},
		{
			name:      "memory of one pod, labels from the template",
			rq:        rr.Memory,
			namespace: "shop",
			pods:      []string{"cart-0"},
			want:      `sum by (namespace,pod,container) (container_memory_working_set_bytes{namespace="shop",pod="cart-0",container!="",container!="POD"})`,
		},
		{
			name: "all namespaces: no namespace matcher, still grouped by namespace",
			rq:   rr.CPU,
			pods: []string{"cart-0", "db-0"},
			want: `sum by (namespace,pod,container) (rate(container_cpu_usage_seconds_total{pod=~"cart-0|db-0",container!="",container!="POD"}[3m]))`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, nsLabel, err := tc.rq.ContainerQuery(tc.namespace, tc.pods)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, q.Text); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if nsLabel != "namespace" || q.ResourceLabel != "pod" {
				t.Errorf("labels: namespace %q, resource %q", nsLabel, q.ResourceLabel)
			}
			mustParse(t, q.Text)
		})
	}
	t.Run("no pods", func(t *testing.T) {
		_, _, err := rr.CPU.ContainerQuery("shop", nil)
		if err == nil || err.Error() != "resourceRules.cpu: no objects to query" {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("no pod label", func(t *testing.T) {
		in := cadvisorResourceRules()
		in.CPU.Resources = config.ResourceMapping{Overrides: map[string]config.GroupResource{"namespace": {Resource: "namespace"}, "instance": {Resource: "node"}}}
		rr, err := CompileResourceRules(in, testMapper())
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = rr.CPU.ContainerQuery("shop", []string{"a"})
		want := `resourceRules.cpu: no label is mapped to resource "pods" (add it to the rule's resources.overrides or set resources.template)`
		if err == nil || err.Error() != want {
			t.Errorf("error = %v, want %s", err, want)
		}
	})
}

func TestNodeQuery(t *testing.T) {
	rr, err := CompileResourceRules(cadvisorResourceRules(), testMapper())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		rq    ResourceQuery
		nodes []string
		want  string
	}{
		{
			name:  "one node",
			rq:    rr.CPU,
			nodes: []string{"ip-10-0-1-17.ec2.internal"},
			want:  `sum by (node) (rate(node_cpu_seconds_total{node="ip-10-0-1-17.ec2.internal",mode!="idle"}[3m]))`,
		},
		{
			name:  "many nodes, dots escaped, matchers in both operands",
			rq:    rr.Memory,
			nodes: []string{"ip-10-0-1-17.ec2.internal", "ip-10-0-2-4.ec2.internal"},
			want:  `sum by (node) (node_memory_MemTotal_bytes{node=~"ip-10-0-(?:1-17\\.ec2\\.internal|2-4\\.ec2\\.internal)"} - node_memory_MemAvailable_bytes{node=~"ip-10-0-(?:1-17\\.ec2\\.internal|2-4\\.ec2\\.internal)"})`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := tc.rq.NodeQuery(tc.nodes)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, q.Text); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
			if q.ResourceLabel != model.LabelName("node") {
				t.Errorf("ResourceLabel = %q", q.ResourceLabel)
			}
			for _, vs := range vectorSelectors(mustParse(t, q.Text)) {
				m := vs.LabelMatchers[0]
				for _, n := range tc.nodes {
					if !m.Matches(n) {
						t.Errorf("%s does not match %q", m, n)
					}
				}
				if m.Matches(strings.ReplaceAll(tc.nodes[0], ".", "x")) {
					t.Errorf("%s matches a look-alike", m)
				}
			}
		})
	}
	t.Run("empty node name", func(t *testing.T) {
		_, err := rr.CPU.NodeQuery([]string{""})
		if err == nil || err.Error() != "resourceRules.cpu: an object name is empty" {
			t.Errorf("error = %v", err)
		}
	})
}
