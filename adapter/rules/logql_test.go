package rules

import (
	"testing"
	"time"

	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/gantry-dev/gantry/adapter/config"
)

// TestLogQLRule covers what differs for logqlQuery rules: the backend, the
// fixed metric name, the window read from LogQL ranges, and queries built
// from escaped matchers without a PromQL parse.
func TestLogQLRule(t *testing.T) {
	r := mustCompile(t, config.DiscoveryRule{
		SeriesQuery: `{app="web",namespace!="",pod!=""}`,
		LogQLQuery:  `sum by (<<.GroupBy>>) (rate({<<.LabelMatchers>>} |= "error" [2m]))`,
		Resources:   config.ResourceMapping{Template: "<<.Resource>>"},
		Name:        config.NameMapping{As: "log_errors_per_second"},
	}, false)
	if r.Source != config.SourceLoki || !r.LogQL {
		t.Errorf("Source, LogQL = %q, %v; want loki, true", r.Source, r.LogQL)
	}
	if r.Window != 2*time.Minute {
		t.Errorf("Window = %v, want 2m (the query's range)", r.Window)
	}
	// Streams have no __name__: discovery passes the empty series name.
	if name, ok := r.MetricName(""); !ok || name != "log_errors_per_second" {
		t.Errorf(`MetricName("") = %q, %v; want log_errors_per_second, true`, name, ok)
	}
	q, err := r.ObjectQuery("", Pods, "shop", []string{"web-1", `x"} or vector(1) #`}, k8slabels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	want := `sum by (pod) (rate({namespace="shop",pod=~"web-1|x\"\\} or vector\\(1\\) #"} |= "error" [2m]))`
	if q.Text != want {
		t.Errorf("query\n got: %s\nwant: %s", q.Text, want)
	}
	if err := config.CheckLogQL(q.Text); err != nil {
		t.Errorf("rendered query fails the structural check: %v", err)
	}
}

func TestLogQLExternalRule(t *testing.T) {
	r := mustCompile(t, config.DiscoveryRule{
		SeriesQuery: `{app="web"}`,
		Source:      config.SourceLoki,
		LogQLQuery:  `sum(count_over_time({app="web",<<.LabelMatchers>>} [30s])) / 30`,
		Resources:   config.ResourceMapping{Namespaced: new(true)},
		Name:        config.NameMapping{As: "web_lines_per_second"},
	}, true)
	sel, err := k8slabels.Parse(`level in (error,fatal),host!=a`)
	if err != nil {
		t.Fatal(err)
	}
	q, err := r.ExternalQuery("", "shop", sel)
	if err != nil {
		t.Fatal(err)
	}
	if err := config.CheckLogQL(q.Text); err != nil {
		t.Errorf("rendered query fails the structural check: %v\n%s", err, q.Text)
	}
	want := `sum(count_over_time({app="web",host!="a",level=~"error|fatal",namespace="shop"} [30s])) / 30`
	if q.Text != want {
		t.Errorf("query\n got: %s\nwant: %s", q.Text, want)
	}
	if r.Window != 30*time.Second {
		t.Errorf("Window = %v, want 30s", r.Window)
	}
}
