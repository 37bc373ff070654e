package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/checkconfig"
	"github.com/gantry-dev/gantry/collectors/backend/backendtest"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/vpa"
)

// noCluster makes sure nothing can reach a Kubernetes API server: no
// in-cluster environment and a kubeconfig that does not exist.
func noCluster(t *testing.T) {
	t.Helper()
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-such-kubeconfig"))
}

func runGantry(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, &out, &errOut) }()
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("gantry %q did not return", args)
	}
	return code, out.String(), errOut.String()
}

// TestCheckConfig runs `gantry check-config` on files without a backend.
func TestCheckConfig(t *testing.T) {
	noCluster(t)
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string // each must appear in stderr; none means stderr is empty
	}{{
		name:       "good file: a summary on stdout",
		args:       []string{"check-config", "--config", "testdata/good.yaml"},
		wantCode:   0,
		wantStdout: "testdata/good.yaml: ok: 2 rules, 1 external rules, resource rules: true\n",
	}, {
		name:     "broken file: every problem, each naming file, rule and field",
		args:     []string{"check-config", "--config", "testdata/broken.yaml"},
		wantCode: 1,
		wantStderr: []string{
			"testdata/broken.yaml: rules[0] (http_requests_total): metricsQuery: rendered query does not parse",
			`testdata/broken.yaml:14: rules[1] (queue_length): unknown field "metricQuery", did you mean "metricsQuery"?`,
		},
	}, {
		name:     "resource a built-in API group lacks: named with its rule and field",
		args:     []string{"check-config", "--config", "testdata/unknown-resource.yaml"},
		wantCode: 1,
		wantStderr: []string{
			`testdata/unknown-resource.yaml: rules[0] (widget_spins_total): resources: overrides.deployment: resource "deploymnets"`,
		},
	}, {
		// prometheus-adapter's docs/sample-config.yaml names brands.cheese.io.
		name:     "resource of another API group (a CRD): a warning, not a failure",
		args:     []string{"check-config", "--config", "testdata/crd-resource.yaml"},
		wantCode: 0,
		wantStdout: `testdata/crd-resource.yaml: ok: 1 rules, 0 external rules, resource rules: false
testdata/crd-resource.yaml: warning: rules[0] (widget_spins_total): resources.overrides.widget: resource "widget" of group "example.com" is not built into Kubernetes (a custom resource?) and was not checked; pass --kubeconfig to check it against a cluster
`,
	}, {
		name:       "a resource served in several versions (apps deployments) resolves as in a cluster",
		args:       []string{"check-config", "--config", "testdata/sources.yaml"},
		wantCode:   0,
		wantStdout: "testdata/sources.yaml: ok: 1 rules, 1 external rules, resource rules: false\n",
	}, {
		name:       "--kubeconfig that cannot be read",
		args:       []string{"check-config", "--config", "testdata/crd-resource.yaml", "--kubeconfig", "testdata/no-such-kubeconfig"},
		wantCode:   1,
		wantStderr: []string{"gantry check-config: kubeconfig testdata/no-such-kubeconfig: "},
	}, {
		name:     "rules that name the same metric: a warning naming them and which answers",
		args:     []string{"check-config", "--config", "testdata/conflicts.yaml"},
		wantCode: 0,
		wantStdout: `testdata/conflicts.yaml: ok: 2 rules, 2 external rules, resource rules: false
testdata/conflicts.yaml: warning: conflict: external metric "backlog" is named by externalRules[0] (backlog), then externalRules[1] (backlog): whenever they find series, the last answers for it, as in prometheus-adapter
`,
	}, {
		name:       "double quotes in a double-quoted query: the line of the query, not of its rule",
		args:       []string{"check-config", "--config", "testdata/quotes.yaml"},
		wantCode:   1,
		wantStderr: []string{`testdata/quotes.yaml:12: did not find expected key (a double-quoted value ends at the next "`},
	}, {
		name:       "missing file",
		args:       []string{"check-config", "--config", "testdata/nope.yaml"},
		wantCode:   1,
		wantStderr: []string{"testdata/nope.yaml"},
	}, {
		name:       "no --config",
		args:       []string{"check-config"},
		wantCode:   2,
		wantStderr: []string{"gantry check-config: --config is required"},
	}, {
		name:       "unknown flag",
		args:       []string{"check-config", "--config", "testdata/good.yaml", "--no-such-flag"},
		wantCode:   2,
		wantStderr: []string{"unknown flag: --no-such-flag"},
	}, {
		name:       "help",
		args:       []string{"check-config", "--help"},
		wantCode:   0,
		wantStderr: []string{"--config string", "--prometheus-url string"},
	}, {
		name:       "bad Prometheus connection flags",
		args:       []string{"check-config", "--config", "testdata/good.yaml", "--prometheus-url", "http://127.0.0.1:9090", "--prometheus-header", "X-Scope-OrgID"},
		wantCode:   1,
		wantStderr: []string{`--prometheus-header "X-Scope-OrgID": expected Name=Value`},
	}, {
		name:       "bad Prometheus URL",
		args:       []string{"check-config", "--config", "testdata/good.yaml", "--prometheus-url", "prometheus:9090"},
		wantCode:   1,
		wantStderr: []string{`prometheus URL "prometheus:9090": expected http(s)://host[:port][/path]`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runGantry(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if diff := cmp.Diff(tc.wantStdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if len(tc.wantStderr) == 0 && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not contain %q", stderr, s)
				}
			}
		})
	}
}

// TestCheckConfigAgainstPrometheus lists each rule's series in a real
// Prometheus: the report counts the metrics per rule and warns about the
// rules that match nothing.
func TestCheckConfigAgainstPrometheus(t *testing.T) {
	noCluster(t)
	srv := prom.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	var samples []prom.Sample
	for _, l := range []map[string]string{
		{"__name__": "http_requests_total", "namespace": "shop", "pod": "web-1"},
		{"__name__": "http_requests_total", "namespace": "shop", "pod": "web-2"},
		{"__name__": "queue_depth", "queue": "orders"},
		{"__name__": "queue_depth", "queue": "emails"},
		// Not what rules[1] selects (it wants a deployment label).
		{"__name__": "jobs_queued", "namespace": "shop", "team": "a"},
	} {
		for ts := now.Add(-5 * time.Minute); !ts.After(now); ts = ts.Add(30 * time.Second) {
			samples = append(samples, prom.Sample{Labels: l, Value: 1, Time: ts})
		}
	}
	if err := srv.Write(ctx, samples); err != nil {
		t.Fatal(err)
	}
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return "http://" + l.Addr().String()
	}()

	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{{
		name:     "metrics per rule, and a warning for the rule that matches nothing",
		args:     []string{"check-config", "--config", "testdata/good.yaml", "--prometheus-url", srv.URL()},
		wantCode: 0,
		wantStdout: `testdata/good.yaml: ok: 2 rules, 1 external rules, resource rules: true
  externalRules[0] (queue_depth): 1 metrics
  rules[0] (http_requests_total): 1 metrics
  rules[1] (jobs_queued): 0 metrics
testdata/good.yaml: warning: these rules match no series now: rules[1] (jobs_queued)
`,
	}, {
		name:     "series older than --metrics-max-age do not count",
		args:     []string{"check-config", "--config", "testdata/good.yaml", "--prometheus-url", srv.URL(), "--metrics-max-age", "1ms"},
		wantCode: 0,
		wantStdout: `testdata/good.yaml: ok: 2 rules, 1 external rules, resource rules: true
  externalRules[0] (queue_depth): 0 metrics
  rules[0] (http_requests_total): 0 metrics
  rules[1] (jobs_queued): 0 metrics
testdata/good.yaml: warning: these rules match no series now: rules[0] (http_requests_total), rules[1] (jobs_queued), externalRules[0] (queue_depth)
`,
	}, {
		name:     "rules yielding the same metric from the series listed: each rule and series, and which answers",
		args:     []string{"check-config", "--config", "testdata/conflicts.yaml", "--prometheus-url", srv.URL()},
		wantCode: 0,
		wantStdout: `testdata/conflicts.yaml: ok: 2 rules, 2 external rules, resource rules: false
  externalRules[0] (backlog): 1 metrics
  externalRules[1] (backlog): 1 metrics
  rules[0] (http_requests_total): 1 metrics
  rules[1] (^(.*)_total$): 1 metrics
testdata/conflicts.yaml: warning: conflict: custom metric "http_requests" of pods is yielded by rules[0] (http_requests_total) series http_requests_total, then rules[1] (^(.*)_total$) series http_requests_total: the last answers for it, as in prometheus-adapter
testdata/conflicts.yaml: warning: conflict: external metric "backlog" is yielded by externalRules[0] (backlog) series queue_depth, then externalRules[1] (backlog) series jobs_queued: the last answers for it, as in prometheus-adapter
`,
	}, {
		name:     "a rule whose series cannot be listed: the file tells of its conflict",
		args:     []string{"check-config", "--config", "testdata/conflicts-local.yaml", "--prometheus-url", srv.URL()},
		wantCode: 0,
		wantStdout: `testdata/conflicts-local.yaml: ok: 2 rules, 0 external rules, resource rules: false
  rules[1] (unavailable_replicas): 1 metrics
testdata/conflicts-local.yaml: note: not checked against a backend: rules[0] (unavailable_replicas): the local store exists only inside a running Gantry
testdata/conflicts-local.yaml: warning: conflict: custom metric "unavailable_replicas" of namespaces is named by rules[0] (unavailable_replicas), then rules[1] (unavailable_replicas): whenever they find series, the last answers for it, as in prometheus-adapter
`,
	}, {
		name:       "Prometheus unreachable: the rule whose listing failed, not the address",
		args:       []string{"check-config", "--config", "testdata/good.yaml", "--prometheus-url", closed},
		wantCode:   1,
		wantStderr: []string{"testdata/good.yaml: rules[0] (http_requests_total): listing series", "prometheus: unreachable", "connection refused"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runGantry(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if diff := cmp.Diff(tc.wantStdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if len(tc.wantStderr) == 0 && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not contain %q", stderr, s)
				}
			}
			if strings.Contains(stderr, strings.TrimPrefix(closed, "http://")) {
				t.Errorf("stderr names the backend's address: %q", stderr)
			}
		})
	}
}

// TestCheckConfigWithKubeconfig resolves resources through a real cluster's
// discovery: a CRD's resource, which the offline check only warns about, is
// known, and one no cluster serves is an error, as when Gantry starts.
func TestCheckConfigWithKubeconfig(t *testing.T) {
	noCluster(t)
	c := cluster.StartT(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := vpa.ApplyCRDs(ctx, c.RESTConfig(), "testdata/widgets-crd.yaml"); err != nil {
		t.Fatal(err)
	}
	// Established is not yet served by discovery: wait for that.
	widgets := schema.GroupVersionResource{Group: "example.com", Resource: "widget"}
	for {
		m, err := checkconfig.ClusterMapper(ctx, c.KubeconfigPath())
		if err == nil {
			if _, err = m.ResourceFor(widgets); err == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("widgets.example.com not in the cluster's discovery: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string
	}{{
		name:       "a CRD's resource the cluster serves: no warning",
		args:       []string{"check-config", "--config", "testdata/crd-resource.yaml", "--kubeconfig", c.KubeconfigPath()},
		wantCode:   0,
		wantStdout: "testdata/crd-resource.yaml: ok: 1 rules, 0 external rules, resource rules: false\n",
	}, {
		name:       "a resource the cluster does not serve: an error naming rule and field",
		args:       []string{"check-config", "--config", "testdata/gadget-resource.yaml", "--kubeconfig", c.KubeconfigPath()},
		wantCode:   1,
		wantStderr: []string{`testdata/gadget-resource.yaml: rules[0] (gadget_spins_total): resources: overrides.gadget: resource "gadget"`},
	}, {
		name:       "built-in resources resolve through the cluster too",
		args:       []string{"check-config", "--config", "testdata/sources.yaml", "--kubeconfig", c.KubeconfigPath()},
		wantCode:   0,
		wantStdout: "testdata/sources.yaml: ok: 1 rules, 1 external rules, resource rules: false\n",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runGantry(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			if diff := cmp.Diff(tc.wantStdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if len(tc.wantStderr) == 0 && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not contain %q", stderr, s)
				}
			}
		})
	}
}

// TestServeFailsFast checks that the server refuses bad flags and config
// files before it needs a cluster: there is none here, so a check that came
// after contacting one would report the cluster instead.
func TestServeFailsFast(t *testing.T) {
	noCluster(t)
	auth := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(auth, []byte("bearer_tokn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{{
		name:       "no --prometheus-url",
		args:       []string{"--config", "testdata/good.yaml"},
		wantCode:   1,
		wantStderr: []string{"testdata/good.yaml: rules[0] (", "metricsQuery: needs --prometheus-url", "resourceRules: need --prometheus-url"},
	}, {
		name:       "no flags at all: every missing flag at once",
		args:       nil,
		wantCode:   1,
		wantStderr: []string{"--config is required"},
	}, {
		name:       "rules for backends that were not given: each names its flag",
		args:       []string{"--config", "testdata/sources.yaml"},
		wantCode:   1,
		wantStderr: []string{"rules[0] (unavailable_replicas): source local: nothing feeds the local store: set --kube-state-metrics-url or --kubelet-cadvisor", "externalRules[0] (web_errors_per_second): logqlQuery: needs --loki-url"},
	}, {
		name:       "bad --resource-metrics",
		args:       []string{"--config", "testdata/good.yaml", "--prometheus-url", "http://127.0.0.1:9090", "--resource-metrics", "cadvisor"},
		wantCode:   1,
		wantStderr: []string{`--resource-metrics: "cadvisor" is not one of auto, rules, kubelet, none`},
	}, {
		name:       "bad durations",
		args:       []string{"--config", "testdata/good.yaml", "--prometheus-url", "http://127.0.0.1:9090", "--metrics-relist-interval", "0s", "--backend-timeout", "-1s"},
		wantCode:   1,
		wantStderr: []string{"--metrics-relist-interval must be positive", "--backend-timeout must be positive"},
	}, {
		name:       "broken config file",
		args:       []string{"--config", "testdata/broken.yaml", "--prometheus-url", "http://127.0.0.1:9090"},
		wantCode:   1,
		wantStderr: []string{"testdata/broken.yaml: rules[0] (http_requests_total): metricsQuery:", "rules[1] (queue_length)"},
	}, {
		name:       "bad --prometheus-auth-config",
		args:       []string{"--config", "testdata/good.yaml", "--prometheus-url", "http://127.0.0.1:9090", "--prometheus-auth-config", auth},
		wantCode:   1,
		wantStderr: []string{"--prometheus-auth-config " + auth, "bearer_tokn"},
	}, {
		name:       "bad --prometheus-url",
		args:       []string{"--config", "testdata/good.yaml", "--prometheus-url", "prometheus:9090"},
		wantCode:   1,
		wantStderr: []string{`prometheus URL "prometheus:9090"`},
	}, {
		name:       "unknown flag",
		args:       []string{"--config", "testdata/good.yaml", "--no-such-flag"},
		wantCode:   2,
		wantStderr: []string{"unknown flag: --no-such-flag"},
	}, {
		name:       "everything valid: only now is the cluster needed",
		args:       []string{"--config", "testdata/good.yaml", "--prometheus-url", "http://127.0.0.1:9090"},
		wantCode:   1,
		wantStderr: []string{"gantry: building the REST mapper from the cluster's discovery"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runGantry(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.wantCode, stderr)
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not contain %q", stderr, s)
				}
			}
			if tc.name != "everything valid: only now is the cluster needed" && strings.Contains(stderr, "cluster") {
				t.Errorf("stderr mentions the cluster: validation must come before contacting it: %q", stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		t.Run(arg, func(t *testing.T) {
			code, stdout, stderr := runGantry(t, arg)
			if code != 0 || stdout != "gantry dev\n" || stderr != "" {
				t.Errorf("gantry %s = %d, %q, %q; want 0, %q, nothing", arg, code, stdout, stderr, "gantry dev\n")
			}
		})
	}
}

// TestCheckConfigTenants: for a backend with tenants, check-config lists
// each tenant's series under that tenant's header and reports what each
// yields.
func TestCheckConfigTenants(t *testing.T) {
	noCluster(t)
	api := backendtest.NewAPI(t, func(w http.ResponseWriter, r *http.Request) {
		// tenant-a has two pods' series, tenant-b one of another name.
		series := map[string]string{
			"tenant-a": `{"__name__":"http_requests_total","namespace":"a","pod":"web-1"},{"__name__":"http_requests_total","namespace":"a","pod":"web-2"}`,
			"tenant-b": `{"__name__":"http_errors_total","namespace":"b","pod":"web-1"}`,
		}[r.Header.Get("X-Scope-OrgID")]
		fmt.Fprintf(w, `{"status":"success","data":[%s]}`, series)
	})
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	cfg := `backends:
- name: cortex
  type: prometheus
  url: ` + api.URL + `
  tenant: {byNamespace: {a: tenant-a, b: tenant-b}}
rules:
- seriesQuery: '{__name__=~"http_.*_total",namespace!="",pod!=""}'
  backend: cortex
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// --offline validates the file and asks no backend.
	code, stdout, stderr := runGantry(t, "check-config", "--offline", "--config", file)
	if want := file + ": ok: 1 rules, 0 external rules, resource rules: false\n"; code != 0 || stdout != want || len(api.Seen()) != 0 {
		t.Errorf("check-config --offline: exit %d, %d backend requests\nstdout:\n%s\nwant:\n%s\nstderr: %s", code, len(api.Seen()), stdout, want, stderr)
	}
	code, stdout, stderr = runGantry(t, "check-config", "--config", file)
	want := file + `: ok: 1 rules, 0 external rules, resource rules: false
  rules[0] (^(.*)_total$): 2 metrics (tenant tenant-a: 1, tenant tenant-b: 1)
`
	if code != 0 || stdout != want {
		t.Errorf("check-config: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", code, stdout, want, stderr)
	}
	tenants := map[string]bool{}
	for _, r := range api.Seen() {
		tenants[strings.Join(r.Header.Values("X-Scope-OrgID"), ",")] = true
	}
	if !cmp.Equal(tenants, map[string]bool{"tenant-a": true, "tenant-b": true}) {
		t.Errorf("series were listed with tenant headers %v, want tenant-a and tenant-b, each alone", tenants)
	}
}
