package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gantry-dev/gantry/deploy/rules"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	// alertFor replaces every alert's for: in the copy of the shipped rules
	// the test loads, so that an alert fires seconds, not minutes, after its
	// condition starts to hold; the expressions stay as shipped.
	alertFor = "5s"
	// waitAlert bounds the wait for an alert to reach Alertmanager or to
	// leave it: a scrape and an evaluation (1s each), alertFor, and
	// Prometheus' send, with a wide margin for a loaded machine.
	waitAlert = 90 * time.Second
	// scraperComponent holds the RBAC the Prometheus Operator's Prometheus
	// needs to scrape Gantry; the test's Prometheus runs with it.
	scraperComponent = "../../deploy/manifests/components/servicemonitor/servicemonitor.yaml"
)

// TestAlerts follows the shipped alert rules from a real failure to a real
// Alertmanager. A second Prometheus — the monitoring one, as in a cluster —
// scrapes Gantry's /metrics and the kube-apiserver's with the token of the
// ServiceAccount that components/servicemonitor grants /metrics to, loads
// deploy/rules with every for: shortened to alertFor, and sends alerts to
// Alertmanager (Debian's prometheus-alertmanager, from
// test/tools/install-alertmanager.sh). On a healthy stack no alert is
// pending or firing; then the test stops Gantry, waits for GantryDown,
// GantryAbsent and GantryAPIServiceUnavailable at Alertmanager's v2 API,
// restarts Gantry and waits for all three to resolve.
func TestAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane, two Prometheus servers and Alertmanager")
	}
	binDir := mustBinDir(t)
	// Before the control plane: a missing binary should fail in a second.
	if _, err := toolbin.Path(binDir, "alertmanager"); err != nil {
		t.Fatalf("%v (test/tools/install-alertmanager.sh installs it)", err)
	}
	st := stack.StartT(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	dir := t.TempDir()

	// Give Gantry something to discover, or GantryNoMetricsDiscovered
	// rightly fires on the healthy stack.
	feed := stack.NewFeeder(st.Prom, time.Second)
	feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": ns, "queue": "orders"}, 3)
	if err := feed.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	tokenFile := scraperToken(ctx, t, st, dir)
	caFile := filepath.Join(dir, "cluster-ca.pem")
	if err := os.WriteFile(caFile, st.Cluster.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	am, err := stack.StartAlertmanager(ctx, binDir, filepath.Join(dir, "alertmanager"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := am.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(am.LogPath)
			t.Logf("alertmanager log:\n%s", b)
		}
	})
	ruleFiles := writeTestRules(t, dir)

	gantryURL, err := url.Parse(st.GantryURL)
	if err != nil {
		t.Fatal(err)
	}
	apiserverURL, err := url.Parse(st.Cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	amURL, err := url.Parse(am.URL)
	if err != nil {
		t.Fatal(err)
	}
	// Both endpoints serve certificates of the cluster CA; Gantry's names
	// its Service, as the aggregator dials it.
	var cfg strings.Builder
	cfg.WriteString("rule_files:\n")
	for _, f := range ruleFiles {
		fmt.Fprintf(&cfg, "  - %s\n", strconv.Quote(f))
	}
	fmt.Fprintf(&cfg, `alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: gantry
    scheme: https
    authorization:
      credentials_file: %q
    tls_config:
      ca_file: %q
      server_name: %q
    static_configs:
      - targets: [%q]
  - job_name: apiserver
    scheme: https
    authorization:
      credentials_file: %q
    tls_config:
      ca_file: %q
    static_configs:
      - targets: [%q]
`, amURL.Host, tokenFile, caFile, stack.Service+"."+stack.Namespace+".svc", gantryURL.Host, tokenFile, caFile, apiserverURL.Host)
	// Scrape and evaluate every second.
	mon := prom.Start(t, prom.WithScrapeInterval(time.Second), prom.WithConfig(cfg.String()))
	client, err := api.NewClient(api.Config{Address: mon.URL()})
	if err != nil {
		t.Fatal(err)
	}
	promAPI := promv1.NewAPI(client)

	// Healthy: both targets scraped (Gantry's own series among them),
	// Gantry has discovered the metric, and no alert is pending or firing.
	for _, q := range []string{
		`up{job="gantry"} == 1`,
		`up{job="apiserver"} == 1`,
		`gantry_discovery_metrics{job="gantry",api="external"} > 0`,
		`aggregator_unavailable_apiservice{job="apiserver",name="v1beta1.custom.metrics.k8s.io"} == 0`,
	} {
		waitQuery(ctx, t, promAPI, q)
	}
	waitNoActiveAlerts(ctx, t, promAPI)

	broken := []string{"GantryDown", "GantryAbsent", "GantryAPIServiceUnavailable"}
	healthy := activeAlerts(ctx, t, am.URL)
	if len(healthy) > 0 {
		t.Fatalf("alerts at Alertmanager before anything broke: %v", names(healthy))
	}

	stopped := time.Now()
	if err := st.StopGantry(); err != nil {
		t.Fatal(err)
	}
	t.Logf("gantry stopped in %s", time.Since(stopped).Round(10*time.Millisecond))
	got := waitAlerts(ctx, t, am.URL, healthy, stopped, "firing", func(a map[string]amAlert) bool {
		for _, n := range broken {
			if _, ok := a[n]; !ok {
				return false
			}
		}
		return true
	})
	down := got["GantryDown"]
	for k, v := range map[string]string{"job": "gantry", "instance": gantryURL.Host, "severity": "warning"} {
		if down.Labels[k] != v {
			t.Errorf("GantryDown label %s = %q, want %q (labels %v)", k, down.Labels[k], v, down.Labels)
		}
	}
	if want := rules.RunbookURL("GantryDown"); down.Annotations["runbook_url"] != want {
		t.Errorf("GantryDown runbook_url %q, want %q", down.Annotations["runbook_url"], want)
	}
	if d := down.Annotations["description"]; !strings.Contains(d, gantryURL.Host) {
		t.Errorf("GantryDown description does not name the target %s: %q", gantryURL.Host, d)
	}
	if n := got["GantryAPIServiceUnavailable"].Labels["name"]; !slices.Contains(stack.APIServices, n) {
		t.Errorf("GantryAPIServiceUnavailable for APIService %q, want one of Gantry's %v", n, stack.APIServices)
	}

	restarted := time.Now()
	if err := st.RestartGantry(ctx); err != nil {
		t.Fatal(err)
	}
	waitAlerts(ctx, t, am.URL, got, restarted, "resolved", func(a map[string]amAlert) bool {
		for _, n := range broken {
			if _, ok := a[n]; ok {
				return false
			}
		}
		return true
	})
}

// scraperToken gives the test's Prometheus the identity
// components/servicemonitor grants /metrics to: it applies the component's
// ClusterRole and ClusterRoleBinding (not the ServiceMonitor: there is no
// Prometheus Operator here), creates the bound ServiceAccount, and writes a
// token of it to a file.
func scraperToken(ctx context.Context, t *testing.T, st *stack.Stack, dir string) string {
	t.Helper()
	data, err := os.ReadFile(scraperComponent)
	if err != nil {
		t.Fatal(err)
	}
	client := st.Cluster.Client()
	var subject *rbacv1.Subject
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatal(err)
		}
		switch u.GetKind() {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cr); err != nil {
				t.Fatal(err)
			}
			_, err = client.RbacV1().ClusterRoles().Create(ctx, &cr, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var crb rbacv1.ClusterRoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &crb); err != nil {
				t.Fatal(err)
			}
			if len(crb.Subjects) != 1 || crb.Subjects[0].Kind != rbacv1.ServiceAccountKind {
				t.Fatalf("%s: ClusterRoleBinding %s: want one ServiceAccount subject, got %v", scraperComponent, crb.Name, crb.Subjects)
			}
			subject = &crb.Subjects[0]
			_, err = client.RbacV1().ClusterRoleBindings().Create(ctx, &crb, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatalf("%s: creating %s %s: %v", scraperComponent, u.GetKind(), u.GetName(), err)
		}
	}
	if subject == nil {
		t.Fatalf("%s: no ClusterRoleBinding", scraperComponent)
	}
	if err := st.EnsureNamespace(ctx, subject.Namespace); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: subject.Name, Namespace: subject.Namespace}}
	if _, err := client.CoreV1().ServiceAccounts(subject.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr, err := client.CoreV1().ServiceAccounts(subject.Namespace).CreateToken(ctx, subject.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "scraper-token")
	if err := os.WriteFile(path, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus scrapes as ServiceAccount %s/%s", subject.Namespace, subject.Name)
	return path
}

// writeTestRules writes the shipped rule files with every alert's for: set
// to alertFor (nothing else changes) and returns their paths.
func writeTestRules(t *testing.T, dir string) []string {
	t.Helper()
	files, err := rules.Files()
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for name, data := range files {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := 0
		for _, g := range yamlValue(doc.Content[0], "groups").Content {
			for _, r := range yamlValue(g, "rules").Content {
				if yamlValue(r, "alert") == nil {
					continue
				}
				if f := yamlValue(r, "for"); f != nil {
					f.Value = alertFor
				} else {
					r.Content = append(r.Content,
						&yaml.Node{Kind: yaml.ScalarNode, Value: "for"},
						&yaml.Node{Kind: yaml.ScalarNode, Value: alertFor})
				}
				n++
			}
		}
		out, err := yaml.Marshal(&doc)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d alerts, for: %s", name, n, alertFor)
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// yamlValue returns the value of key in mapping node m, or nil.
func yamlValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// waitQuery waits until expr returns at least one sample.
func waitQuery(ctx context.Context, t *testing.T, p promv1.API, expr string) {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(waitAlert)
	var last string
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, _, _, err := p.Query(qctx, expr, time.Now())
		cancel()
		if err != nil {
			last = err.Error()
		} else if vec, ok := v.(model.Vector); ok && len(vec) > 0 {
			t.Logf("%s after %s", expr, time.Since(begin).Round(100*time.Millisecond))
			return
		} else {
			last = "empty result"
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still no result after %s (%s)", expr, waitAlert, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitNoActiveAlerts waits until the monitoring Prometheus has no pending
// or firing alert: an alert may be pending for the instant before its first
// data arrives.
func waitNoActiveAlerts(ctx context.Context, t *testing.T, p promv1.API) {
	t.Helper()
	deadline := time.Now().Add(waitAlert)
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := p.Alerts(qctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Alerts) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var active []string
			for _, a := range res.Alerts {
				active = append(active, fmt.Sprintf("%s %s %v", a.Labels["alertname"], a.State, a.Labels))
			}
			t.Fatalf("alerts active on a healthy stack after %s:\n%s", waitAlert, strings.Join(active, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// amAlert is an alert as Alertmanager's v2 API returns it.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

// activeAlerts returns the alerts Alertmanager holds as not resolved, by
// alert name.
func activeAlerts(ctx context.Context, t *testing.T, base string) map[string]amAlert {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v2/alerts: %s: %s", resp.Status, body)
	}
	var list []amAlert
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /api/v2/alerts: %v", err)
	}
	out := map[string]amAlert{}
	for _, a := range list {
		out[a.Labels["alertname"]] = a
	}
	return out
}

// waitAlerts polls Alertmanager until done holds for its active alerts,
// logging when each alert appears or leaves compared with before, relative
// to since (to the poll's resolution, 0.5s).
func waitAlerts(ctx context.Context, t *testing.T, base string, before map[string]amAlert, since time.Time, what string, done func(map[string]amAlert) bool) map[string]amAlert {
	t.Helper()
	deadline := time.Now().Add(waitAlert)
	seen := before
	for {
		cur := activeAlerts(ctx, t, base)
		for n := range cur {
			if _, ok := seen[n]; !ok {
				t.Logf("%s firing at Alertmanager %s after the change", n, time.Since(since).Round(100*time.Millisecond))
			}
		}
		for n := range seen {
			if _, ok := cur[n]; !ok {
				t.Logf("%s resolved at Alertmanager %s after the change", n, time.Since(since).Round(100*time.Millisecond))
			}
		}
		seen = cur
		if done(cur) {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts not %s at Alertmanager after %s; active: %v", what, waitAlert, names(cur))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func names(a map[string]amAlert) []string {
	out := make([]string, 0, len(a))
	for n := range a {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
