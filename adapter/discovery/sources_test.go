package discovery_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
)

// TestSourcesListOnTheirOwnBackend: rules of different sources that share a
// selector's text are listed on their own backend, and a source with no
// backend fails its rules only.
func TestSourcesListOnTheirOwnBackend(t *testing.T) {
	custom, external := compile(t, `
rules:
- seriesQuery: 'up{namespace!="",pod!=""}'
  resources: {template: "<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: 'up{namespace!="",pod!=""}'
  source: local
  resources: {template: "<<.Resource>>"}
  name: {as: local_up}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{app="web"}'
  logqlQuery: 'sum(rate({<<.LabelMatchers>>}[1m]))'
  name: {as: web_lines_per_second}
- seriesQuery: 'kube_pod_info'
  source: local
  name: {as: pods_known}
  metricsQuery: 'count(<<.Series>>{<<.LabelMatchers>>})'
`)
	prom, local, loki := &fakeLister{}, &fakeLister{}, &fakeLister{}
	prom.set(`up{namespace!="",pod!=""}`, []model.LabelSet{labelSet("__name__", "up", "namespace", "a", "pod", "p")}, nil)
	// The local store has the selector's series on nodes only: its rule
	// must not see Prometheus' pod series.
	local.set(`up{namespace!="",pod!=""}`, nil, nil)
	local.set(`kube_pod_info`, []model.LabelSet{labelSet("__name__", "kube_pod_info", "namespace", "a")}, nil)
	loki.set(`{app="web"}`, []model.LabelSet{labelSet("app", "web", "namespace", "shop")}, nil)

	reg := discovery.New(discovery.Options{
		Rules: custom, ExternalRules: external,
		Lister:  prom,
		Listers: map[string]discovery.SeriesLister{config.SourceLocal: local, config.SourceLoki: loki},
		Mapper:  testMapper(),
	})
	if err := reg.Relist(context.Background()); err != nil {
		t.Fatalf("Relist: %v", err)
	}
	want := []provider.CustomMetricInfo{
		{GroupResource: namespaces, Metric: "up"},
		{GroupResource: pods, Namespaced: true, Metric: "up"},
	}
	if diff := cmp.Diff(want, sortedInfos(reg.CustomMetrics())); diff != "" {
		t.Errorf("custom metrics (-want +got):\n%s", diff)
	}
	wantExt := []provider.ExternalMetricInfo{{Metric: "pods_known"}, {Metric: "web_lines_per_second"}}
	if diff := cmp.Diff(wantExt, reg.ExternalMetrics()); diff != "" {
		t.Errorf("external metrics (-want +got):\n%s", diff)
	}
	if e, ok := reg.LookupExternal("web_lines_per_second"); !ok || e.Rule.Source != config.SourceLoki {
		t.Errorf("web_lines_per_second: entry %+v, %v; want the loki rule", e, ok)
	}

	// Without a Loki backend, the Loki rule fails and names it; the others
	// are still served.
	reg = discovery.New(discovery.Options{
		Rules: custom, ExternalRules: external,
		Lister:  prom,
		Listers: map[string]discovery.SeriesLister{config.SourceLocal: local},
		Mapper:  testMapper(),
	})
	err := reg.Relist(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no loki backend is configured") {
		t.Errorf("Relist error = %v; want one naming the missing loki backend", err)
	}
	if _, ok := reg.LookupExternal("pods_known"); !ok {
		t.Errorf("pods_known not served after another source failed")
	}
}
