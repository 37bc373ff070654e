package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// chartDir is the chart, relative to this package.
const chartDir = "helm/gantry"

// helm runs the real helm that `make tools` builds, with its cache, config
// and data directories in a temporary directory (no state in $HOME).
type helm struct {
	bin string
	env []string
}

// newHelm finds bin/helm; a missing binary fails the test with the hint to
// run `make tools` (in -short mode, the test is skipped).
func newHelm(t *testing.T) helm {
	t.Helper()
	bin, err := toolbin.Path(toolbin.Require(t, "helm"), "helm")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	env := append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		// No cluster: template, lint and client-side dry runs need none,
		// and must not read the user's.
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	return helm{bin: bin, env: env}
}

// run runs helm with args and returns its stdout, and its stderr as part of
// the error if it fails.
func (h helm) run(args ...string) ([]byte, error) {
	cmd := exec.Command(h.bin, args...)
	cmd.Env = h.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, errors.New("helm " + strings.Join(args, " ") + ": " + err.Error() + "\n" + stderr.String())
	}
	return out, nil
}

// release is one installation of the chart: where, and with what values.
type release struct {
	name, namespace string
	// values is a values file's content; "" uses the defaults.
	values string
	// files are values read from files (helm --set-file), by values path:
	// the file's content.
	files map[string]string
}

// args returns the arguments after `helm template` or `helm lint`, writing
// the values to a file.
func (r release) args(t *testing.T) []string {
	t.Helper()
	var args []string
	if r.values != "" {
		args = append(args, "--values", tempFile(t, r.values))
	}
	for _, k := range slices.Sorted(maps.Keys(r.files)) {
		args = append(args, "--set-file", k+"="+tempFile(t, r.files[k]))
	}
	return args
}

// tempFile writes content to a file removed after the test. Not in
// t.TempDir(): its path holds the test's name, and helm splits --values and
// --set-file at commas.
func tempFile(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp("", "gantry-helm-test-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// template renders the chart as `helm install` would, and fails the test
// if helm does.
func (h helm) template(t *testing.T, r release) []byte {
	t.Helper()
	chart, err := filepath.Abs(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"template", r.name, chart, "--namespace", r.namespace}, r.args(t)...)
	out, err := h.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeAll splits a multi-document YAML stream (helm template, kubectl
// kustomize) into objects, skipping documents holding only comments.
func decodeAll(t *testing.T, data []byte) manifests {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return manifests{objs}
		}
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if trimmed := bytes.TrimSpace(j); len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		objs = append(objs, u)
	}
}

// keys names every object as "Kind namespace/name", sorted.
func keys(m manifests) []string {
	var out []string
	for _, o := range m.objs {
		out = append(out, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// defaultRelease renders the objects of the kustomize base: release gantry
// in namespace gantry, with the Namespace.
var defaultRelease = release{name: "gantry", namespace: deploy.Namespace, values: "createNamespace: true\n"}

func TestHelmLint(t *testing.T) {
	h := newHelm(t)
	chart, err := filepath.Abs(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := h.run("lint", "--strict", chart); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The combinations TestHelmTemplate renders lint cleanly too.
	for _, tc := range templateCases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chart, "--namespace", tc.release.namespace}, tc.release.args(t)...)
			if out, err := h.run(args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// templateCases are value combinations, each with what must hold of its
// objects beyond what every rendering must satisfy (checkCommon).
var templateCases = []struct {
	name    string
	release release
	check   func(t *testing.T, r release, m manifests)
}{
	{
		name:    "defaults are the kustomize base with cert-manager",
		release: defaultRelease,
		check:   checkMatchesBase,
	},
	{
		name:    "defaults without the namespace",
		release: release{name: "gantry", namespace: deploy.Namespace},
		check: func(t *testing.T, r release, m manifests) {
			if ns := m.ofKind("Namespace"); len(ns) > 0 {
				t.Errorf("createNamespace is false, but the chart renders %v", keys(manifests{ns}))
			}
			wantAPIServices(t, m, append(deploy.APIServices, deploy.DiagnosticsAPIService)...)
		},
	},
	{
		name: "only custom metrics registered",
		release: release{name: "gantry", namespace: "monitoring", values: `
apiServices:
  externalMetrics: false
  resourceMetrics: false
`},
		check: func(t *testing.T, r release, m manifests) {
			wantAPIServices(t, m, "v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", deploy.DiagnosticsAPIService)
			// Nor does Gantry serve metrics.k8s.io (or scrape kubelets for
			// it) unregistered.
			_, c := deploymentOf(t, m, "gantry")
			if got := flagValue(parseArgs(t, c.Args), "resource-metrics"); got != "none" {
				t.Errorf("--resource-metrics=%q, want none", got)
			}
			// kubectl top stays with metrics-server: no aggregation of
			// metrics.k8s.io to view.
			for _, o := range m.ofKind("ClusterRole") {
				r := typed[rbacv1.ClusterRole](t, o)
				if o.GetLabels()["rbac.authorization.k8s.io/aggregate-to-view"] != "" && allows(r.Rules, "metrics.k8s.io", "pods", "get") {
					t.Errorf("ClusterRole %s aggregates metrics.k8s.io to view without it registered", o.GetName())
				}
			}
		},
	},
	{
		name: "cert-manager with the chart's own CA",
		release: release{name: "adapter", namespace: "metrics", values: `
certManager:
  enabled: true
`},
		check: func(t *testing.T, r release, m manifests) {
			cert := checkCertManager(t, r, m)
			if got := len(m.ofKind("Issuer")); got != 2 {
				t.Errorf("%d Issuers, want 2 (self-signed, CA)", got)
			}
			if ref, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name"); m.find("Issuer", r.namespace, ref) == nil {
				t.Errorf("the serving certificate's issuer %q is not rendered", ref)
			}
		},
	},
	{
		name: "cert-manager with a ClusterIssuer",
		release: release{name: "gantry", namespace: "gantry", values: `
certManager:
  enabled: true
  issuerRef: {kind: ClusterIssuer, name: cluster-ca}
`},
		check: func(t *testing.T, r release, m manifests) {
			cert := checkCertManager(t, r, m)
			if n := len(m.ofKind("Issuer")); n != 0 {
				t.Errorf("%d Issuers rendered next to a ClusterIssuer", n)
			}
			ref, _, _ := unstructured.NestedStringMap(cert.Object, "spec", "issuerRef")
			if diff := cmp.Diff(map[string]string{"kind": "ClusterIssuer", "name": "cluster-ca"}, ref); diff != "" {
				t.Errorf("issuerRef (-want +got):\n%s", diff)
			}
		},
	},
	{
		name: "servicemonitor",
		release: release{name: "gantry", namespace: "gantry", values: `
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus}
  prometheusServiceAccount: {name: prometheus, namespace: observability}
`},
		check: func(t *testing.T, r release, m manifests) {
			sms := m.ofKind("ServiceMonitor")
			if len(sms) != 1 {
				t.Fatalf("%d ServiceMonitors, want 1", len(sms))
			}
			sm := sms[0]
			if sm.GetLabels()["release"] != "kube-prometheus" {
				t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", sm.GetLabels())
			}
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			svc := typed[corev1.Service](t, m.ofKind("Service")[0])
			if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)) {
				t.Errorf("ServiceMonitor selector %v does not select Service %s (labels %v)", sel, svc.Name, svc.Labels)
			}
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(eps) != 1 || eps[0].(map[string]any)["port"] != svc.Spec.Ports[0].Name {
				t.Errorf("ServiceMonitor endpoints %v do not scrape Service port %q", eps, svc.Spec.Ports[0].Name)
			}
			crb := m.find("ClusterRoleBinding", "", "gantry-metrics-scraper")
			if crb == nil {
				t.Fatal("no ClusterRoleBinding gantry-metrics-scraper")
			}
			b := typed[rbacv1.ClusterRoleBinding](t, crb)
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus", Namespace: "observability"}}
			if diff := cmp.Diff(want, b.Subjects); diff != "" {
				t.Errorf("scraper subjects (-want +got):\n%s", diff)
			}
			role := typed[rbacv1.ClusterRole](t, m.find("ClusterRole", "", b.RoleRef.Name))
			if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].NonResourceURLs, []string{"/metrics"}) {
				t.Errorf("scraper role %s grants %+v, want get on /metrics", role.Name, role.Rules)
			}
		},
	},
	{
		name: "trial without cert-manager",
		release: release{name: "gantry", namespace: "gantry", values: `
certManager: {enabled: false}
apiServices: {insecureSkipTLSVerify: true}
`},
		check: func(t *testing.T, r release, m manifests) {
			for _, kind := range []string{"Certificate", "Issuer"} {
				if n := len(m.ofKind(kind)); n > 0 {
					t.Errorf("%d %ss rendered without certManager.enabled", n, kind)
				}
			}
			for _, o := range m.ofKind("APIService") {
				if v, _, _ := unstructured.NestedBool(o.Object, "spec", "insecureSkipTLSVerify"); !v {
					t.Errorf("APIService %s: insecureSkipTLSVerify not set", o.GetName())
				}
			}
			_, c := deploymentOf(t, m, "gantry")
			if flagValue(parseArgs(t, c.Args), "cert-dir") == "" {
				t.Error("no --cert-dir: Gantry has no certificate to serve")
			}
		},
	},
	{
		name: "own certificate and CA bundle, with a ServiceMonitor",
		release: release{name: "gantry", namespace: "observability", values: `
certManager: {enabled: false}
tls: {secretName: gantry-tls}
serviceMonitor: {enabled: true}
apiServices:
  caBundle: |
` + indent(testCAPEM, "    ")},
		check: func(t *testing.T, r release, m manifests) {
			d, c := deploymentOf(t, m, "gantry")
			fs := parseArgs(t, c.Args)
			for _, flag := range []string{"tls-cert-file", "tls-private-key-file"} {
				if got, want := fileSource(t, d, c, flagValue(fs, flag)), "secret gantry-tls/"+filepath.Base(flagValue(fs, flag)); got != want {
					t.Errorf("--%s is %s, want %s", flag, got, want)
				}
			}
			for _, o := range m.ofKind("APIService") {
				b, _, _ := unstructured.NestedString(o.Object, "spec", "caBundle")
				if ca, err := parsePEMCert(b, true); err != nil || ca.Subject.CommonName != "gantry test CA" {
					t.Errorf("APIService %s: caBundle is not apiServices.caBundle (%v)", o.GetName(), err)
				}
			}
			for _, o := range m.ofKind("ValidatingWebhookConfiguration") {
				b, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
				ca, _, _ := unstructured.NestedString(b[0].(map[string]any), "clientConfig", "caBundle")
				if cert, err := parsePEMCert(ca, true); err != nil || cert.Subject.CommonName != "gantry test CA" {
					t.Errorf("webhook %s: caBundle is not apiServices.caBundle (%v)", o.GetName(), err)
				}
			}
			if n := len(m.ofKind("ValidatingWebhookConfiguration")); n != 1 {
				t.Errorf("%d ValidatingWebhookConfigurations, want the MetricRule webhook", n)
			}
			// checkCommon checks the ServiceMonitor verifies with that CA.
			if n := len(m.ofKind("ServiceMonitor")); n != 1 {
				t.Errorf("%d ServiceMonitors, want 1", n)
			}
		},
	},
	{
		name: "kubelet via the apiserver proxy",
		release: release{name: "gantry", namespace: "gantry", values: `
kubelet: {viaAPIServerProxy: true}
`},
		check: func(t *testing.T, r release, m manifests) {
			_, c := deploymentOf(t, m, "gantry")
			if flagValue(parseArgs(t, c.Args), "kubelet-via-apiserver-proxy") != "true" {
				t.Error("--kubelet-via-apiserver-proxy is not set")
			}
			// checkCommon checks nodes/proxy is granted with it.
		},
	},
	{
		name: "network policy",
		release: release{name: "gantry", namespace: "gantry", values: `
networkPolicy:
  enabled: true
  apiServer:
    - ipBlock: {cidr: 10.20.0.0/24}
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: konnectivity-agent}}
  prometheus:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: observability}}
      podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
`},
		check: func(t *testing.T, r release, m manifests) {
			rules := checkNetworkPolicy(t, m)
			if len(rules) != 2 {
				t.Fatalf("%d ingress rules, want 2 (kube-apiserver, Prometheus)", len(rules))
			}
			sel := func(k, v string) *metav1.LabelSelector {
				return &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
			}
			want := [][]networkingv1.NetworkPolicyPeer{
				{
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.20.0.0/24"}},
					{NamespaceSelector: sel("kubernetes.io/metadata.name", "kube-system"), PodSelector: sel("k8s-app", "konnectivity-agent")},
				},
				{{NamespaceSelector: sel("kubernetes.io/metadata.name", "observability"), PodSelector: sel("app.kubernetes.io/name", "prometheus")}},
			}
			for i, w := range want {
				if diff := cmp.Diff(w, rules[i].From); diff != "" {
					t.Errorf("ingress rule %d peers (-values +rendered):\n%s", i, diff)
				}
			}
		},
	},
	{
		name: "network policy without Prometheus",
		release: release{name: "gantry", namespace: "gantry", values: `
networkPolicy: {enabled: true, prometheus: []}
`},
		check: func(t *testing.T, r release, m manifests) {
			if rules := checkNetworkPolicy(t, m); len(rules) != 1 {
				t.Errorf("%d ingress rules, want the kube-apiserver's only", len(rules))
			}
		},
	},
	{
		name: "no priority class",
		release: release{name: "gantry", namespace: "gantry", values: `
priorityClassName: ""
`},
		check: func(t *testing.T, r release, m manifests) {
			d, _ := deploymentOf(t, m, "gantry")
			if pc := d.Spec.Template.Spec.PriorityClassName; pc != "" {
				t.Errorf("priorityClassName %q, want none", pc)
			}
			if n := len(m.ofKind("ResourceQuota")); n > 0 {
				t.Errorf("%d ResourceQuotas without a system priority class", n)
			}
		},
	},
	{
		name: "prometheus auth, headers and extra args",
		release: release{name: "metrics", namespace: "monitoring", values: `
prometheus:
  url: https://mimir.example.svc/prometheus
  headers:
    X-Scope-OrgID: team-a|team-b
  bearerToken:
    secret: {name: mimir-token, key: token}
  ca:
    configMap: {name: mimir-ca, key: ca.pem}
  clientTLS:
    secretName: gantry-client
  authConfig:
    secret: {name: mimir-auth, key: http.yaml}
metricsRelistInterval: 30s
logLevel: 4
extraArgs: [--backend-timeout=5s]
replicas: 3
`},
		check: func(t *testing.T, r release, m manifests) {
			d, c := deploymentOf(t, m, "metrics-gantry")
			if *d.Spec.Replicas != 3 {
				t.Errorf("replicas %d, want 3", *d.Spec.Replicas)
			}
			fs := parseArgs(t, c.Args)
			for flag, want := range map[string]string{
				"prometheus-url":          "https://mimir.example.svc/prometheus",
				"prometheus-header":       "[X-Scope-OrgID=team-a|team-b]",
				"metrics-relist-interval": "30s",
				"v":                       "4",
				"backend-timeout":         "5s",
			} {
				if got := flagValue(fs, flag); got != want {
					t.Errorf("--%s=%q, want %q", flag, got, want)
				}
			}
			// Each file flag names a file the pod has: the key of the
			// Secret or ConfigMap given in the values.
			for flag, want := range map[string]string{
				"prometheus-token-file":           "secret mimir-token/token",
				"prometheus-ca-file":              "configmap mimir-ca/ca.pem",
				"prometheus-client-tls-cert-file": "secret gantry-client/tls.crt",
				"prometheus-client-tls-key-file":  "secret gantry-client/tls.key",
				"prometheus-auth-config":          "secret mimir-auth/http.yaml",
			} {
				if got := fileSource(t, d, c, flagValue(fs, flag)); got != want {
					t.Errorf("--%s=%s is %s, want %s", flag, flagValue(fs, flag), got, want)
				}
			}
			// The APIServices follow the release's names.
			for _, o := range m.ofKind("APIService") {
				name, _, _ := unstructured.NestedString(o.Object, "spec", "service", "name")
				ns, _, _ := unstructured.NestedString(o.Object, "spec", "service", "namespace")
				if name != "metrics-gantry" || ns != "monitoring" {
					t.Errorf("APIService %s points at %s/%s, want monitoring/metrics-gantry", o.GetName(), ns, name)
				}
			}
		},
	},
	{
		name: "named backends with their secrets",
		release: release{name: "gantry", namespace: "monitoring", values: `
config:
  backends:
    - name: thanos
      type: prometheus
      urls: [https://thanos-query-0.monitoring.svc:10902, https://thanos-query-1.monitoring.svc:10902]
      timeout: 5s
      http:
        authorization: {credentials_file: /etc/gantry/backends/thanos-auth/token}
        tls_config: {ca_file: /etc/gantry/backends/thanos-auth/ca.crt}
      tenant: {header: THANOS-TENANT, byNamespace: {shop: team-shop}, template: team-$namespace}
    - name: logs
      type: loki
      url: https://loki-gateway.logging.svc
      http:
        basic_auth: {username: gantry, password_file: /etc/gantry/backends/loki.auth/password}
      tenant: {fixed: apps}
  rules:
    - seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
      backend: thanos
      resources: {template: "<<.Resource>>"}
      metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
backendSecrets:
  - name: thanos-auth
  - name: loki.auth
`},
		check: func(t *testing.T, r release, m manifests) {
			d, c := deploymentOf(t, m, "gantry")
			// checkRendered checks each file is in a Secret mounted
			// read-only; these are the Secrets the values list.
			got := checkBackendFiles(t, d, c, renderedConfig(t, m, d))
			want := []string{"secret thanos-auth/token", "secret thanos-auth/ca.crt", "secret loki.auth/password"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("backend files (-want +got):\n%s", diff)
			}
			var mounts []string
			for _, vm := range c.VolumeMounts {
				if strings.HasPrefix(vm.MountPath, backendsDir+"/") {
					mounts = append(mounts, vm.MountPath)
				}
			}
			if diff := cmp.Diff([]string{backendsDir + "/thanos-auth", backendsDir + "/loki.auth"}, mounts); diff != "" {
				t.Errorf("backend Secret mounts (-want +got):\n%s", diff)
			}
		},
	},
	{
		name: "MetricRules and the diagnostics API off",
		release: release{name: "gantry", namespace: "gantry", values: `
metricRules: {enabled: false}
apiServices: {diagnostics: false}
`},
		check: func(t *testing.T, r release, m manifests) {
			wantAPIServices(t, m, deploy.APIServices...)
			for _, kind := range []string{"CustomResourceDefinition", "ValidatingWebhookConfiguration"} {
				if n := len(m.ofKind(kind)); n > 0 {
					t.Errorf("%d %ss rendered with metricRules.enabled=false", n, kind)
				}
			}
			for _, o := range m.ofKind("ClusterRole") {
				if strings.Contains(o.GetName(), "metricrules") || strings.Contains(o.GetName(), "diagnostics") {
					t.Errorf("ClusterRole %s rendered with both off", o.GetName())
				}
			}
			_, c := deploymentOf(t, m, "gantry")
			if got := flagValue(parseArgs(t, c.Args), "metricrules"); got != "false" {
				t.Errorf("--metricrules=%q, want false: Gantry would look for a CRD that is not installed", got)
			}
		},
	},
	{
		name: "config given as a file",
		release: release{name: "gantry", namespace: "gantry", files: map[string]string{
			"config": string(deploy.Config()),
		}},
		check: func(t *testing.T, r release, m manifests) {
			cm := typed[corev1.ConfigMap](t, m.find("ConfigMap", r.namespace, deploy.ConfigMap))
			// Verbatim, comments and all.
			if diff := cmp.Diff(string(deploy.Config()), cm.Data[deploy.ConfigKey]); diff != "" {
				t.Errorf("a config given as a string is not passed verbatim (-want +got):\n%s", diff)
			}
		},
	},
}

func TestHelmTemplate(t *testing.T) {
	h := newHelm(t)
	for _, tc := range templateCases {
		t.Run(tc.name, func(t *testing.T) {
			m := decodeAll(t, h.template(t, tc.release))
			checkCommon(t, tc.release, m)
			tc.check(t, tc.release, m)
		})
	}
}

// checkCommon holds for every rendering: objects in the release namespace
// (but the kube-system RoleBinding and cluster-scoped kinds), the
// Deployment's args accepted by Gantry, the Service selecting its pods, and
// APIServices pointing at the Service.
func checkCommon(t *testing.T, r release, m manifests) {
	t.Helper()
	for _, o := range m.objs {
		switch {
		case clusterScoped[o.GetKind()]:
			if o.GetNamespace() != "" {
				t.Errorf("%s %s: cluster-scoped with namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		case o.GetKind() == "RoleBinding" && o.GetNamespace() == "kube-system":
		case o.GetNamespace() != r.namespace:
			t.Errorf("%s %s in namespace %q, want the release's %q", o.GetKind(), o.GetName(), o.GetNamespace(), r.namespace)
		}
		if o.GetLabels()["app.kubernetes.io/instance"] != r.name {
			t.Errorf("%s %s: no app.kubernetes.io/instance=%s label", o.GetKind(), o.GetName(), r.name)
		}
	}
	checkRendered(t, m)
	checkAPIServiceTrust(t, m)
	checkWebhookTrust(t, m)
	d, _ := deploymentOf(t, m, m.ofKind("Deployment")[0].GetName())
	if d.Spec.Template.Spec.ServiceAccountName == "" || m.find("ServiceAccount", r.namespace, d.Spec.Template.Spec.ServiceAccountName) == nil {
		t.Errorf("Deployment runs as ServiceAccount %q, which the chart does not create", d.Spec.Template.Spec.ServiceAccountName)
	}
	if got := d.Spec.Template.Annotations["checksum/config"]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(got) {
		t.Errorf("pod annotation checksum/config=%q, want a sha256", got)
	}

	svcs := m.ofKind("Service")
	if len(svcs) != 1 {
		t.Fatalf("%d Services, want 1", len(svcs))
	}
	svc := typed[corev1.Service](t, svcs[0])
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("Service selector %v does not select the pods (%v)", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	_, c := deploymentOf(t, m, d.Name)
	if len(svc.Spec.Ports) != 1 || containerPort(c, svc.Spec.Ports[0].TargetPort) == 0 {
		t.Errorf("Service ports %+v do not reach a container port", svc.Spec.Ports)
	}
	for _, o := range m.ofKind("APIService") {
		s, _, _ := unstructured.NestedMap(o.Object, "spec", "service")
		if s["name"] != svc.Name || s["namespace"] != svc.Namespace || s["port"] != int64(svc.Spec.Ports[0].Port) {
			t.Errorf("APIService %s points at %v, not Service %s/%s port %d", o.GetName(), s, svc.Namespace, svc.Name, svc.Spec.Ports[0].Port)
		}
	}
	for _, o := range m.ofKind("ValidatingWebhookConfiguration") {
		checkWebhook(t, o, svc.Namespace, svc.Name, svc.Spec.Ports[0].Port)
	}
	if crd := m.find("CustomResourceDefinition", "", deploy.MetricRuleCRD); crd != nil {
		checkMetricRuleCRD(t, crd)
		// The chart's copy of the CRD is the manifests'.
		base := load(t).find("CustomResourceDefinition", "", deploy.MetricRuleCRD)
		if diff := cmp.Diff(base.Object["spec"], crd.Object["spec"]); diff != "" {
			t.Errorf("the chart's MetricRule CRD differs from deploy/manifests/%s (-manifests +chart):\n%s", deploy.MetricRuleFile, diff)
		}
		if m.find("APIService", "", deploy.DiagnosticsAPIService) != nil {
			checkMetricRuleRBAC(t, m, r.namespace, d.Spec.Template.Spec.ServiceAccountName, d.Name)
		}
	}
	if pdbs := m.ofKind("PodDisruptionBudget"); len(pdbs) == 1 {
		pdb := typed[policyv1.PodDisruptionBudget](t, pdbs[0])
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("PodDisruptionBudget selector %v does not select the pods", pdb.Spec.Selector)
		}
	} else {
		t.Errorf("%d PodDisruptionBudgets, want 1", len(pdbs))
	}
}

// checkMatchesBase compares the default rendering with the kustomize base
// plus the cert-manager component, the chart's default: the same objects,
// rules, RBAC grants and Deployment settings.
func checkMatchesBase(t *testing.T, r release, m manifests) {
	t.Helper()
	base := kustomize(t, "cert-manager")
	if diff := cmp.Diff(keys(base), keys(m)); diff != "" {
		t.Errorf("objects differ from deploy/manifests with components/cert-manager (-base +chart):\n%s", diff)
	}
	wantAPIServices(t, m, append(deploy.APIServices, deploy.DiagnosticsAPIService)...)
	for _, o := range m.ofKind("APIService") {
		if _, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "insecureSkipTLSVerify"); ok {
			t.Errorf("APIService %s: insecureSkipTLSVerify set by default", o.GetName())
		}
		want := base.find("APIService", "", o.GetName()).GetAnnotations()["cert-manager.io/inject-ca-from"]
		if got := o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != want {
			t.Errorf("APIService %s: inject-ca-from %q, the base has %q", o.GetName(), got, want)
		}
	}
	for _, o := range base.ofKind("ValidatingWebhookConfiguration") {
		if c := m.find("ValidatingWebhookConfiguration", "", o.GetName()); c != nil {
			if diff := cmp.Diff(o.Object["webhooks"], c.Object["webhooks"]); diff != "" {
				t.Errorf("ValidatingWebhookConfiguration %s (-base +chart):\n%s", o.GetName(), diff)
			}
			if got, want := c.GetAnnotations()["cert-manager.io/inject-ca-from"], o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != want {
				t.Errorf("ValidatingWebhookConfiguration %s: inject-ca-from %q, the base has %q", o.GetName(), got, want)
			}
		}
	}
	// The certificates: the same issuers and certificates.
	for _, kind := range []string{"Issuer", "Certificate"} {
		for _, o := range base.ofKind(kind) {
			c := m.find(kind, o.GetNamespace(), o.GetName())
			if c == nil {
				continue // reported above
			}
			for _, field := range [][]string{{"spec", "isCA"}, {"spec", "secretName"}, {"spec", "dnsNames"}, {"spec", "issuerRef"}, {"spec", "selfSigned"}, {"spec", "ca"}, {"spec", "privateKey"}} {
				bv, _, _ := unstructured.NestedFieldNoCopy(o.Object, field...)
				cv, _, _ := unstructured.NestedFieldNoCopy(c.Object, field...)
				if diff := cmp.Diff(bv, cv); diff != "" {
					t.Errorf("%s %s %s (-base +chart):\n%s", kind, o.GetName(), strings.Join(field, "."), diff)
				}
			}
		}
	}
	for _, o := range base.ofKind("ResourceQuota") {
		if c := m.find("ResourceQuota", o.GetNamespace(), o.GetName()); c != nil {
			bq, cq := typed[corev1.ResourceQuota](t, o), typed[corev1.ResourceQuota](t, c)
			if diff := cmp.Diff(bq.Spec, cq.Spec, equalQuantities); diff != "" {
				t.Errorf("ResourceQuota %s (-base +chart):\n%s", o.GetName(), diff)
			}
		}
	}

	// The rules: the same config as the base's ConfigMap.
	cm := typed[corev1.ConfigMap](t, m.find("ConfigMap", deploy.Namespace, deploy.ConfigMap))
	got, err := config.Parse([]byte(cm.Data[deploy.ConfigKey]), "chart "+deploy.ConfigKey)
	if err != nil {
		t.Fatalf("the chart's default config is invalid: %v", err)
	}
	want, err := config.Parse(deploy.Config(), "base "+deploy.ConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("default config differs from deploy/manifests/configmap.yaml (-base +chart):\n%s", diff)
	}

	// RBAC: each role grants what the base's role of that name grants.
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range base.ofKind(kind) {
			c := m.find(kind, o.GetNamespace(), o.GetName())
			if c == nil {
				continue // reported above
			}
			if diff := cmp.Diff(grants(t, o), grants(t, c)); diff != "" {
				t.Errorf("%s %s grants (-base +chart):\n%s", kind, o.GetName(), diff)
			}
			if diff := cmp.Diff(aggregation(o), aggregation(c)); diff != "" {
				t.Errorf("%s %s aggregation labels (-base +chart):\n%s", kind, o.GetName(), diff)
			}
		}
	}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, o := range base.ofKind(kind) {
			c := m.find(kind, o.GetNamespace(), o.GetName())
			if c == nil {
				continue
			}
			bb, cb := typed[rbacv1.RoleBinding](t, o), typed[rbacv1.RoleBinding](t, c)
			if diff := cmp.Diff(bb.RoleRef, cb.RoleRef); diff != "" {
				t.Errorf("%s %s roleRef (-base +chart):\n%s", kind, o.GetName(), diff)
			}
			if diff := cmp.Diff(bb.Subjects, cb.Subjects); diff != "" {
				t.Errorf("%s %s subjects (-base +chart):\n%s", kind, o.GetName(), diff)
			}
		}
	}

	ns := m.find("Namespace", "", deploy.Namespace)
	if ns == nil || ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Error("the Namespace does not enforce the restricted Pod Security Standard")
	}

	// The Deployment: every flag of the base with the same value, and the
	// same pod settings.
	bd, bc := base.deployment(t)
	cd, cc := deploymentOf(t, m, deploy.Deployment)
	bfs, cfs := parseArgs(t, bc.Args), parseArgs(t, cc.Args)
	// Every flag either sets, with the same value.
	for _, a := range slices.Concat(bc.Args, cc.Args) {
		name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
		if f := cfs.Lookup(name); f != nil && f.Value.String() == f.DefValue && flagValue(bfs, name) == "" {
			continue // the chart sets Gantry's default, the base leaves it
		}
		if got, want := flagValue(cfs, name), flagValue(bfs, name); got != want {
			t.Errorf("--%s=%q, the base has %q", name, got, want)
		}
	}
	if *cd.Spec.Replicas != *bd.Spec.Replicas {
		t.Errorf("replicas %d, the base has %d", *cd.Spec.Replicas, *bd.Spec.Replicas)
	}
	if cc.Image != bc.Image {
		t.Errorf("image %s, the base has %s", cc.Image, bc.Image)
	}
	bp, cp := bd.Spec.Template.Spec, cd.Spec.Template.Spec
	for _, f := range []struct {
		name      string
		base, got any
	}{
		{"strategy", bd.Spec.Strategy, cd.Spec.Strategy},
		{"pod securityContext", bp.SecurityContext, cp.SecurityContext},
		{"container securityContext", bc.SecurityContext, cc.SecurityContext},
		{"resources", bc.Resources, cc.Resources},
		{"liveness probe", bc.LivenessProbe, cc.LivenessProbe},
		{"readiness probe", bc.ReadinessProbe, cc.ReadinessProbe},
		{"ports", bc.Ports, cc.Ports},
		{"volume mounts", bc.VolumeMounts, cc.VolumeMounts},
		{"volumes", bp.Volumes, cp.Volumes},
		{"nodeSelector", bp.NodeSelector, cp.NodeSelector},
		{"priorityClassName", bp.PriorityClassName, cp.PriorityClassName},
	} {
		if diff := cmp.Diff(f.base, f.got, equalQuantities); diff != "" {
			t.Errorf("%s (-base +chart):\n%s", f.name, diff)
		}
	}
	aa := cp.Affinity
	if aa == nil || aa.PodAntiAffinity == nil || len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatal("no preferred pod anti-affinity")
	}
	term := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if term.TopologyKey != "kubernetes.io/hostname" || err != nil || !sel.Matches(labels.Set(cd.Spec.Template.Labels)) {
		t.Errorf("anti-affinity term %+v does not spread Gantry's pods by hostname", term)
	}
}

// equalQuantities compares resource quantities by value (1Mi == 1048576).
var equalQuantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// checkCertManager checks what certManager.enabled changes and returns the
// serving Certificate.
func checkCertManager(t *testing.T, r release, m manifests) *unstructured.Unstructured {
	t.Helper()
	d, c := deploymentOf(t, m, m.ofKind("Deployment")[0].GetName())
	fs := parseArgs(t, c.Args)
	if flagValue(fs, "cert-dir") != "" {
		t.Error("--cert-dir set: Gantry would serve a self-signed certificate")
	}
	certFile, keyFile := flagValue(fs, "tls-cert-file"), flagValue(fs, "tls-private-key-file")
	svcName := m.ofKind("Service")[0].GetName()
	var serving *unstructured.Unstructured
	for _, o := range m.ofKind("Certificate") {
		if ca, _, _ := unstructured.NestedBool(o.Object, "spec", "isCA"); !ca {
			serving = o
		}
	}
	if serving == nil {
		t.Fatal("no serving Certificate")
	}
	secret, _, _ := unstructured.NestedString(serving.Object, "spec", "secretName")
	for _, f := range []string{certFile, keyFile} {
		if got, want := fileSource(t, d, c, f), "secret "+secret+"/"+filepath.Base(f); got != want {
			t.Errorf("%s is %s, want %s", f, got, want)
		}
	}
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	if want := svcName + "." + r.namespace + ".svc"; !slices.Contains(dns, want) {
		t.Errorf("serving certificate dnsNames %v lack %s, the name kube-apiserver dials", dns, want)
	}
	inject := r.namespace + "/" + serving.GetName()
	for _, o := range m.ofKind("APIService") {
		if got := o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != inject {
			t.Errorf("APIService %s: inject-ca-from %q, want %q", o.GetName(), got, inject)
		}
		if _, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "insecureSkipTLSVerify"); ok {
			t.Errorf("APIService %s: insecureSkipTLSVerify set with a caBundle injected", o.GetName())
		}
	}
	return serving
}

// wantAPIServices checks exactly these APIServices are rendered.
func wantAPIServices(t *testing.T, m manifests, names ...string) {
	t.Helper()
	var got []string
	for _, o := range m.ofKind("APIService") {
		got = append(got, o.GetName())
	}
	want := slices.Sorted(slices.Values(names))
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("APIServices (-want +got):\n%s", diff)
	}
}

func deploymentOf(t *testing.T, m manifests, name string) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	for _, o := range m.ofKind("Deployment") {
		if o.GetName() != name {
			continue
		}
		d := typed[appsv1.Deployment](t, o)
		for i := range d.Spec.Template.Spec.Containers {
			if c := &d.Spec.Template.Spec.Containers[i]; c.Name == deploy.Container {
				return d, c
			}
		}
		t.Fatalf("Deployment %s has no container %s", name, deploy.Container)
	}
	t.Fatalf("no Deployment %s", name)
	return nil, nil
}

// fileSource tells where a file in the container comes from: "secret
// name/key", "configmap name/key", or "" if no volume provides it.
func fileSource(t *testing.T, d *appsv1.Deployment, c *corev1.Container, file string) string {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") || strings.Contains(rel, "/") {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			pick := func(items []corev1.KeyToPath) string {
				if len(items) == 0 {
					return rel
				}
				for _, it := range items {
					if it.Path == rel {
						return it.Key
					}
				}
				return "?missing " + rel
			}
			switch {
			case v.Secret != nil:
				return "secret " + v.Secret.SecretName + "/" + pick(v.Secret.Items)
			case v.ConfigMap != nil:
				return "configmap " + v.ConfigMap.Name + "/" + pick(v.ConfigMap.Items)
			}
		}
	}
	return ""
}

// grants expands a role's rules into "group resource verb" lines, so roles
// that split their rules differently compare equal.
func grants(t *testing.T, role *unstructured.Unstructured) []string {
	r := typed[rbacv1.ClusterRole](t, role)
	var out []string
	for _, rule := range r.Rules {
		for _, v := range rule.Verbs {
			for _, u := range rule.NonResourceURLs {
				out = append(out, "url "+u+" "+v)
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					out = append(out, g+" "+res+" "+v)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func aggregation(o *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for k, v := range o.GetLabels() {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			out[k] = v
		}
	}
	return out
}

// TestHelmNotes renders NOTES.txt as `helm install` prints it (a client-side
// dry run: no cluster) and checks it lists the APIServices the release
// registers, and only those.
func TestHelmNotes(t *testing.T) {
	h := newHelm(t)
	chart, err := filepath.Abs(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range templateCases {
		t.Run(tc.name, func(t *testing.T) {
			m := decodeAll(t, h.template(t, tc.release))
			args := append([]string{"install", tc.release.name, chart, "--namespace", tc.release.namespace, "--dry-run=client"}, tc.release.args(t)...)
			out, err := h.run(args...)
			if err != nil {
				t.Fatal(err)
			}
			_, notes, ok := strings.Cut(string(out), "\nNOTES:\n")
			if !ok {
				t.Fatalf("no NOTES in helm install's output:\n%s", out)
			}
			registered := map[string]bool{}
			for _, o := range m.ofKind("APIService") {
				registered[o.GetName()] = true
			}
			for _, name := range append(deploy.APIServices, deploy.DiagnosticsAPIService) {
				if listed := strings.Contains(notes, name); listed != registered[name] {
					t.Errorf("NOTES list %s: %v, registered: %v\n%s", name, listed, registered[name], notes)
				}
			}
		})
	}
}

func TestHelmTemplateChecksumFollowsConfig(t *testing.T) {
	h := newHelm(t)
	checksum := func(values string) string {
		t.Helper()
		m := decodeAll(t, h.template(t, release{name: "gantry", namespace: "gantry", values: values}))
		d, _ := deploymentOf(t, m, deploy.Deployment)
		return d.Spec.Template.Annotations["checksum/config"]
	}
	def := checksum("")
	if got := checksum("replicas: 3\nlogLevel: 5\n"); got != def {
		t.Error("checksum/config changes with values that are not the config")
	}
	if got := checksum("config:\n  rules: []\n"); got == def {
		t.Error("checksum/config stays the same when the config changes: the pods would keep the old rules")
	}
}

// TestHelmBadValues: values the schema or the chart's checks reject fail
// helm template and helm lint with a message naming the problem.
func TestHelmBadValues(t *testing.T) {
	h := newHelm(t)
	chart, err := filepath.Abs(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, values, wantErr string
		// schema: values.schema.json rejects the values, so helm lint
		// fails too. The chart's own checks (the template function fail)
		// only fail a real rendering: helm lint renders in a mode where
		// fail merely logs.
		schema bool
	}{
		{"replicas not a number", `replicas: "two"`, "/replicas': got string, want integer", true},
		{"replicas zero", `replicas: 0`, "/replicas", true},
		{"unknown apiServices key", "apiServices:\n  customMetric: false", "additional properties 'customMetric' not allowed", true},
		{"unknown top-level key", "prometheusUrl: http://prometheus:9090", "additional properties 'prometheusUrl' not allowed", true},
		{"apiServices switch not a boolean", "apiServices:\n  resourceMetrics: \"no\"", "/apiServices/resourceMetrics", true},
		{"prometheus url without scheme", "prometheus:\n  url: prometheus:9090", "/prometheus/url", true},
		{"relist interval not a Go duration", "metricsRelistInterval: 1d", "/metricsRelistInterval", true},
		{"header value not a string", "prometheus:\n  headers:\n    X-Scope-OrgID: [a, b]", "/prometheus/headers/X-Scope-OrgID", true},
		{"extra arg not a flag", "extraArgs: [backend-timeout=5s]", "/extraArgs/0", true},
		{"image pull policy", "image:\n  pullPolicy: Sometimes", "/image/pullPolicy", true},
		{"rules config of the wrong shape", "config:\n  rules: {seriesQuery: up}", "/config", true},
		{"every API turned off", "apiServices: {customMetrics: false, externalMetrics: false, resourceMetrics: false}", "Gantry would serve nothing", false},
		{"token from a file and a secret", "prometheus:\n  bearerToken: {file: /t, secret: {name: s, key: token}}", "prometheus.bearerToken: set file or secret.name, not both", false},
		{"cert-manager and a certificate secret", "certManager: {enabled: true}\ntls: {secretName: mine}", "tls.secretName and certManager.enabled", false},
		{"PDB blocks every drain", "replicas: 1", "podDisruptionBudget.minAvailable (1) must be less than replicas (1)", false},
		{"a certificate secret with cert-manager on by default", "tls: {secretName: mine}", "set certManager.enabled=false to serve tls.secretName", false},
		{"no way to verify the serving certificate", "certManager: {enabled: false}", "the APIServices would carry no caBundle", false},
		{"a certificate secret without its CA", "certManager: {enabled: false}\ntls: {secretName: mine}", "the APIServices would carry no caBundle", false},
		{"insecureSkipTLSVerify next to cert-manager", "apiServices: {insecureSkipTLSVerify: true}", "set certManager.enabled=false as well", false},
		{"ServiceMonitor without a CA to verify with", "certManager: {enabled: false}\napiServices: {insecureSkipTLSVerify: true}\nserviceMonitor: {enabled: true}", "there is no CA to verify it with", false},
		{"kubelet proxy flag in extraArgs", "extraArgs: [--kubelet-via-apiserver-proxy=true]", "set kubelet.viaAPIServerProxy instead", false},
		{"network policy without the kube-apiserver", "networkPolicy: {enabled: true, apiServer: []}", "networkPolicy.apiServer is empty", false},
		{"network policy peer misspelt", "networkPolicy:\n  apiServer: [{ipblock: {cidr: 10.0.0.0/8}}]", "additional properties 'ipblock' not allowed", true},
		{"network policy CIDR without a prefix", "networkPolicy:\n  apiServer: [{ipBlock: {cidr: 10.0.0.1}}]", "/networkPolicy/apiServer/0/ipBlock/cidr", true},
		{"metricRules switch not a boolean", "metricRules: {enabled: \"yes\"}", "/metricRules/enabled", true},
		{"diagnostics switch not a boolean", "apiServices: {diagnostics: 1}", "/apiServices/diagnostics", true},
		{"kubelet proxy switch not a boolean", "kubelet: {viaAPIServerProxy: \"yes\"}", "/kubelet/viaAPIServerProxy", true},
		{"backend secret name not a Secret's", "backendSecrets: [{name: Thanos_Auth}]", "/backendSecrets/0/name", true},
		{"backend secret listed twice", "backendSecrets: [{name: thanos-auth}, {name: thanos-auth}]", "'/backendSecrets': items at 0 and 1 are equal", true},
		{"backend secret given as a string", "backendSecrets: [thanos-auth]", "/backendSecrets/0", true},
		{"backend tenant field misspelt", "config:\n  backends: [{name: t, type: prometheus, url: 'http://t:9090', tenant: {fixd: a}}]", "'/config/backends/0/tenant': additional properties 'fixd' not allowed", true},
		{"backend of an unknown type", "config:\n  backends: [{name: t, type: mimir, url: 'http://t:9090'}]", "'/config/backends/0/type': value must be one of 'prometheus', 'loki'", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := release{name: "gantry", namespace: "gantry", values: tc.values + "\n"}
			cmds := []string{"template"}
			if tc.schema {
				cmds = append(cmds, "lint")
			}
			for _, cmd := range cmds {
				args := []string{cmd}
				if cmd == "template" {
					args = append(args, r.name)
				} else {
					args = append(args, "--strict")
				}
				args = append(append(args, chart, "--namespace", r.namespace), r.args(t)...)
				out, err := h.run(args...)
				if err == nil {
					t.Errorf("helm %s accepts %q", cmd, tc.values)
					continue
				}
				// lint reports on stdout, template on stderr.
				if msg := err.Error() + string(out); !strings.Contains(msg, tc.wantErr) {
					t.Errorf("helm %s: error does not contain %q:\n%s", cmd, tc.wantErr, msg)
				}
			}
		})
	}
}
