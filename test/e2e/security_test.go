package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/test/loki"
	"github.com/gantry-dev/gantry/test/stack"
)

const (
	secNS = "sec"
	// otherNS has data that secNS's identities may not read.
	otherNS = "sec-other"
	// The secrets Gantry is given for Prometheus (which does not check
	// them): recognisable, so that a search of every output finds them.
	promToken = "s3cr3t-token-XYZ"
	// Loki gets basic auth (Loki does not check it either).
	lokiPassword = "b4s1c-p4ssw0rd-QRS"
)

// secLokiRule is an external rule on Loki, so that Loki requests (with their
// basic auth) succeed and, with Loki halted, fail and are logged.
const secLokiRule = `# LogQL on Loki, reached with basic auth.
- seriesQuery: '{app="sec"}'
  logqlQuery: 'sum(count_over_time({app="sec",<<.LabelMatchers>>}[5m]))'
  name: {as: sec_log_lines}
`

// failingRule is an external rule whose query Prometheus accepts but cannot
// evaluate (one-to-one matching finds two series on each side): a backend
// failure on demand, with Prometheus up.
const failingRule = `# Fails at evaluation in Prometheus: a backend error on demand.
- seriesQuery: '{__name__="sec_failing",queue!=""}'
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue) + on() <<.Series>>{<<.LabelMatchers>>}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
`

// TestSecurity is the hostile-input, authn/authz, TLS and secrets part of
// the reliability issue, on one stack: the real kube-apiserver and its
// aggregator in front of Gantry, running at --v=10 with a bearer token file,
// a client certificate and an extra header for Prometheus.
func TestSecurity(t *testing.T) {
	workDir := t.TempDir()
	secretDir := filepath.Join(workDir, "secrets")
	if err := os.MkdirAll(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(secretDir, "prometheus-token")
	if err := os.WriteFile(tokenFile, []byte(promToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, clientKeyPEM := clientCert(t, secretDir)
	lokiAuth := filepath.Join(secretDir, "loki-auth.yaml")
	if err := os.WriteFile(lokiAuth, []byte("basic_auth:\n  username: gantry\n  password: "+lokiPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lk := loki.StartT(t, loki.Options{WorkDir: filepath.Join(workDir, "loki"), Logf: t.Logf})
	rules := strings.Replace(stack.DefaultRules, "resourceRules:\n", failingRule+secLokiRule+"resourceRules:\n", 1)
	if rules == stack.DefaultRules {
		t.Fatal("stack.DefaultRules has no resourceRules section to put the failing external rule before")
	}
	st := stack.StartT(t, stack.Options{
		WorkDir: workDir,
		Rules:   rules,
		GantryArgs: []string{
			"--v=10",
			"--prometheus-token-file=" + tokenFile,
			"--prometheus-client-tls-cert-file=" + certFile,
			"--prometheus-client-tls-key-file=" + keyFile,
			"--prometheus-header=X-Scope-OrgID=team-a",
			"--loki-url=" + lk.URL(),
			"--loki-auth-config=" + lokiAuth,
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := st.EnsureNamespace(ctx, secNS); err != nil {
		t.Fatal(err)
	}
	feed := stack.NewFeeder(st.Prom, 2*time.Second)
	feedCtx, stopFeed := context.WithCancel(context.Background())
	var feedWG sync.WaitGroup
	feedWG.Add(1)
	go func() {
		defer feedWG.Done()
		feed.Run(feedCtx, func(error) {}) // Prometheus is stopped on purpose at the end
	}()
	t.Cleanup(func() { stopFeed(); feedWG.Wait() })
	feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": secNS, "pod": "web-0"}, 5)
	feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": secNS, "queue": "orders"}, 7)
	// Another namespace's data, which an identity of secNS must never read.
	if err := st.EnsureNamespace(ctx, otherNS); err != nil {
		t.Fatal(err)
	}
	feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": otherNS, "pod": "web-0"}, 50)
	feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": otherNS, "queue": "orders"}, 777)
	for _, q := range []string{"a", "b"} {
		feed.SetGauge(map[string]string{"__name__": "sec_failing", "namespace": secNS, "queue": q}, 1)
	}

	now := time.Now()
	if err := lk.Push(ctx, []loki.Stream{{Labels: map[string]string{"app": "sec", "namespace": secNS}, Entries: []loki.Entry{{Time: now.Add(-time.Second), Line: "one"}, {Time: now, Line: "two"}}}}); err != nil {
		t.Fatal(err)
	}

	s := &secEnv{st: st, admin: adminClient(t, st), loki: lk}
	podMetric := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + secNS + "/pods/web-0/http_requests_per_second"
	s.waitCode(ctx, t, s.admin, st.Cluster.URL()+podMetric, http.StatusOK, "the pod metric to be served")
	s.waitCode(ctx, t, s.admin, st.Cluster.URL()+"/apis/external.metrics.k8s.io/v1beta1/namespaces/"+secNS+"/sec_failing", http.StatusServiceUnavailable, "the failing rule to be discovered")

	t.Run("hostile requests get a 4xx with a reason", s.testHostileRequests)
	t.Run("authn and authz through the kube-apiserver", func(t *testing.T) { s.testAuth(ctx, t, podMetric) })
	t.Run("a namespace's identity reads only that namespace", func(t *testing.T) { s.testNamespaceIsolation(ctx, t) })
	t.Run("TLS only, at least 1.2", s.testTLS)
	t.Run("no panic and no 5xx from request input", s.testNoPanic)
	t.Run("secrets stay out of logs, metrics and errors", func(t *testing.T) {
		s.testSecrets(ctx, t, []secret{
			{"Prometheus bearer token", promToken},
			{"Prometheus client key", clientKeyPEM},
			{"Loki basic-auth password", lokiPassword},
			{"Loki basic-auth header", base64.StdEncoding.EncodeToString([]byte("gantry:" + lokiPassword))},
		})
	})
}

type secEnv struct {
	st    *stack.Stack
	admin *http.Client
	loki  *loki.Server
	// tokens presented to Gantry or held by it, for the secrets search.
	tokens []secret
	mu     sync.Mutex
	// bodies of every error response seen, for the secrets search.
	bodies []string
	// serverErrors are the 5xx answers to metrics API requests the test
	// saw: all of them asked for.
	serverErrors []string
}

type secret struct{ what, value string }

type response struct {
	code int
	body []byte
}

func (s *secEnv) do(t *testing.T, hc *http.Client, method, u string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %.200s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	s.mu.Lock()
	if resp.StatusCode >= 300 {
		s.bodies = append(s.bodies, string(body))
	}
	if resp.StatusCode >= 500 && strings.Contains(req.URL.Path, "metrics.k8s.io/") {
		s.serverErrors = append(s.serverErrors, fmt.Sprintf("%s %.200s: %d %.300s", method, u, resp.StatusCode, body))
	}
	s.mu.Unlock()
	return response{resp.StatusCode, body}
}

func (s *secEnv) waitCode(ctx context.Context, t *testing.T, hc *http.Client, u string, code int, what string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		r := s.do(t, hc, http.MethodGet, u)
		if r.code == code {
			return r
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: GET %s: %d %.500s, want %d", what, u, r.code, r.body, code)
		case <-time.After(time.Second):
		}
	}
}

// testHostileRequests sends requests with huge or invalid names and
// selectors through the aggregator as cluster admin: each is refused with a
// 4xx and a Status that says why.
func (s *secEnv) testHostileRequests(t *testing.T) {
	huge := strings.Repeat("a", 10<<10)
	custom := "/apis/custom.metrics.k8s.io/v1beta2"
	ns := custom + "/namespaces/" + secNS
	external := "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + secNS
	resource := "/apis/metrics.k8s.io/v1beta1/namespaces/" + secNS
	injection := url.PathEscape(`x"} or vector(1) #`)
	cases := []struct {
		name, method, path string
		query              url.Values
		want               int // 0: any 4xx
		// notGantry: the kube-apiserver answers, with its plain "404 page
		// not found" rather than a Status, as no APIService matches.
		notGantry bool
		// emptyList: a list in a namespace that cannot exist is empty,
		// as the kube-apiserver's own lists are.
		emptyList bool
	}{
		{name: "10 KB object name", path: ns + "/pods/" + huge + "/http_requests_per_second", want: 404},
		{name: "10 KB namespace name", path: custom + "/namespaces/" + huge + "/pods/web-0/http_requests_per_second", want: 404},
		{name: "10 KB metric name", path: ns + "/pods/*/" + huge, want: 404},
		{name: "10 KB external metric name", path: external + "/" + huge, want: 404},
		{name: "10 KB pod name on metrics.k8s.io", path: resource + "/pods/" + huge, want: 404},
		{name: "10 KB cluster-scoped object name", path: custom + "/namespaces/" + huge + "/metrics/http_requests_per_second", want: 404},
		{name: "query syntax in a cluster-scoped object name", path: custom + "/namespaces/" + injection + "/metrics/http_requests_per_second", want: 404},
		{name: "invalid UTF-8 in an object name", path: ns + "/pods/%FF%FE/http_requests_per_second"},
		{name: "invalid UTF-8 in a cluster-scoped object name", path: custom + "/namespaces/%FF%FE/metrics/http_requests_per_second"},
		{name: "invalid UTF-8 in a namespace", path: custom + "/namespaces/%FF%FE/pods/*/http_requests_per_second", emptyList: true},
		{name: "invalid UTF-8 in a pod name on metrics.k8s.io", path: resource + "/pods/%FF%FE"},
		{name: "NUL and slash in an object name", path: ns + "/pods/a%00b%2Fc/http_requests_per_second"},
		{name: "invalid labelSelector syntax", path: ns + "/pods/*/http_requests_per_second", query: url.Values{"labelSelector": {"app in (web"}}, want: 400},
		{name: "10 KB labelSelector value", path: ns + "/pods/*/http_requests_per_second", query: url.Values{"labelSelector": {"app=" + huge}}, want: 400},
		{name: "invalid metricSelector syntax", path: ns + "/pods/web-0/http_requests_per_second", query: url.Values{"metricLabelSelector": {"code notin (500"}}, want: 400},
		{name: "metricSelector key that is no Prometheus label", path: ns + "/pods/web-0/http_requests_per_second", query: url.Values{"metricLabelSelector": {"app.kubernetes.io/name=web"}}, want: 400},
		{name: "metricSelector operator without a PromQL matcher", path: ns + "/pods/web-0/http_requests_per_second", query: url.Values{"metricLabelSelector": {"code>499"}}, want: 400},
		{name: "10 KB metricSelector value", path: ns + "/pods/web-0/http_requests_per_second", query: url.Values{"metricLabelSelector": {"code=" + huge}}, want: 400},
		// An external metric's selector is its labelSelector.
		{name: "invalid external selector syntax", path: external + "/queue_depth", query: url.Values{"labelSelector": {"queue notin (orders"}}, want: 400},
		{name: "external selector key that is no Prometheus label", path: external + "/queue_depth", query: url.Values{"labelSelector": {"app.kubernetes.io/name=web"}}, want: 400},
		{name: "external selector operator without a PromQL matcher", path: external + "/queue_depth", query: url.Values{"labelSelector": {"queue>1"}}, want: 400},
		{name: "invalid labelSelector on metrics.k8s.io", path: resource + "/pods", query: url.Values{"labelSelector": {"=x"}}, want: 400},
		{name: "unsupported fieldSelector on metrics.k8s.io", path: resource + "/pods", query: url.Values{"fieldSelector": {"spec.nodeName=x"}}},
		{name: "unknown resource", path: ns + "/widgets/w-0/http_requests_per_second", want: 404},
		{name: "unknown resource on metrics.k8s.io", path: resource + "/deployments"},
		{name: "wrong API version", path: "/apis/custom.metrics.k8s.io/v1alpha9/namespaces/" + secNS + "/pods/*/http_requests_per_second", want: 404, notGantry: true},
		{name: "wrong API version of external metrics", path: "/apis/external.metrics.k8s.io/v2/namespaces/" + secNS + "/queue_depth", want: 404, notGantry: true},
		{name: "write verb", method: http.MethodDelete, path: ns + "/pods/web-0/http_requests_per_second", want: 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := s.st.Cluster.URL() + tc.path
			if tc.query != nil {
				u += "?" + tc.query.Encode()
			}
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			r := s.do(t, s.admin, method, u)
			var status metav1.Status
			_ = json.Unmarshal(r.body, &status)
			if tc.emptyList && r.code == http.StatusOK {
				var list struct{ Items []json.RawMessage }
				if err := json.Unmarshal(r.body, &list); err != nil || len(list.Items) > 0 {
					t.Errorf("%s %.120s: 200 %.500s, want a 4xx or an empty list", method, tc.path, r.body)
				}
				t.Logf("200 with an empty list, as for any namespace without such objects")
				return
			}
			switch {
			case r.code < 400 || r.code >= 500:
				t.Errorf("%s %.120s: %d %.500s, want a 4xx", method, tc.path, r.code, r.body)
			case tc.want != 0 && r.code != tc.want:
				t.Errorf("%s %.120s: %d %.500s, want %d", method, tc.path, r.code, r.body, tc.want)
			case tc.notGantry && len(bytes.TrimSpace(r.body)) == 0:
				t.Errorf("%s %.120s: %d with an empty body", method, tc.path, r.code)
			case !tc.notGantry && (status.Kind != "Status" || status.Message == "" && status.Reason == ""):
				t.Errorf("%s %.120s: %d without a Status saying why: %.500s", method, tc.path, r.code, r.body)
			case tc.notGantry:
				t.Logf("%d from the kube-apiserver: %.160s", r.code, bytes.TrimSpace(r.body))
			default:
				t.Logf("%d %s: %.160s", r.code, status.Reason, status.Message)
			}
		})
	}
}

// testAuth checks who gets in, through the aggregator (the kube-apiserver
// authenticates and authorizes, then Gantry trusts its front-proxy
// certificate) and straight at Gantry's port (Gantry's delegated TokenReview
// and SubjectAccessReview).
func (s *secEnv) testAuth(ctx context.Context, t *testing.T, podMetric string) {
	client := s.st.Cluster.Client()
	sa, token := s.serviceAccount(ctx, t, "metrics-reader", "a client's ServiceAccount token")

	anonymous := s.kubeClient(t, "")
	user := s.kubeClient(t, token)
	aggregated := s.st.Cluster.URL() + podMetric
	direct := s.st.GantryURL + podMetric

	t.Run("anonymous through the aggregator is refused", func(t *testing.T) {
		r := s.do(t, anonymous, http.MethodGet, aggregated)
		if r.code != http.StatusUnauthorized && r.code != http.StatusForbidden {
			t.Errorf("anonymous GET %s: %d %.300s, want 401 or 403", podMetric, r.code, r.body)
		}
	})
	t.Run("an unknown token at Gantry's port is refused", func(t *testing.T) {
		r := s.do(t, bearer(s.st.GantryClient(), "not-a-token"), http.MethodGet, direct)
		if r.code != http.StatusUnauthorized {
			t.Errorf("GET with a made-up token straight to gantry: %d %.300s, want 401", r.code, r.body)
		}
	})
	t.Run("authenticated without RBAC gets 403", func(t *testing.T) {
		r := s.do(t, user, http.MethodGet, aggregated)
		if r.code != http.StatusForbidden || !bytes.Contains(r.body, []byte("custom.metrics.k8s.io")) {
			t.Errorf("GET %s as %s/%s without RBAC: %d %.300s, want 403 naming custom.metrics.k8s.io", podMetric, secNS, sa.Name, r.code, r.body)
		}
		r = s.do(t, bearer(s.st.GantryClient(), token), http.MethodGet, direct)
		if r.code != http.StatusForbidden {
			t.Errorf("GET straight to gantry as %s/%s without RBAC: %d %.300s, want 403", secNS, sa.Name, r.code, r.body)
		}
	})
	t.Run("with RBAC on custom.metrics.k8s.io it is allowed", func(t *testing.T) {
		role := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "sec-custom-metrics-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"custom.metrics.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list"}}},
		}
		if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "sec-custom-metrics-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: secNS, Name: sa.Name}},
		}
		if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := s.waitCode(ctx, t, user, aggregated, http.StatusOK, "the ClusterRoleBinding to take effect")
		if !bytes.Contains(r.body, []byte(`"web-0"`)) {
			t.Errorf("GET %s as %s/%s: 200 without the pod's value: %.300s", podMetric, secNS, sa.Name, r.body)
		}
		// Gantry's authorizer caches SubjectAccessReviews (10s for denials).
		s.waitCode(ctx, t, bearer(s.st.GantryClient(), token), direct, http.StatusOK, "gantry to allow the ServiceAccount straight at its port")
		// Still nothing outside what the role grants.
		r = s.do(t, user, http.MethodGet, s.st.Cluster.URL()+"/apis/external.metrics.k8s.io/v1beta1/namespaces/"+secNS+"/queue_depth")
		if r.code != http.StatusForbidden {
			t.Errorf("external metric with a role for custom metrics only: %d %.300s, want 403", r.code, r.body)
		}
	})
}

// serviceAccount creates a ServiceAccount in secNS and a token for it, which
// the secrets search looks for as what.
func (s *secEnv) serviceAccount(ctx context.Context, t *testing.T, name, what string) (*corev1.ServiceAccount, string) {
	t.Helper()
	client := s.st.Cluster.Client()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: secNS}}
	if _, err := client.CoreV1().ServiceAccounts(secNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr, err := client.CoreV1().ServiceAccounts(secNS).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.tokens = append(s.tokens, secret{what, tr.Status.Token})
	return sa, tr.Status.Token
}

// testNamespaceIsolation: an identity whose only binding is a RoleBinding
// in secNS (the shape of the shipped gantry-metrics-reader role, on all
// three metrics APIs) tries every path that could answer about otherNS
// while RBAC checks secNS. Each must answer about secNS alone, or not at
// all; otherNS's data is there (the admin reads it) to be leaked.
func (s *secEnv) testNamespaceIsolation(ctx context.Context, t *testing.T) {
	client := s.st.Cluster.Client()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "sec-namespace-metrics-reader"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"custom.metrics.k8s.io", "external.metrics.k8s.io", "metrics.k8s.io"},
			Resources: []string{"*"}, Verbs: []string{"get", "list"},
		}},
	}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, token := s.serviceAccount(ctx, t, "namespace-reader", "a namespace reader's ServiceAccount token")
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sec-namespace-metrics-reader", Namespace: secNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: secNS, Name: sa.Name}},
	}
	if _, err := client.RbacV1().RoleBindings(secNS).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := s.kubeClient(t, token)
	api := s.st.Cluster.URL() + "/apis/"
	cm2 := api + "custom.metrics.k8s.io/v1beta2/namespaces/"
	cm1 := api + "custom.metrics.k8s.io/v1beta1/namespaces/"

	// The data to leak is there: the admin reads otherNS's rate (50/s), and
	// the reader reads its own namespace's.
	r := s.waitCode(ctx, t, s.admin, cm2+otherNS+"/metrics/http_requests_per_second", http.StatusOK, otherNS+"'s rate to be served to the admin")
	if !bytes.Contains(r.body, []byte(`"name":"`+otherNS+`"`)) {
		t.Fatalf("the admin's answer about namespace %s does not describe it: %.500s", otherNS, r.body)
	}
	s.waitCode(ctx, t, user, cm2+secNS+"/metrics/http_requests_per_second", http.StatusOK, "the RoleBinding to take effect")
	s.waitCode(ctx, t, user, api+"external.metrics.k8s.io/v1beta1/namespaces/"+secNS+"/queue_depth", http.StatusOK, "the reader to get its own external metric")

	for _, tc := range []struct {
		name, url string
		// code is the status wanted; 0 accepts any answer that leaks
		// nothing of otherNS.
		code int
	}{
		{"v1beta2: another namespace as the described object", cm2 + secNS + "/namespaces/" + otherNS + "/http_requests_per_second", http.StatusNotFound},
		{"v1beta1: another namespace as the described object", cm1 + secNS + "/namespace/" + otherNS + "/http_requests_per_second", http.StatusNotFound},
		{"v1beta2: every namespace as described objects", cm2 + secNS + "/namespaces/*/http_requests_per_second", 0},
		{"v1beta1: every namespace as described objects", cm1 + secNS + "/namespaces/*/http_requests_per_second", 0},
		{"v1beta2: a metric selector naming another namespace", cm2 + secNS + "/pods/web-0/http_requests_per_second?metricLabelSelector=namespace%3D" + otherNS, 0},
		{"v1beta1: pods with a metric selector naming another namespace", cm1 + secNS + "/pods/*/http_requests_per_second?metricLabelSelector=namespace%3D" + otherNS, 0},
		{"v1beta2: a cluster-scoped resource inside the namespace", cm2 + secNS + "/nodes/*/http_requests_per_second", http.StatusNotFound},
		{"external: a selector naming another namespace", api + "external.metrics.k8s.io/v1beta1/namespaces/" + secNS + "/queue_depth?labelSelector=namespace%3D" + otherNS, 0},
		{"metrics.k8s.io: a field selector naming another namespace", api + "metrics.k8s.io/v1beta1/namespaces/" + secNS + "/pods?fieldSelector=metadata.namespace%3D" + otherNS, 0},
		{"the other namespace itself is refused by RBAC", cm2 + otherNS + "/metrics/http_requests_per_second", http.StatusForbidden},
		{"the other namespace's pods are refused by RBAC", cm2 + otherNS + "/pods/*/http_requests_per_second", http.StatusForbidden},
		{"the other namespace's external metric is refused by RBAC", api + "external.metrics.k8s.io/v1beta1/namespaces/" + otherNS + "/queue_depth", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, user, http.MethodGet, tc.url)
			if tc.code != 0 && r.code != tc.code {
				t.Errorf("GET %s as %s/%s: %d %.500s, want %d", tc.url, secNS, sa.Name, r.code, r.body, tc.code)
			}
			if r.code == http.StatusOK && (bytes.Contains(r.body, []byte(otherNS)) || otherNSValue(r.body)) {
				t.Errorf("GET %s as %s/%s answered with %s's data: %.500s", tc.url, secNS, sa.Name, otherNS, r.body)
			}
			if r.code >= 500 {
				t.Errorf("GET %s: %d %.500s, want no server error", tc.url, r.code, r.body)
			}
		})
	}
}

// otherNSValue reports whether a metric value list holds a value of
// otherNS's series (a rate of 50/s, a queue of 777) rather than secNS's (5/s,
// 7), whichever object it claims to describe.
func otherNSValue(body []byte) bool {
	for _, m := range metricValueRE.FindAllSubmatch(body, -1) {
		q, err := resource.ParseQuantity(string(m[1]))
		if err != nil || q.AsApproximateFloat64() > 20 {
			return true
		}
	}
	return false
}

var metricValueRE = regexp.MustCompile(`"value":"([^"]*)"`)

// testTLS checks that Gantry's one listening port speaks TLS 1.2 or newer
// only.
func (s *secEnv) testTLS(t *testing.T) {
	u, err := url.Parse(s.st.GantryURL)
	if err != nil {
		t.Fatal(err)
	}
	base := s.st.GantryClient().Transport.(*http.Transport).TLSClientConfig
	dial := func(minV, maxV uint16) error {
		cfg := base.Clone()
		cfg.MinVersion, cfg.MaxVersion = minV, maxV
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", u.Host, cfg)
		if err == nil {
			conn.Close()
		}
		return err
	}
	t.Run("TLS 1.0 and 1.1 handshakes fail", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			err := dial(v, v)
			if err == nil {
				t.Errorf("%s handshake with gantry succeeded", tls.VersionName(v))
				continue
			}
			if !strings.Contains(err.Error(), "protocol version") {
				t.Errorf("%s handshake failed, but not for the version: %v", tls.VersionName(v), err)
			}
		}
	})
	t.Run("TLS 1.2 and 1.3 handshakes succeed", func(t *testing.T) {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			if err := dial(v, v); err != nil {
				t.Errorf("%s handshake: %v", tls.VersionName(v), err)
			}
		}
	})
	t.Run("plain HTTP gets no answer", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second}
		for _, p := range []string{"/apis/custom.metrics.k8s.io/v1beta2", "/livez", "/metrics"} {
			resp, err := hc.Get("http://" + u.Host + p)
			if err != nil {
				continue // the TLS server hung up: fine
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("plain HTTP GET %s: 200 %.200s", p, body)
			}
		}
	})
	t.Run("one listening port", func(t *testing.T) {
		ports, err := listeningPorts(s.st.GantryPID())
		if err != nil {
			t.Skipf("cannot read gantry's sockets: %v", err)
		}
		if len(ports) != 1 || strconv.Itoa(ports[0]) != u.Port() {
			t.Errorf("gantry listens on %v, want only its secure port %s", ports, u.Port())
		}
	})
}

// testNoPanic checks, after the hostile requests, that Gantry recovered from
// no panic and answered no 5xx but those the test asked for (the rule made
// to fail).
func (s *secEnv) testNoPanic(t *testing.T) {
	log, err := os.ReadFile(s.st.GantryLog)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if bytes.Contains(bytes.ToLower(sc.Bytes()), []byte("panic")) {
			t.Errorf("gantry log: %.500s", sc.Text())
		}
	}
	metrics := s.gantryMetrics(t)
	counted := 0
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "gantry_requests_total{") && strings.Contains(line, `code="5`) {
			f := strings.Fields(line)
			n, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			counted += int(n)
			t.Logf("/metrics: %s", line)
		}
	}
	s.mu.Lock()
	seen := append([]string(nil), s.serverErrors...)
	s.mu.Unlock()
	if counted != len(seen) {
		t.Errorf("gantry counted %d 5xx answers; the test asked for %d (the failing rule):\n%s", counted, len(seen), strings.Join(seen, "\n"))
	}
}

// testSecrets drives requests that succeed and fail — with Prometheus up,
// then stopped — and searches everything Gantry wrote for the secrets it
// holds: its log at --v=10, its /metrics and every API error body.
func (s *secEnv) testSecrets(ctx context.Context, t *testing.T, secrets []secret) {
	secrets = append(secrets, s.tokens...)
	secrets = append(secrets, s.gantryCredentials(t)...)

	base := s.st.Cluster.URL()
	external := base + "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + secNS
	pods := base + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + secNS + "/pods"
	expect := func(u string, code int) {
		t.Helper()
		if r := s.do(t, s.admin, http.MethodGet, u); r.code != code {
			t.Errorf("GET %s: %d %.300s, want %d", u, r.code, r.body, code)
		}
	}
	expect(pods+"/web-0/http_requests_per_second", http.StatusOK)
	expect(external+"/queue_depth?labelSelector=queue%3Dorders", http.StatusOK)
	expect(pods+"/web-0/no_such_metric", http.StatusNotFound)
	expect(external+"/sec_failing", http.StatusServiceUnavailable)
	expect(external+"/sec_log_lines", http.StatusOK)

	// Prometheus down: queries and relists fail, with their errors logged.
	logged, err := os.Stat(s.st.GantryLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.st.Prom.Stop(); err != nil {
		t.Fatal(err)
	}
	s.waitCode(ctx, t, s.admin, external+"/queue_depth?labelSelector=queue%3Dorders", http.StatusServiceUnavailable, "an external metric to fail with Prometheus stopped")
	// The value cache may answer for a few seconds more.
	s.waitCode(ctx, t, s.admin, pods+"/web-0/http_requests_per_second", http.StatusServiceUnavailable, "a pod metric to fail with Prometheus stopped")
	s.waitLog(ctx, t, logged.Size(), "relist failed", "a failed relist to be logged")
	// Loki down too: its requests fail and are logged, with basic auth set.
	if err := s.loki.Halt(); err != nil {
		t.Fatal(err)
	}
	s.waitCode(ctx, t, s.admin, external+"/sec_log_lines", http.StatusServiceUnavailable, "the Loki metric to fail with Loki halted")

	log, err := os.ReadFile(s.st.GantryLog)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []struct{ name, text string }{
		{"gantry's log (" + strconv.Itoa(len(log)>>10) + " KiB at --v=10)", string(log)},
		{"gantry's /metrics", s.gantryMetrics(t)},
	}
	s.mu.Lock()
	outputs = append(outputs, struct{ name, text string }{fmt.Sprintf("%d API error bodies", len(s.bodies)), strings.Join(s.bodies, "\n")})
	s.mu.Unlock()
	for _, sec := range secrets {
		for _, out := range outputs {
			if where := leak(out.text, sec.value); where != "" {
				t.Errorf("%s holds the %s: %s", out.name, sec.what, where)
			}
		}
	}
	t.Logf("searched %d outputs for %d secrets", len(outputs), len(secrets))
}

// waitLog waits for substr in Gantry's log after offset.
func (s *secEnv) waitLog(ctx context.Context, t *testing.T, offset int64, substr, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		log, err := os.ReadFile(s.st.GantryLog)
		if err == nil && int64(len(log)) > offset && bytes.Contains(log[offset:], []byte(substr)) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s in %s", what, s.st.GantryLog)
		case <-time.After(time.Second):
		}
	}
}

// gantryCredentials are the credentials Gantry's own command line points
// at: its ServiceAccount token and its serving key.
func (s *secEnv) gantryCredentials(t *testing.T) []secret {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.st.GantryPID()))
	if err != nil {
		t.Logf("gantry's command line: %v; searching for the Prometheus secrets only", err)
		return nil
	}
	var out []secret
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		name, value, _ := strings.Cut(arg, "=")
		switch name {
		case "--authentication-kubeconfig":
			kc, err := clientcmd.LoadFromFile(value)
			if err != nil {
				t.Fatal(err)
			}
			for _, ai := range kc.AuthInfos {
				if ai.Token != "" {
					out = append(out, secret{"gantry's ServiceAccount token", ai.Token})
				}
			}
		case "--tls-private-key-file":
			key, err := os.ReadFile(value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, secret{"gantry's serving key", string(key)})
		}
	}
	return out
}

func (s *secEnv) gantryMetrics(t *testing.T) string {
	t.Helper()
	cfg := s.st.Cluster.RESTConfig()
	cert, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	hc := s.st.GantryClient()
	tr := hc.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	hc.Transport = tr
	r := s.do(t, hc, http.MethodGet, s.st.GantryURL+"/metrics")
	if r.code != http.StatusOK {
		t.Fatalf("GET /metrics as admin: %d %.300s", r.code, r.body)
	}
	return string(r.body)
}

// kubeClient is an HTTP client for the kube-apiserver with a bearer token,
// or anonymous with "".
func (s *secEnv) kubeClient(t *testing.T, token string) *http.Client {
	cfg := rest.AnonymousClientConfig(s.st.Cluster.RESTConfig())
	cfg.BearerToken = token
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc.Timeout = 30 * time.Second
	return hc
}

func adminClient(t *testing.T, st *stack.Stack) *http.Client {
	hc, err := rest.HTTPClientFor(st.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	hc.Timeout = 30 * time.Second
	return hc
}

// bearer returns hc sending an Authorization header.
func bearer(hc *http.Client, token string) *http.Client {
	out := *hc
	out.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		return hc.Transport.RoundTrip(r)
	})
	return &out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// leak says where text holds secret: whole, or for a PEM key any line of
// its body, or for a token any 16 characters of its last part (which is
// what a hex dump of a protobuf body shows of it on one line).
func leak(text, secret string) string {
	secret = strings.TrimSpace(secret)
	if i := strings.Index(text, secret); i >= 0 {
		return "whole, at offset " + strconv.Itoa(i)
	}
	if block, _ := pem.Decode([]byte(secret)); block != nil {
		for _, line := range strings.Split(secret, "\n") {
			if strings.HasPrefix(line, "-----") || len(line) < 16 {
				continue
			}
			if i := strings.Index(text, line); i >= 0 {
				return fmt.Sprintf("a line of it (%q), at offset %d", line, i)
			}
		}
		return ""
	}
	tail := secret[strings.LastIndex(secret, ".")+1:]
	if len(tail) < 32 {
		return ""
	}
	const w = 16
	windows := make(map[string]bool, len(tail))
	for i := 0; i+w <= len(tail); i++ {
		windows[tail[i:i+w]] = true
	}
	for i := 0; i+w <= len(text); i++ {
		if windows[text[i:i+w]] {
			return fmt.Sprintf("part of it (%q), at offset %d: %.200q", text[i:i+w], i, text[max(0, i-100):min(len(text), i+100)])
		}
	}
	return ""
}

// clientCert writes a self-signed client certificate and key for Gantry's
// --prometheus-client-tls-* flags and returns the key's PEM.
func clientCert(t *testing.T, dir string) (certFile, keyFile, keyPEM string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gantry-prometheus-client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, keyPEM
}

// listeningPorts lists the TCP ports process pid listens on, from Linux'
// /proc: its socket inodes matched against the LISTEN sockets.
func listeningPorts(pid int) ([]int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	found := false
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		found = true
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				return nil, err
			}
			ports = append(ports, int(p))
		}
	}
	if !found {
		return nil, errors.New("no /proc/<pid>/net/tcp")
	}
	return ports, nil
}
