package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/collectors/backend"
)

const backendsRule = `
rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  backend: %s
  resources: {template: <<.Resource>>}
  metricsQuery: sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)
`

func TestBackends(t *testing.T) {
	good := `backends:
- name: thanos
  type: prometheus
  urls: [http://thanos-a:9090, http://thanos-b:9090/]
  timeout: 5s
  http:
    authorization: {credentials_file: /var/run/secrets/token}
    tls_config: {ca_file: /etc/ca.pem}
  tenant:
    header: thanos-tenant
    byNamespace: {shop: team-shop}
    template: team-$namespace
- name: logs
  type: loki
  url: http://loki:3100
  tenant: {fixed: infra}
` + strings.Replace(backendsRule, "%s", "thanos", 1)
	cfg, err := Parse([]byte(good), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	thanos := cfg.Lookup("thanos")
	if thanos == nil || cfg.Rules[0].SourceOrDefault() != "thanos" {
		t.Fatalf("rule backend not resolved: %+v", cfg.Rules[0])
	}
	if got := thanos.Members(); !cmp.Equal(got, []string{"http://thanos-a:9090", "http://thanos-b:9090/"}) {
		t.Errorf("members = %v", got)
	}
	if thanos.HTTP.Client().Authorization.CredentialsFile != "/var/run/secrets/token" || thanos.HTTP.Redirects() != backend.SameOrigin {
		t.Errorf("http config not decoded: %+v", thanos.HTTP)
	}
	tn := thanos.Tenancy()
	if tn.Header != "thanos-tenant" {
		t.Errorf("tenant header = %q, want it as written", tn.Header)
	}
	if got, _ := tn.Of("shop"); got != "team-shop" {
		t.Errorf("shop's tenant = %q", got)
	}
	if got, _ := tn.Of("web"); got != "team-web" {
		t.Errorf("web's tenant = %q", got)
	}
	if got := cfg.Lookup("logs").Tenancy(); got.Header != DefaultTenantHeader || got.Fixed != "infra" {
		t.Errorf("loki tenancy = %+v", got)
	}

	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{{
		name: "a rule naming an unknown backend",
		yaml: "backends: [{name: thanos, type: prometheus, url: 'http://t:9090'}]\n" + strings.Replace(backendsRule, "%s", "thanoss", 1),
		want: []string{`t.yaml: rules[0] (http_requests_total): backend: unknown backend "thanoss" (backends: thanos)`},
	}, {
		name: "a PromQL rule on a Loki backend",
		yaml: "backends: [{name: logs, type: loki, url: 'http://l:3100'}]\n" + strings.Replace(backendsRule, "%s", "logs", 1),
		want: []string{`t.yaml: rules[0] (http_requests_total): backend: "logs" is a loki backend; a metricsQuery (PromQL) rule needs a prometheus backend`},
	}, {
		name: "inline secrets and unknown HTTP fields",
		yaml: "backends:\n- name: a\n  type: prometheus\n  url: http://a\n  http: {basic_auth: {username: u, password: p}}\n- name: b\n  type: prometheus\n  url: http://b\n  http: {bearer_tokn: x}\n",
		want: []string{
			`t.yaml:5: backends[0] (a): http: inline secrets are not accepted: basic_auth.password (use password_file)`,
			`t.yaml:9: backends[1] (b): http: field bearer_tokn not found`,
		},
	}, {
		name: "names, types and URLs",
		yaml: "backends:\n- {name: prometheus, type: prometheus, url: 'http://a'}\n- {name: x, type: mimir, urls: ['http://a', 'ftp://b']}\n- {name: x, type: loki}\n",
		want: []string{
			`t.yaml: backends[0] (prometheus): name: "prometheus" is the backend the flags define; choose another name`,
			`t.yaml: backends[1] (x): type: expected "prometheus" (any Prometheus-compatible API: Prometheus, Thanos, Cortex, Mimir) or "loki", got "mimir"`,
			`t.yaml: backends[1] (x): urls URL "ftp://b": expected http(s)://host[:port][/path]`,
			`t.yaml: backends[2] (x): name: "x" is also backends[1]`,
			`t.yaml: backends[2] (x): url: required: the backend's base URL, such as http://thanos-query.monitoring:9090`,
		},
	}, {
		name: "tenants that could mix",
		yaml: "backends:\n- {name: a, type: prometheus, url: 'http://a', tenant: {fixed: t, byNamespace: {x: y}}}\n- {name: b, type: prometheus, url: 'http://b', tenant: {template: team}}\n- {name: c, type: prometheus, url: 'http://c', tenant: {header: X-Scope-OrgID, fixed: t}, http: {http_headers: {x-scope-orgid: {files: [/f]}}}}\n- {name: d, type: prometheus, url: 'http://d', tenant: {}}\n",
		want: []string{
			`t.yaml: backends[0] (a): tenant: fixed is every request's tenant: set it alone, or map namespaces with byNamespace/template`,
			`t.yaml: backends[1] (b): tenant.template: "team" does not contain $namespace: every namespace would share one tenant (use fixed)`,
			`t.yaml: backends[2] (c): http.http_headers: x-scope-orgid is the tenant header; set the tenant under tenant:`,
			`t.yaml: backends[3] (d): tenant: set fixed, byNamespace, template or cluster`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "t.yaml")
			if diff := cmp.Diff(tc.want, errLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}
