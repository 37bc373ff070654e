package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

// doctorJSON runs doctor -o json and decodes its report.
func doctorJSON(t *testing.T, kubeconfig string, args ...string) (report, result) {
	t.Helper()
	res := runPlugin(t, kubeconfig, append([]string{"doctor", "-o", "json"}, args...)...)
	var rep report
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("doctor -o json printed no report (%v), exit %d, stderr: %s\n%s", err, res.code, res.stderr, res.stdout)
	}
	return rep, res
}

// line is a check reduced to what a test asserts.
type line struct {
	Check   string
	Status  v1alpha1.DiagnosisStatus
	Subject string
	Reason  string // a part of the reason
}

func findCheck(rep report, what, subject string) (check, bool) {
	for _, c := range rep.Cluster {
		if c.Check == what && c.Subject == subject {
			return c, true
		}
	}
	return check{}, false
}

func TestDoctor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(f *fakeAPI)
		args   []string
		code   int
		status v1alpha1.DiagnosisStatus
		// cluster are checks that must be in the report (Subject exact,
		// Reason a substring).
		cluster []line
		hpas    []hpaCheck
		golden  string
	}{
		{
			name:  "healthy namespace",
			setup: func(f *fakeAPI) { healthyCluster(f, "shop") },
			args:  []string{"-n", "shop"},
			code:  exitOK, status: statusOK,
			cluster: []line{
				{"APIService", statusOK, diagnosticsAPIService, "Available, served by Gantry (gantry/gantry)"},
				{"Replicas", statusOK, "deployment gantry/gantry", "2 of 2 replicas ready"},
				{"Config", statusOK, "/etc/gantry/config.yaml", "3 rules, 1 external rules"},
				{"Discovery", statusOK, "relist", "12 custom and 2 external"},
				{"MetricRule", statusOK, "metricrules.gantry.dev", "1 of 1 Ready"},
				{"Backend", statusOK, "prometheus", "up"},
				{"APIService", statusOK, "v1beta1.metrics.k8s.io", "Available"},
			},
			hpas: []hpaCheck{{Namespace: "shop", HPA: "web", Metric: "Pods http_requests_per_second", Status: statusOK,
				Reason: "served from 2 of 2 pods; the HPA proposes 3 replicas"}},
			golden: "doctor-ok.txt",
		},
		{
			name: "all namespaces, one metric failing, another adapter on metrics.k8s.io, a MetricRule not Ready",
			setup: func(f *fakeAPI) {
				healthyCluster(f, "shop", "team-a")
				f.set(hpaExplanationPath("team-a", "web"), hpaExplanation("team-a", "web", healthyMetric("team-a"), podNameMetric("team-a")))
				var svcs []any
				for _, name := range append([]string{diagnosticsAPIService}, metricsAPIServices...) {
					group := strings.SplitN(name, ".", 2)[1]
					ns, svc := "gantry", "gantry"
					if group == "metrics.k8s.io" {
						ns, svc = "kube-system", "metrics-server"
					}
					svcs = append(svcs, apiServiceObj(name, group, ns, svc, true))
				}
				f.set(apiServicesPath, list("APIServiceList", svcs...))
				f.set(metricRulesPath(""), list("MetricRuleList", metricRule("shop", "web", true), metricRule("team-a", "queue", false)))
			},
			args: []string{"-A"},
			code: exitFailed, status: statusFail,
			cluster: []line{
				{"APIService", statusWarn, "v1beta1.metrics.k8s.io", "served by kube-system/metrics-server (metrics-server), not Gantry"},
				{"MetricRule", statusWarn, "team-a/queue", "not Ready (NoSeries): spec.rules[0]: seriesQuery matches no series"},
			},
			hpas: []hpaCheck{
				{Namespace: "shop", HPA: "web", Metric: "Pods http_requests_per_second", Status: statusOK, Reason: "served from 2 of 2 pods; the HPA proposes 3 replicas"},
				{Namespace: "team-a", HPA: "web", Metric: "Pods http_requests_per_second", Status: statusOK, Reason: "served from 2 of 2 pods; the HPA proposes 3 replicas"},
				{Namespace: "team-a", HPA: "web", Metric: "Pods queue_depth", Status: statusFail,
					Reason: `no pod has a value: the series carry "pod_name" where rules[0] maps "pod"`,
					Hint:   "map the label in the rule: resources.overrides: {pod_name: {resource: pod}}; kubectl gantry explain hpa web -n team-a"},
			},
			golden: "doctor-all-namespaces.txt",
		},
		{
			name: "Gantry down: APIServices not Available, no replica ready, explanations unavailable",
			setup: func(f *fakeAPI) {
				healthyCluster(f, "shop")
				var svcs []any
				for _, name := range append([]string{diagnosticsAPIService}, metricsAPIServices...) {
					svcs = append(svcs, apiServiceObj(name, strings.SplitN(name, ".", 2)[1], "gantry", "gantry", false))
				}
				f.set(apiServicesPath, list("APIServiceList", svcs...))
				f.set("/apis/apiregistration.k8s.io/v1/apiservices/"+diagnosticsAPIService, svcs[0])
				f.set("/apis/apps/v1/namespaces/gantry/deployments", list("DeploymentList", map[string]any{
					"metadata": map[string]any{"name": "gantry", "namespace": "gantry"},
					"spec": map[string]any{"replicas": 2, "selector": map[string]any{},
						"template": map[string]any{"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "gantry"}}}},
					"status": map[string]any{"readyReplicas": 0},
				}))
				f.unavailable[hpaExplanationPath("shop", "web")] = true
				f.unavailable[statusPath] = true
			},
			args: []string{"-n", "shop"},
			code: exitFailed, status: statusFail,
			cluster: []line{
				{"APIService", statusFail, "v1beta2.custom.metrics.k8s.io", "NOT Available: MissingEndpoints"},
				{"Replicas", statusFail, "deployment gantry/gantry", "0 of 2 replicas ready"},
				{"Config", statusFail, "statuses/gantry", "APIService v1alpha1.diagnostics.gantry.dev is not Available"},
			},
			hpas: []hpaCheck{{Namespace: "shop", HPA: "web", Status: statusFail,
				Reason: "cannot explain: Gantry's diagnostics API is unavailable: APIService v1alpha1.diagnostics.gantry.dev is not Available (MissingEndpoints: endpoints for service/gantry in \"gantry\" have no addresses with port name \"https\")",
				Hint:   "is Gantry running? kubectl -n gantry get pods; kubectl describe apiservice v1alpha1.diagnostics.gantry.dev"}},
			golden: "doctor-gantry-down.txt",
		},
		{
			name: "backend down, reload failed, MetricRule CRD not installed, diagnostics APIService missing",
			setup: func(f *fakeAPI) {
				healthyCluster(f, "shop")
				f.set(statusPath, &v1alpha1.GantryStatus{
					Config:    v1alpha1.ConfigStatus{File: "/etc/gantry/config.yaml", Rules: 3, LastReloadError: "rules[2] (x): metricsQuery: rendered query does not parse"},
					Discovery: v1alpha1.DiscoveryStatus{Ready: true},
					Backends:  []v1alpha1.BackendStatus{{Name: "prometheus", Up: true}, {Name: "loki", Message: "connection refused"}},
				})
				f.set(metricRulesPath("shop"), nil)
				delete(f.objects, metricRulesPath("shop"))
				var svcs []any
				for _, name := range metricsAPIServices {
					svcs = append(svcs, apiServiceObj(name, strings.SplitN(name, ".", 2)[1], "gantry", "gantry", true))
				}
				f.set(apiServicesPath, list("APIServiceList", svcs...))
			},
			args: []string{"-n", "shop"},
			code: exitFailed, status: statusFail,
			cluster: []line{
				{"APIService", statusFail, diagnosticsAPIService, "not registered"},
				{"Backend", statusFail, "loki", "down: connection refused"},
				{"Config", statusWarn, "/etc/gantry/config.yaml", "last reload failed, the previous config is still served"},
				{"MetricRule", statusOK, "metricrules.gantry.dev", "CRD not installed"},
			},
			hpas: []hpaCheck{{Namespace: "shop", HPA: "web", Metric: "Pods http_requests_per_second", Status: statusOK,
				Reason: "served from 2 of 2 pods; the HPA proposes 3 replicas"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeAPI(t)
			kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
			tc.setup(f)
			rep, res := doctorJSON(t, kc, tc.args...)
			if res.code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", res.code, tc.code, res.stderr)
			}
			if rep.Status != tc.status {
				t.Errorf("report status %s, want %s", rep.Status, tc.status)
			}
			for _, want := range tc.cluster {
				what := want.Check
				c, ok := findCheck(rep, what, want.Subject)
				if !ok {
					t.Errorf("no %s check of %s in %+v", what, want.Subject, rep.Cluster)
					continue
				}
				if c.Status != want.Status || !strings.Contains(c.Reason, want.Reason) {
					t.Errorf("%s %s: %s %q, want %s containing %q", what, want.Subject, c.Status, c.Reason, want.Status, want.Reason)
				}
			}
			if diff := cmp.Diff(tc.hpas, rep.HPAs); diff != "" {
				t.Errorf("HPA checks (-want +got):\n%s", diff)
			}
			var n counts
			for _, c := range rep.Cluster {
				n.add(c.Status)
			}
			for _, h := range rep.HPAs {
				n.add(h.Status)
			}
			if n != rep.Counts {
				t.Errorf("counts %+v, but the checks count %+v", rep.Counts, n)
			}
			// The text report: same exit status, and readable.
			text := runPlugin(t, kc, append([]string{"doctor"}, tc.args...)...)
			if text.code != tc.code {
				t.Errorf("text: exit %d, want %d", text.code, tc.code)
			}
			if tc.golden != "" {
				golden(t, tc.golden, text.stdout)
			}
		})
	}
}

// TestDoctorScope: -n, -A and the context's namespace decide which HPAs and
// MetricRules are read.
func TestDoctorScope(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	healthyCluster(f, "shop", "a-ns")
	for _, tc := range []struct {
		name string
		args []string
		want []string // paths that must have been read
		not  []string
	}{
		{name: "context namespace", want: []string{hpaListPath("a-ns"), metricRulesPath("a-ns"), hpaExplanationPath("a-ns", "web")},
			not: []string{hpaListPath(""), hpaListPath("shop")}},
		{name: "-n", args: []string{"-n", "shop"}, want: []string{hpaListPath("shop"), metricRulesPath("shop"), hpaExplanationPath("shop", "web")},
			not: []string{hpaListPath(""), hpaListPath("a-ns")}},
		{name: "-A", args: []string{"-A"}, want: []string{hpaListPath(""), metricRulesPath(""), hpaExplanationPath("shop", "web"), hpaExplanationPath("a-ns", "web")},
			not: []string{hpaListPath("shop")}},
		{name: "--all-namespaces", args: []string{"--all-namespaces"}, want: []string{hpaListPath("")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.seen())
			rep, res := doctorJSON(t, kc, tc.args...)
			if res.code != exitOK {
				t.Fatalf("exit %d; stderr %s", res.code, res.stderr)
			}
			seen := map[string]bool{}
			for _, p := range f.seen()[before:] {
				path, _, _ := strings.Cut(p, "?")
				seen[path] = true
			}
			for _, p := range tc.want {
				if !seen[p] {
					t.Errorf("%s not read; read: %v", p, f.seen()[before:])
				}
			}
			for _, p := range tc.not {
				if seen[p] {
					t.Errorf("%s read, but it is out of scope", p)
				}
			}
			if wantAll := len(tc.args) > 0 && strings.HasPrefix(tc.args[0], "-A") || len(tc.args) > 0 && tc.args[0] == "--all-namespaces"; rep.AllNamespaces != wantAll {
				t.Errorf("allNamespaces = %v", rep.AllNamespaces)
			}
		})
	}
}

// TestDoctorForbidden: a user who may not read something is told which
// permission is missing; cluster checks they may not make are WARN, HPAs
// they may not see are FAIL.
func TestDoctorForbidden(t *testing.T) {
	t.Run("namespace developer: cluster checks not allowed", func(t *testing.T) {
		f, srv := newFakeAPI(t)
		kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
		healthyCluster(f, "team-a")
		for _, p := range []string{apiServicesPath, "/api/v1/namespaces/gantry/services/gantry", statusPath} {
			f.forbid(p)
		}
		rep, res := doctorJSON(t, kc, "-n", "team-a")
		if res.code != exitOK {
			t.Errorf("exit %d, want 0 (nothing FAILs; the checks not made are WARN)", res.code)
		}
		want := map[string]string{
			"APIService": "list apiservices.apiregistration.k8s.io (cluster-wide)",
			"Replicas":   `get services in namespace "gantry"`,
			"Config":     "get statuses.diagnostics.gantry.dev (cluster-wide)",
		}
		for what, perm := range want {
			var found bool
			for _, c := range rep.Cluster {
				if c.Check != what {
					continue
				}
				found = true
				if c.Status != statusWarn || c.MissingPermission != perm || !strings.Contains(c.Reason, "missing permission to "+perm) {
					t.Errorf("%s: %s %q missingPermission %q, want WARN naming %q", what, c.Status, c.Reason, c.MissingPermission, perm)
				}
			}
			if !found {
				t.Errorf("no %s check", what)
			}
		}
		if c, _ := findCheck(rep, "Config", "statuses/gantry"); !strings.Contains(c.Hint, "gantry-diagnostics-status") {
			t.Errorf("the status check's hint does not name the ClusterRole: %q", c.Hint)
		}
		if len(rep.HPAs) != 1 || rep.HPAs[0].Status != statusOK {
			t.Errorf("HPA checks: %+v", rep.HPAs)
		}
		text := runPlugin(t, kc, "doctor", "-n", "team-a")
		golden(t, "doctor-forbidden.txt", text.stdout)
	})

	t.Run("another namespace's HPAs", func(t *testing.T) {
		f, srv := newFakeAPI(t)
		kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
		healthyCluster(f, "team-a", "team-b")
		f.forbid(hpaListPath("team-b"))
		f.forbid(metricRulesPath("team-b"))
		rep, res := doctorJSON(t, kc, "-n", "team-b")
		if res.code != exitFailed {
			t.Errorf("exit %d, want %d", res.code, exitFailed)
		}
		want := []hpaCheck{{Namespace: "team-b", Status: statusFail,
			Reason:            `cannot list HPAs: missing permission to list horizontalpodautoscalers.autoscaling in namespace "team-b"`,
			Hint:              "ask for a RoleBinding to the ClusterRole view in namespace team-b",
			MissingPermission: `list horizontalpodautoscalers.autoscaling in namespace "team-b"`}}
		if diff := cmp.Diff(want, rep.HPAs); diff != "" {
			t.Errorf("HPA checks (-want +got):\n%s", diff)
		}
		if c, ok := findCheck(rep, "MetricRule", "metricrules.gantry.dev"); !ok || c.MissingPermission != `list metricrules.gantry.dev in namespace "team-b"` {
			t.Errorf("MetricRule check: %+v", c)
		}
	})

	t.Run("HPAs visible, explanations not", func(t *testing.T) {
		f, srv := newFakeAPI(t)
		kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
		healthyCluster(f, "team-a")
		f.forbid(hpaExplanationPath("team-a", "web"))
		rep, res := doctorJSON(t, kc, "-n", "team-a")
		if res.code != exitFailed {
			t.Errorf("exit %d, want %d", res.code, exitFailed)
		}
		if len(rep.HPAs) != 1 || rep.HPAs[0].MissingPermission != `get hpaexplanations.diagnostics.gantry.dev in namespace "team-a"` ||
			!strings.Contains(rep.HPAs[0].Hint, "gantry-diagnostics-view") {
			t.Errorf("HPA checks: %+v", rep.HPAs)
		}
	})

	t.Run("APIServices not readable, Gantry's status tells", func(t *testing.T) {
		f, srv := newFakeAPI(t)
		kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
		healthyCluster(f, "team-a")
		f.forbid(apiServicesPath)
		f.set(statusPath, &v1alpha1.GantryStatus{
			Config:    v1alpha1.ConfigStatus{File: "/etc/gantry/config.yaml"},
			Discovery: v1alpha1.DiscoveryStatus{Ready: true},
			APIs: []v1alpha1.APIInfo{
				{APIService: "v1beta2.custom.metrics.k8s.io", Found: true, Available: true, ServedByGantry: true, Service: "gantry/gantry"},
				{APIService: "v1beta1.external.metrics.k8s.io", Found: true, Available: true, Service: "keda/keda-operator-metrics-apiserver"},
			},
		})
		rep, _ := doctorJSON(t, kc, "-n", "team-a")
		if c, ok := findCheck(rep, "APIService", "v1beta1.external.metrics.k8s.io"); !ok || c.Status != statusWarn || !strings.Contains(c.Reason, "KEDA") {
			t.Errorf("external APIService from Gantry's status: %+v", c)
		}
		if c, ok := findCheck(rep, "APIService", "apiservices"); !ok || c.MissingPermission == "" {
			t.Errorf("the 403 on APIServices is not reported: %+v", c)
		}
	})
}

// TestDoctorExternalName: an ExternalName service (Gantry outside the
// cluster, as in the local stack) has no replicas to count: a WARN that
// says so, which leaves doctor's exit status 0 on a healthy cluster.
func TestDoctorExternalName(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	healthyCluster(f, "shop")
	f.set("/api/v1/namespaces/gantry/services/gantry", map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "gantry", "namespace": "gantry"},
		"spec":     map[string]any{"type": "ExternalName", "externalName": "gantry.example.test"}})
	rep, res := doctorJSON(t, kc, "-n", "shop")
	c, ok := findCheck(rep, "Replicas", "service gantry/gantry")
	if !ok || c.Status != statusWarn || !strings.Contains(c.Reason, "ExternalName service (gantry.example.test)") {
		t.Errorf("replicas check %+v (found %v), want a WARN naming the ExternalName", c, ok)
	}
	if res.code != 0 {
		t.Errorf("doctor exit %d on an otherwise healthy cluster, want 0\n%s", res.code, res.stderr)
	}
	if seen := f.seen(); contains(seen, "/apis/discovery.k8s.io/v1/namespaces/gantry/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dgantry") {
		t.Errorf("endpoint slices of an ExternalName service were listed: %q", seen)
	}
}

// TestDoctorEndpoints: a service without a selector (Gantry outside a
// deployment) is judged by its ready endpoints.
func TestDoctorEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ready  []bool
		status v1alpha1.DiagnosisStatus
		reason string
	}{
		{name: "all ready", ready: []bool{true, true}, status: statusOK, reason: "2 of 2 endpoints ready"},
		{name: "one of two", ready: []bool{true, false}, status: statusWarn, reason: "1 of 2 endpoints ready"},
		{name: "none", ready: []bool{false}, status: statusFail, reason: "0 of 1 endpoints ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeAPI(t)
			kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
			healthyCluster(f, "shop")
			f.set("/api/v1/namespaces/gantry/services/gantry", map[string]any{"apiVersion": "v1", "kind": "Service",
				"metadata": map[string]any{"name": "gantry", "namespace": "gantry"}, "spec": map[string]any{}})
			var eps []any
			for _, r := range tc.ready {
				eps = append(eps, map[string]any{"addresses": []any{"127.0.0.1"}, "conditions": map[string]any{"ready": r}})
			}
			f.set("/apis/discovery.k8s.io/v1/namespaces/gantry/endpointslices", map[string]any{
				"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": map[string]any{},
				"items": []any{map[string]any{"metadata": map[string]any{"name": "gantry-1", "namespace": "gantry",
					"labels": map[string]any{"kubernetes.io/service-name": "gantry"}}, "addressType": "IPv4", "endpoints": eps}},
			})
			rep, _ := doctorJSON(t, kc, "-n", "shop")
			c, ok := findCheck(rep, "Replicas", "service gantry/gantry")
			if !ok || c.Status != tc.status || !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("replicas check %+v (found %v), want %s %q", c, ok, tc.status, tc.reason)
			}
			if seen := f.seen(); !contains(seen, "/apis/discovery.k8s.io/v1/namespaces/gantry/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dgantry") {
				t.Errorf("endpoint slices not listed by the service's label: %q", seen)
			}
		})
	}
}

// TestDoctorUnreachable: a cluster that cannot be reached is one error, not
// a FAIL per check.
func TestDoctorUnreachable(t *testing.T) {
	_, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	srv.Close()
	res := runPlugin(t, kc, "doctor", "-n", "shop")
	if res.code != exitFailed || res.stdout != "" || !strings.Contains(res.stderr, "cannot reach the kube-apiserver") {
		t.Errorf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// TestDoctorGantryService: --gantry-namespace/--gantry-service name
// Gantry's service; without them it is learnt from the diagnostics
// APIService.
func TestDoctorGantryService(t *testing.T) {
	f, srv := newFakeAPI(t)
	kc := writeKubeconfig(t, "a", map[string]string{"a": srv.URL})
	healthyCluster(f, "shop")
	// Gantry runs as monitoring/metrics-adapter.
	var svcs []any
	for _, name := range append([]string{diagnosticsAPIService}, metricsAPIServices...) {
		svcs = append(svcs, apiServiceObj(name, strings.SplitN(name, ".", 2)[1], "monitoring", "metrics-adapter", true))
	}
	f.set(apiServicesPath, list("APIServiceList", svcs...))
	f.set("/api/v1/namespaces/monitoring/services/metrics-adapter", f.objects["/api/v1/namespaces/gantry/services/gantry"])
	f.set("/apis/apps/v1/namespaces/monitoring/deployments", f.objects["/apis/apps/v1/namespaces/gantry/deployments"])

	rep, res := doctorJSON(t, kc, "-n", "shop")
	if res.code != exitOK {
		t.Errorf("learnt from the APIService: exit %d: %+v", res.code, rep.Cluster)
	}
	if c, ok := findCheck(rep, "Replicas", "deployment monitoring/gantry"); !ok || c.Status != statusOK {
		t.Errorf("replicas of monitoring/metrics-adapter not checked: %+v", rep.Cluster)
	}

	// Named wrongly on the command line: every APIService is another's.
	rep, res = doctorJSON(t, kc, "-n", "shop", "--gantry-namespace", "gantry", "--gantry-service", "gantry")
	if res.code != exitFailed {
		t.Errorf("with the wrong service: exit %d, want %d", res.code, exitFailed)
	}
	if c, _ := findCheck(rep, "APIService", diagnosticsAPIService); c.Status != statusFail || !strings.Contains(c.Reason, "not at Gantry's service gantry/gantry") {
		t.Errorf("diagnostics APIService: %+v", c)
	}
}
