package main

import (
	"encoding/json"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func TestExplainHPAText(t *testing.T) {
	for _, tc := range []struct {
		name    string
		metrics func(ns string) []v1alpha1.Explanation
		golden  string
	}{
		{name: "healthy pods metric", golden: "explain-hpa-ok.txt",
			metrics: func(ns string) []v1alpha1.Explanation { return []v1alpha1.Explanation{healthyMetric(ns)} }},
		{name: "series labelled pod_name beside a healthy metric", golden: "explain-hpa-pod-name.txt",
			metrics: func(ns string) []v1alpha1.Explanation {
				return []v1alpha1.Explanation{healthyMetric(ns), podNameMetric(ns)}
			}},
		{name: "no rule, APIService served by another adapter", golden: "explain-hpa-no-rule.txt",
			metrics: func(ns string) []v1alpha1.Explanation {
				return []v1alpha1.Explanation{{
					Request: v1alpha1.MetricRequest{Type: v1alpha1.MetricTypeExternal, Metric: "queue_messages_ready", Namespace: ns, MetricSelector: "queue=orders"},
					API: v1alpha1.APIInfo{Group: "external.metrics.k8s.io", Version: "v1beta1", APIService: "v1beta1.external.metrics.k8s.io",
						Found: true, Available: true, Service: "keda/keda-operator-metrics-apiserver"},
					Discovery: &v1alpha1.DiscoveryInfo{Listed: false, LastSuccess: ts(90_000_000_000), Similar: []string{"queue_messages"}},
					Diagnosis: v1alpha1.Diagnosis{Status: v1alpha1.StatusFail, Reason: `no rule serves external metric "queue_messages_ready"`,
						Hint: "add an externalRules entry, or use queue_messages"},
				}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeAPI(t)
			kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
			f.set(hpaExplanationPath("shop", "web"), hpaExplanation("shop", "web", tc.metrics("shop")...))
			res := runPlugin(t, kc, "explain", "hpa", "web", "-n", "shop")
			if res.code != exitOK {
				t.Fatalf("exit %d, stderr: %s", res.code, res.stderr)
			}
			golden(t, tc.golden, res.stdout)
		})
	}
}

// TestExplainHPAOutput: -o json and -o yaml print the object as served.
func TestExplainHPAOutput(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	served := hpaExplanation("shop", "web", healthyMetric("shop"), podNameMetric("shop"))
	f.set(hpaExplanationPath("shop", "web"), served)
	wantJSON, err := json.Marshal(served)
	if err != nil {
		t.Fatal(err)
	}
	var want any
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			res := runPlugin(t, kc, "explain", "hpa", "web", "-n", "shop", "-o", format)
			if res.code != exitOK {
				t.Fatalf("exit %d, stderr: %s", res.code, res.stderr)
			}
			var got any
			if err := yaml.Unmarshal([]byte(res.stdout), &got); err != nil {
				t.Fatalf("output is not %s: %v\n%s", format, err, res.stdout)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("-o %s is not the served object (-served +printed):\n%s", format, diff)
			}
		})
	}
}

// TestNamespaceAndContext: -n, the context's namespace and --context pick
// the server and the namespace as in kubectl.
func TestNamespaceAndContext(t *testing.T) {
	fa, srvA := newFakeAPI(t)
	fb, srvB := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srvA.URL, "b": srvB.URL})
	for _, f := range []*fakeAPI{fa, fb} {
		for _, ns := range []string{"a-ns", "b-ns", "shop"} {
			f.set(hpaExplanationPath(ns, "web"), hpaExplanation(ns, "web", healthyMetric(ns)))
		}
	}
	for _, tc := range []struct {
		name   string
		args   []string
		server *fakeAPI
		path   string
	}{
		{name: "current context and its namespace", server: fa, path: hpaExplanationPath("a-ns", "web")},
		{name: "-n overrides the context's namespace", args: []string{"-n", "shop"}, server: fa, path: hpaExplanationPath("shop", "web")},
		{name: "--namespace as well", args: []string{"--namespace=shop"}, server: fa, path: hpaExplanationPath("shop", "web")},
		{name: "--context picks the other server and its namespace", args: []string{"--context", "b"}, server: fb, path: hpaExplanationPath("b-ns", "web")},
		{name: "--context with -n", args: []string{"--context", "b", "-n", "shop"}, server: fb, path: hpaExplanationPath("shop", "web")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[*fakeAPI]int{fa: len(fa.seen()), fb: len(fb.seen())}
			res := runPlugin(t, kc, append([]string{"explain", "hpa", "web", "-o", "json"}, tc.args...)...)
			if res.code != exitOK {
				t.Fatalf("exit %d, stderr: %s", res.code, res.stderr)
			}
			got := tc.server.seen()[before[tc.server]:]
			if len(got) != 1 || got[0] != tc.path {
				t.Errorf("requests to the expected server = %q, want [%q]", got, tc.path)
			}
			for _, other := range []*fakeAPI{fa, fb} {
				if other != tc.server && len(other.seen()) != before[other] {
					t.Errorf("the other server got %q", other.seen()[before[other]:])
				}
			}
		})
	}
}

func TestExplainForbidden(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	f.set(hpaExplanationPath("team-a", "web"), hpaExplanation("team-a", "web", healthyMetric("team-a")))
	f.forbid(hpaExplanationPath("team-b", "web"))
	res := runPlugin(t, kc, "explain", "hpa", "web", "-n", "team-b")
	if res.code != exitFailed {
		t.Fatalf("exit %d, want %d; stdout: %s", res.code, exitFailed, res.stdout)
	}
	for _, want := range []string{`get hpaexplanations.diagnostics.gantry.dev in namespace "team-b"`, "gantry-diagnostics-view"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, res.stderr)
		}
	}
	if res.stdout != "" {
		t.Errorf("stdout should be empty, got:\n%s", res.stdout)
	}
}

// TestExplainGantryForbidden: a 403 on what Gantry itself reads is not the
// user's missing permission.
func TestExplainGantryForbidden(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	path := hpaExplanationPath("shop", "web")
	f.forbid(path)
	f.forbiddenDetails[path] = &metav1.StatusDetails{Group: "autoscaling", Kind: "horizontalpodautoscalers", Name: "web"}
	res := runPlugin(t, kc, "explain", "hpa", "web", "-n", "shop")
	if res.code != exitFailed || !strings.Contains(res.stderr, "gantry-diagnostics-reader") || strings.Contains(res.stderr, "missing permission") {
		t.Errorf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
}

// TestExplainUnavailable: when Gantry is down the aggregator answers 503;
// explain says which APIService is not Available and why.
func TestExplainUnavailable(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	f.unavailable[hpaExplanationPath("shop", "web")] = true
	f.set("/apis/apiregistration.k8s.io/v1/apiservices/"+diagnosticsAPIService,
		apiServiceObj(diagnosticsAPIService, diagnosticsGroup, "gantry", "gantry", false))
	res := runPlugin(t, kc, "explain", "hpa", "web", "-n", "shop")
	if res.code != exitFailed {
		t.Fatalf("exit %d, want %d", res.code, exitFailed)
	}
	for _, want := range []string{"APIService v1alpha1.diagnostics.gantry.dev is not Available", "MissingEndpoints"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, res.stderr)
		}
	}

	// Not registered at all: the group's path is a 404 without a name.
	f2, srv2 := newFakeAPI(t)
	kc2 := writeKubeconfig(t, "a", map[string]string{"a": srv2.URL})
	_ = f2
	res = runPlugin(t, kc2, "explain", "hpa", "web", "-n", "shop")
	if res.code != exitFailed || !strings.Contains(res.stderr, "APIService v1alpha1.diagnostics.gantry.dev is not registered") {
		t.Errorf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
}

func TestExplainMetricRequest(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	served := &v1alpha1.MetricExplanation{
		TypeMeta:    metav1.TypeMeta{Kind: v1alpha1.KindMetricExplanation, APIVersion: v1alpha1.SchemeGroupVersion.String()},
		Explanation: healthyMetric("shop"),
	}
	served.HPA = nil
	for _, path := range []string{
		diagnosticsPrefix + "/namespaces/shop/metricexplanations/http_requests_per_second",
		diagnosticsPrefix + "/metricexplanations/node_load",
	} {
		f.set(path, served)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		path   string
		params url.Values
	}{
		{name: "pods with a selector",
			args:   []string{"http_requests_per_second", "--type", "pods", "-l", "app=web", "-n", "shop"},
			path:   diagnosticsPrefix + "/namespaces/shop/metricexplanations/http_requests_per_second",
			params: url.Values{"type": {"pods"}, "resource": {"pods"}, "labelSelector": {"app=web"}}},
		{name: "object with metric selector, type case-insensitive",
			args:   []string{"http_requests_per_second", "--type", "Object", "--resource", "deployments.apps", "--name", "web", "--metric-selector", "code=200", "-n", "shop"},
			path:   diagnosticsPrefix + "/namespaces/shop/metricexplanations/http_requests_per_second",
			params: url.Values{"type": {"object"}, "resource": {"deployments.apps"}, "name": {"web"}, "metricSelector": {"code=200"}}},
		{name: "object by short name, resolved through discovery",
			args:   []string{"http_requests_per_second", "--type", "object", "--resource", "deploy", "--name", "web", "-n", "shop"},
			path:   diagnosticsPrefix + "/namespaces/shop/metricexplanations/http_requests_per_second",
			params: url.Values{"type": {"object"}, "resource": {"deployments.apps"}, "name": {"web"}}},
		{name: "object of a cluster-scoped resource",
			args:   []string{"node_load", "--type", "object", "--resource", "node", "--name", "n1", "-n", "shop"},
			path:   diagnosticsPrefix + "/metricexplanations/node_load",
			params: url.Values{"type": {"object"}, "resource": {"nodes"}, "name": {"n1"}}},
		{name: "external",
			args:   []string{"http_requests_per_second", "--type", "external", "--metric-selector", "queue=orders", "-n", "shop"},
			path:   diagnosticsPrefix + "/namespaces/shop/metricexplanations/http_requests_per_second",
			params: url.Values{"type": {"external"}, "metricSelector": {"queue=orders"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.seen())
			res := runPlugin(t, kc, append([]string{"explain", "metric"}, tc.args...)...)
			if res.code != exitOK {
				t.Fatalf("exit %d, stderr: %s", res.code, res.stderr)
			}
			var found bool
			for _, req := range f.seen()[before:] {
				path, query, _ := strings.Cut(req, "?")
				if path != tc.path {
					continue
				}
				found = true
				got, err := url.ParseQuery(query)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.params, got); diff != "" {
					t.Errorf("query parameters (-want +got):\n%s", diff)
				}
			}
			if !found {
				t.Errorf("no request to %s; requests: %q", tc.path, f.seen()[before:])
			}
			if !strings.Contains(res.stdout, "Diagnosis: OK") {
				t.Errorf("output has no diagnosis:\n%s", res.stdout)
			}
		})
	}
}

// TestUsageErrors: the command line's mistakes exit 2 before any request.
func TestUsageErrors(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown command", args: []string{"explian"}, want: "unknown command"},
		{name: "explain hpa without a name", args: []string{"explain", "hpa"}, want: "takes NAME"},
		{name: "explain hpa with two names", args: []string{"explain", "hpa", "a", "b"}, want: "takes NAME"},
		{name: "unknown output", args: []string{"explain", "hpa", "web", "-o", "wide"}, want: `unknown output format "wide"`},
		{name: "unknown flag", args: []string{"doctor", "--frobnicate"}, want: "unknown flag"},
		{name: "-A on explain", args: []string{"explain", "hpa", "web", "-A"}, want: "unknown shorthand flag: 'A'"},
		{name: "-A with -n", args: []string{"doctor", "-A", "-n", "shop"}, want: "-A and -n cannot be used together"},
		{name: "metric without --type", args: []string{"explain", "metric", "m"}, want: "--type is required"},
		{name: "metric with a bad --type", args: []string{"explain", "metric", "m", "--type", "resource"}, want: `unknown --type "resource"`},
		{name: "object without --name", args: []string{"explain", "metric", "m", "--type", "object", "--resource", "services"}, want: "needs --resource and --name"},
		{name: "external with --name", args: []string{"explain", "metric", "m", "--type", "external", "--name", "x"}, want: "takes only --metric-selector"},
		{name: "pods with --name", args: []string{"explain", "metric", "m", "--type", "pods", "--name", "x"}, want: "select the pods with -l"},
		{name: "bad selector", args: []string{"explain", "metric", "m", "--type", "pods", "-l", "a in (b"}, want: "-l:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.seen())
			res := runPlugin(t, kc, tc.args...)
			if res.code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", res.code, exitUsage, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, res.stderr)
			}
			if n := len(f.seen()) - before; n != 0 {
				t.Errorf("a usage error made %d requests: %q", n, f.seen()[before:])
			}
		})
	}
}
