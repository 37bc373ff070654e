package deploy_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/test/cluster"
)

// crdVersion returns the CRD's one version, as a map.
func crdVersion(t *testing.T, crd *unstructured.Unstructured) map[string]any {
	t.Helper()
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) != 1 {
		t.Fatalf("CRD %s has %d versions, want 1", crd.GetName(), len(versions))
	}
	return versions[0].(map[string]any)
}

// TestMetricRuleCRD checks the CRD's names, printer columns and the
// schema's shape against the contract of the MetricRule resource; the
// kube-apiserver checks the schema itself (TestMetricRuleCRDOnAPIServer).
func TestMetricRuleCRD(t *testing.T) {
	m := load(t)
	crd := m.find("CustomResourceDefinition", "", deploy.MetricRuleCRD)
	if crd == nil {
		t.Fatalf("no CustomResourceDefinition %s", deploy.MetricRuleCRD)
	}
	checkMetricRuleCRD(t, crd)
}

func checkMetricRuleCRD(t *testing.T, crd *unstructured.Unstructured) {
	t.Helper()
	spec, _, _ := unstructured.NestedMap(crd.Object, "spec")
	if spec["group"] != "gantry.dev" || spec["scope"] != "Namespaced" {
		t.Errorf("group %v scope %v, want gantry.dev Namespaced", spec["group"], spec["scope"])
	}
	names, _, _ := unstructured.NestedMap(spec, "names")
	wantNames := map[string]any{"kind": "MetricRule", "listKind": "MetricRuleList", "plural": "metricrules", "singular": "metricrule", "shortNames": []any{"mrule"}, "categories": []any{"gantry"}}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	v := crdVersion(t, crd)
	if v["name"] != "v1alpha1" || v["served"] != true || v["storage"] != true {
		t.Errorf("version %v served %v storage %v, want v1alpha1 served and stored", v["name"], v["served"], v["storage"])
	}
	if _, ok, _ := unstructured.NestedMap(v, "subresources", "status"); !ok {
		t.Error("no status subresource: a team's apply could overwrite Gantry's status")
	}
	var cols []string
	columns, _, _ := unstructured.NestedSlice(v, "additionalPrinterColumns")
	for _, c := range columns {
		c := c.(map[string]any)
		cols = append(cols, strings.ToUpper(c["name"].(string))+" "+c["jsonPath"].(string))
	}
	wantCols := []string{
		`READY .status.conditions[?(@.type=="Ready")].status`,
		"METRICS .status.metricCount",
		"MESSAGE .status.message",
		"AGE .metadata.creationTimestamp",
	}
	if diff := cmp.Diff(wantCols, cols); diff != "" {
		t.Errorf("printer columns (-want +got):\n%s", diff)
	}

	schema, _, _ := unstructured.NestedMap(v, "schema", "openAPIV3Schema")
	props, _, _ := unstructured.NestedMap(schema, "properties", "spec", "properties")
	if got := slices.Sorted(maps.Keys(props)); !slices.Equal(got, []string{"externalRules", "rules"}) {
		t.Errorf("spec fields %v, want rules and externalRules only (resourceRules and backends are cluster-only)", got)
	}
	rules, _, _ := unstructured.NestedMap(props, "rules")
	external, _, _ := unstructured.NestedMap(props, "externalRules")
	if diff := cmp.Diff(rules["items"], external["items"]); diff != "" {
		t.Errorf("rules and externalRules entries differ (-rules +externalRules):\n%s", diff)
	}
	for name, list := range map[string]map[string]any{"rules": rules, "externalRules": external} {
		if n, ok := list["maxItems"].(int64); !ok || n <= 0 {
			t.Errorf("spec.%s has no maxItems", name)
		}
	}
	rule, _ := rules["items"].(map[string]any)
	ruleProps, _, _ := unstructured.NestedMap(rule, "properties")
	wantFields := []string{"backend", "logqlQuery", "metricsQuery", "name", "resources", "seriesFilters", "seriesQuery", "source", "window"}
	if got := slices.Sorted(maps.Keys(ruleProps)); !slices.Equal(got, wantFields) {
		t.Errorf("rule fields %v, want the config file's %v", got, wantFields)
	}
	if req, _, _ := unstructured.NestedStringSlice(rule, "required"); !slices.Equal(req, []string{"seriesQuery"}) {
		t.Errorf("rule requires %v, want seriesQuery", req)
	}
	statusProps, _, _ := unstructured.NestedMap(schema, "properties", "status", "properties")
	wantStatus := []string{"conditions", "lastDiscoveryTime", "message", "metricCount", "metrics", "observedGeneration"}
	if got := slices.Sorted(maps.Keys(statusProps)); !slices.Equal(got, wantStatus) {
		t.Errorf("status fields %v, want %v", got, wantStatus)
	}
}

// TestMetricRuleWebhook checks the base's webhook registration: Gantry's
// path on the gantry Service, for MetricRule creates and updates only, and
// never blocking an apply when Gantry is down.
func TestMetricRuleWebhook(t *testing.T) {
	m := load(t)
	o := m.find("ValidatingWebhookConfiguration", "", deploy.Webhook)
	if o == nil {
		t.Fatalf("no ValidatingWebhookConfiguration %s", deploy.Webhook)
	}
	checkWebhook(t, o, deploy.Namespace, deploy.Service, deploy.ServicePort)
	if b, _, _ := unstructured.NestedSlice(o.Object, "webhooks"); len(b) > 0 {
		if ca, _, _ := unstructured.NestedString(b[0].(map[string]any), "clientConfig", "caBundle"); ca != "" {
			t.Error("the base sets the webhook's caBundle; as for the APIServices, a component or overlay does")
		}
	}
}

// checkWebhook checks a rendered ValidatingWebhookConfiguration for
// MetricRules points at the Service.
func checkWebhook(t *testing.T, o *unstructured.Unstructured, namespace, service string, port int32) {
	t.Helper()
	w := typed[admissionregistrationv1.ValidatingWebhookConfiguration](t, o)
	if len(w.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(w.Webhooks))
	}
	wh := w.Webhooks[0]
	if wh.FailurePolicy == nil || *wh.FailurePolicy != admissionregistrationv1.Ignore {
		t.Errorf("failurePolicy %v, want Ignore: a Gantry outage must not block applies", wh.FailurePolicy)
	}
	if wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("sideEffects %v, want None", wh.SideEffects)
	}
	if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds != 5 {
		t.Errorf("timeoutSeconds %v, want 5", wh.TimeoutSeconds)
	}
	if !slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("admissionReviewVersions %v, want [v1]", wh.AdmissionReviewVersions)
	}
	want := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{"gantry.dev"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"metricrules"},
			Scope: ptrTo(admissionregistrationv1.NamespacedScope),
		},
	}}
	if diff := cmp.Diff(want, wh.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	s := wh.ClientConfig.Service
	if s == nil || wh.ClientConfig.URL != nil {
		t.Fatalf("clientConfig %+v: want the Service", wh.ClientConfig)
	}
	if s.Namespace != namespace || s.Name != service || s.Port == nil || *s.Port != port || s.Path == nil || *s.Path != deploy.WebhookPath {
		t.Errorf("clientConfig.service %s/%s port %v path %v, want %s/%s port %d path %s", s.Namespace, s.Name, s.Port, s.Path, namespace, service, port, deploy.WebhookPath)
	}
}

func ptrTo[T any](v T) *T { return &v }

// checkWebhookTrust: like an APIService, the webhook must be able to verify
// Gantry's certificate: a caBundle or the cainjector annotation naming the
// serving Certificate. Webhooks cannot skip verification; where the
// APIServices do, there is no webhook (MetricRules are then checked in
// status only).
func checkWebhookTrust(t *testing.T, m manifests) {
	t.Helper()
	insecure := false
	for _, o := range m.ofKind("APIService") {
		if v, _, _ := unstructured.NestedBool(o.Object, "spec", "insecureSkipTLSVerify"); v {
			insecure = true
		}
	}
	for _, o := range m.ofKind("ValidatingWebhookConfiguration") {
		if insecure {
			t.Errorf("ValidatingWebhookConfiguration %s next to APIServices that skip TLS verification: the kube-apiserver cannot verify Gantry's self-signed certificate for it", o.GetName())
			continue
		}
		w := typed[admissionregistrationv1.ValidatingWebhookConfiguration](t, o)
		inject := o.GetAnnotations()["cert-manager.io/inject-ca-from"]
		for _, wh := range w.Webhooks {
			switch ca := wh.ClientConfig.CABundle; {
			case len(ca) > 0 && inject != "":
				t.Errorf("webhook %s: both a caBundle and the cainjector annotation", wh.Name)
			case len(ca) > 0:
				if _, err := parsePEMCert(string(ca), false); err != nil {
					t.Errorf("webhook %s: caBundle: %v", wh.Name, err)
				}
			case inject != "":
				ns, name, _ := strings.Cut(inject, "/")
				cert := m.find("Certificate", ns, name)
				if cert == nil {
					t.Errorf("webhook %s: inject-ca-from %s names no rendered Certificate", wh.Name, inject)
				} else if secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); secret != servingCertSecret(t, m) {
					t.Errorf("webhook %s: the CA is injected from Certificate %s, but Gantry serves Secret %q", wh.Name, inject, servingCertSecret(t, m))
				}
			default:
				t.Errorf("webhook %s: no caBundle and no cainjector annotation: the kube-apiserver could not verify Gantry", wh.Name)
			}
		}
	}
}

// The MetricRules the CRD's schema must accept, and those it must refuse
// with the message a user would see from kubectl apply.
var (
	validMetricRules = []struct{ name, spec string }{
		{"a prometheus-adapter rule pasted unchanged", `
  rules:
    - seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
      seriesFilters:
        - isNot: "^.*_bucket$"
      resources:
        overrides:
          namespace: {resource: namespace}
          pod: {resource: pod}
      name:
        matches: "^(.*)_total$"
        as: "${1}_per_second"
      metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`},
		{"an external rule on a named backend with a window", `
  externalRules:
    - seriesQuery: '{__name__="queue_messages_ready"}'
      resources: {template: "<<.Resource>>", namespaced: true}
      metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
      backend: thanos-eu
      window: 1m30s
`},
		{"a LogQL rule", `
  rules:
    - seriesQuery: '{app="web"}'
      resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
      name: {as: web_errors_per_second}
      logqlQuery: 'sum by (<<.GroupBy>>) (rate({<<.LabelMatchers>>} |= "error" [1m]))'
      source: loki
`},
	}
	invalidMetricRules = []struct{ name, spec, wantErr string }{
		{"no rules at all", `
  rules: []
`, "set at least one entry in rules or externalRules"},
		{"no seriesQuery", `
  rules:
    - metricsQuery: 'sum(<<.Series>>)'
`, `spec.rules[0].seriesQuery: Required value`},
		{"both queries", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      logqlQuery: 'sum(rate({<<.LabelMatchers>>}[1m]))'
`, "spec.rules[0]: Invalid value: set exactly one of metricsQuery and logqlQuery"},
		{"neither query", `
  externalRules:
    - seriesQuery: 'up'
`, "spec.externalRules[0]: Invalid value: set exactly one of metricsQuery and logqlQuery"},
		{"a series filter with is and isNot", `
  rules:
    - seriesQuery: 'up'
      seriesFilters: [{is: "a", isNot: "b"}]
      metricsQuery: 'sum(<<.Series>>)'
`, "spec.rules[0].seriesFilters[0]: Invalid value: set exactly one of is and isNot"},
		{"an unknown source", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      source: thanos
`, `spec.rules[0].source: Unsupported value: "thanos"`},
		{"PromQL on loki", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      source: loki
`, "metricsQuery (PromQL) rules run on source prometheus or local, not loki"},
		{"a window that is not a duration", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      window: 2 minutes
`, "spec.rules[0].window: Invalid value"},
		{"an override without a resource", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      resources: {overrides: {pod: {group: ""}}}
`, "spec.rules[0].resources.overrides.pod.resource: Required value"},
		{"an override key that is not a label", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      resources: {overrides: {"kubernetes.io/pod": {resource: pod}}}
`, "keys must be label names"},
		{"a rule that would not be confined to its namespace", `
  externalRules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      resources: {namespaced: false}
`, "a MetricRule's queries are always confined to its namespace"},
		{"resourceRules, which are cluster-only", `
  resourceRules:
    cpu: {containerQuery: x}
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
`, ".spec.resourceRules: field not declared in schema"},
		{"a misspelt field", `
  rules:
    - seriesQuery: 'up'
      metricQuery: 'sum(<<.Series>>)'
`, ".spec.rules[0].metricQuery: field not declared in schema"},
		{"a backend name with capitals", `
  rules:
    - seriesQuery: 'up'
      metricsQuery: 'sum(<<.Series>>)'
      backend: Thanos
`, "spec.rules[0].backend: Invalid value"},
		{"more rules than maxItems", "\n  rules:\n" + strings.Repeat("    - {seriesQuery: up, metricsQuery: 'sum(<<.Series>>)'}\n", 51),
			"spec.rules: Too many: 51: must have at most 50 items"},
	}
)

func metricRule(namespace, name, spec string) []byte {
	return []byte("apiVersion: gantry.dev/v1alpha1\nkind: MetricRule\nmetadata:\n  name: " + name + "\n  namespace: " + namespace + "\nspec:" + spec)
}

// TestMetricRuleCRDOnAPIServer installs the CRD and the RBAC of
// MetricRules and the diagnostics API on a real kube-apiserver, with
// kube-controller-manager's ClusterRole aggregation running, and checks
// what users meet: the schema accepts valid MetricRules and refuses
// structurally wrong ones with a message naming the field, kubectl get
// shows READY, METRICS and MESSAGE from the status, the status cannot be
// written through the main resource, and namespace admins, editors and
// viewers get the access the roles promise in their namespace only.
func TestMetricRuleCRDOnAPIServer(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{
		// --controllers adds to the harness' list.
		ControllerManagerFlags: []string{"--controllers=clusterrole-aggregation-controller"},
	})
	k := newKubectl(t, c.KubeconfigPath())
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", deploy.MetricRuleFile, "rbac-metricrules.yaml", "rbac-diagnostics.yaml"} {
		data, err := deploy.File(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := k.run(data, "apply", "--server-side", "--validate=strict", "-f", "-"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := k.run(nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+deploy.MetricRuleCRD); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		ensureNamespace(t, c, ns)
	}

	t.Run("schema", func(t *testing.T) {
		for _, tc := range validMetricRules {
			t.Run(tc.name, func(t *testing.T) {
				if _, _, err := k.run(metricRule("team-a", "valid", tc.spec), "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-"); err != nil {
					t.Error(err)
				}
			})
		}
		for _, tc := range invalidMetricRules {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := k.run(metricRule("team-a", "invalid", tc.spec), "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-")
				if err == nil {
					t.Fatalf("the kube-apiserver accepts it:%s", tc.spec)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error does not contain %q:\n%v", tc.wantErr, err)
				}
			})
		}
	})

	t.Run("status and printer columns", func(t *testing.T) {
		if _, _, err := k.run(metricRule("team-a", "web", validMetricRules[0].spec), "apply", "--server-side", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		// A team's apply cannot set the status: the subresource drops it.
		withStatus := string(metricRule("team-a", "web", validMetricRules[0].spec)) + "status:\n  message: forged\n"
		if _, _, err := k.run([]byte(withStatus), "apply", "--server-side", "-f", "-"); err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC().Format(time.RFC3339)
		status := `{"status":{"observedGeneration":1,"message":"","metricCount":2,"lastDiscoveryTime":"` + now + `",` +
			`"conditions":[{"type":"Accepted","status":"True","reason":"Compiled","message":"","lastTransitionTime":"` + now + `"},` +
			`{"type":"Ready","status":"True","reason":"Discovered","message":"2 metrics","lastTransitionTime":"` + now + `"}],` +
			`"metrics":[{"name":"http_requests_per_second","resource":"pods","objects":3},{"name":"http_requests_per_second","resource":"namespaces","objects":1}]}}`
		if _, _, err := k.run(nil, "patch", "metricrule", "web", "-n", "team-a", "--subresource=status", "--type=merge", "-p", status); err != nil {
			t.Fatal(err)
		}
		out, _, err := k.run(nil, "get", "mrule", "-n", "team-a")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			t.Fatalf("kubectl get mrule:\n%s", out)
		}
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"NAME", "READY", "METRICS", "MESSAGE", "AGE"}) {
			t.Errorf("columns %v, want NAME READY METRICS MESSAGE AGE", got)
		}
		if got := strings.Fields(lines[1]); len(got) < 3 || got[0] != "web" || got[1] != "True" || got[2] != "2" {
			t.Errorf("row %q, want web True 2", lines[1])
		}
		if strings.Contains(string(out), "forged") {
			t.Errorf("a status set through the main resource was kept:\n%s", out)
		}

		bad := `{"status":{"conditions":[{"type":"Ready","status":"Maybe","reason":"X","message":"","lastTransitionTime":"` + now + `"}]}}`
		if _, _, err := k.run(nil, "patch", "metricrule", "web", "-n", "team-a", "--subresource=status", "--type=merge", "-p", bad); err == nil || !strings.Contains(err.Error(), `Unsupported value: "Maybe"`) {
			t.Errorf("a condition status Maybe: %v", err)
		}
	})

	t.Run("aggregated roles", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, b := range []struct{ user, role string }{{"alice", "admin"}, {"erin", "edit"}, {"victor", "view"}} {
			rb := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: b.user, Namespace: "team-a"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: b.role},
				Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: b.user}},
			}
			if _, err := c.Client().RbacV1().RoleBindings("team-a").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		sa := "system:serviceaccount:" + deploy.Namespace + ":" + deploy.ServiceAccount
		for _, tc := range []struct {
			user, verb, group, resource, sub, namespace string
			want                                        bool
		}{
			{"alice", "create", "gantry.dev", "metricrules", "", "team-a", true},
			{"alice", "delete", "gantry.dev", "metricrules", "", "team-a", true},
			{"alice", "update", "gantry.dev", "metricrules", "status", "team-a", false},
			{"alice", "create", "gantry.dev", "metricrules", "", "team-b", false},
			{"alice", "get", "diagnostics.gantry.dev", "hpaexplanations", "", "team-a", true},
			{"erin", "patch", "gantry.dev", "metricrules", "", "team-a", true},
			{"erin", "get", "diagnostics.gantry.dev", "metricexplanations", "", "team-a", true},
			{"victor", "list", "gantry.dev", "metricrules", "", "team-a", true},
			{"victor", "create", "gantry.dev", "metricrules", "", "team-a", false},
			{"victor", "get", "diagnostics.gantry.dev", "hpaexplanations", "", "team-a", true},
			{"victor", "get", "diagnostics.gantry.dev", "hpaexplanations", "", "team-b", false},
			{"victor", "get", "diagnostics.gantry.dev", "statuses", "", "", false},
			{sa, "watch", "gantry.dev", "metricrules", "", "", true},
			{sa, "patch", "gantry.dev", "metricrules", "status", "team-b", true},
			{sa, "update", "gantry.dev", "metricrules", "", "team-b", false},
			{sa, "list", "autoscaling", "horizontalpodautoscalers", "", "", true},
			{sa, "list", "apiregistration.k8s.io", "apiservices", "", "", true},
			{sa, "get", "apps", "deployments", "scale", "team-a", true},
			{sa, "update", "apps", "deployments", "scale", "team-a", false},
		} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: tc.user,
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: tc.namespace, Verb: tc.verb, Group: tc.group, Resource: tc.resource, Subresource: tc.sub,
				},
			}}
			if strings.HasPrefix(tc.user, "system:serviceaccount:") {
				sar.Spec.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + deploy.Namespace, "system:authenticated"}
			}
			// Aggregation is a controller's work: wait for what should be
			// granted, then require the answer. Each role's grants come
			// before its refusals in the table, so a refusal is checked
			// once the role has aggregated.
			var allowed bool
			for {
				res, err := c.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				allowed = res.Status.Allowed
				if allowed == tc.want || !tc.want || ctx.Err() != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			what := tc.verb + " " + tc.resource
			if tc.sub != "" {
				what += "/" + tc.sub
			}
			if allowed != tc.want {
				t.Errorf("%s may %s.%s in namespace %q: %v, want %v", tc.user, what, tc.group, tc.namespace, allowed, tc.want)
			}
		}
	})
}
