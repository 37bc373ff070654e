package provider_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	promcollector "github.com/gantry-dev/gantry/collectors/prometheus"
)

// TestTenantFollowsRequestNamespace: with a backend that keeps each
// tenant's data apart (and ignores the query's matchers, as a tenant's
// data is all it sees), a request made in namespace a is answered from a's
// tenant only — a pod of b's tenant is a 404 from a, even for a rule whose
// query names namespace="b" — and a namespace without a tenant is refused
// before anything is sent. Requests of two tenants that render the same
// query text never share an answer.
func TestTenantFollowsRequestNamespace(t *testing.T) {
	api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
		tenant := r.Header.Get("X-Scope-OrgID")
		value := map[string]string{"team-a": "1", "team-b": "2"}[tenant]
		if value == "" {
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
			return
		}
		// Each tenant holds the pod "web" and its own pod.
		pod := strings.TrimPrefix(tenant, "team-") + "-only"
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web"},"value":[1,"%s"]},{"metric":{"pod":%q},"value":[1,"%s"]}]}}`, value, pod, value)
	})
	tenancy := &backend.Tenancy{Header: "X-Scope-OrgID", ByNamespace: map[string]string{"a": "team-a", "b": "team-b"}}
	client, err := promcollector.New(promcollector.Options{Name: "cortex", URL: api.URL, Tenancy: tenancy}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, query := range []string{
		`sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)`,
		`sum(rate(<<.Series>>{namespace="b",<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)`,
	} {
		cfg, err := config.Parse([]byte(`backends: [{name: cortex, type: prometheus, url: "http://unused", tenant: {byNamespace: {a: team-a, b: team-b}}}]
rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  backend: cortex
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: '`+query+`'
`), "rules.yaml")
		if err != nil {
			t.Fatal(err)
		}
		mapper := testMapper()
		custom, _, _, err := rules.CompileConfig(cfg, "rules.yaml", mapper)
		if err != nil {
			t.Fatal(err)
		}
		objs := &objectList{items: map[schema.GroupResource][]*metav1.PartialObjectMetadata{
			{Resource: "pods"}: {object("a", "web"), object("a", "b-only"), object("b", "web"), object("b", "b-only"), object("c", "web")},
		}}
		p := provider.New(provider.Options{
			Registry: staticRegistry{discovery.Entry{Rule: custom[0], Series: "http_requests_total"}},
			Queriers: map[string]provider.Querier{"cortex": client}, Objects: objs, Mapper: mapper,
			ValueCacheTTL: 0,
		})
		info := cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "http_requests_per_second"}
		get := func(ns, pod string) (string, error) {
			v, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: ns, Name: pod}, info, labels.Everything())
			if err != nil {
				return "", err
			}
			return v.Value.String(), nil
		}
		if got, err := get("a", "web"); err != nil || got != "1" {
			t.Errorf("%s: a/web = %s, %v; want team-a's 1", query, got, err)
		}
		if got, err := get("b", "web"); err != nil || got != "2" {
			t.Errorf("%s: b/web = %s, %v; want team-b's 2", query, got, err)
		}
		if got, err := get("a", "b-only"); err == nil || !strings.Contains(err.Error(), "no data") {
			t.Errorf("%s: a/b-only (a series of team-b only) = %s, %v; want a 404", query, got, err)
		}
		before := len(api.Seen())
		if got, err := get("c", "web"); err == nil || !strings.Contains(err.Error(), `no tenant for namespace "c"`) {
			t.Errorf("%s: c/web (no tenant) = %s, %v; want a 404 naming the namespace", query, got, err)
		}
		if n := len(api.Seen()) - before; n != 0 {
			t.Errorf("a request without a tenant sent %d queries", n)
		}
	}
	for _, r := range api.Seen() {
		if got := r.Header.Values("X-Scope-OrgID"); len(got) != 1 {
			t.Errorf("a query went out with tenant headers %q", got)
		}
	}
}
