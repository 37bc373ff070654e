package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	externalv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/test/stack"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// ruleEnv is what the MetricRule tests use on top of env: the dynamic
// client for MetricRules, kubectl, and the admin through the aggregator.
type ruleEnv struct {
	*env
	dyn     dynamic.Interface
	kubectl string
	admin   *rawClient
	dir     string

	// refusals are the escape attempts the status refused, by MetricRule
	// name (refusal values), for the webhook case.
	refusals sync.Map
	mu       sync.Mutex
	served   []servedMetric
}

func newRuleEnv(t *testing.T, e *env) *ruleEnv {
	t.Helper()
	dyn, err := dynamic.NewForConfig(e.st.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := toolbin.Path(mustBinDir(t), "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	return &ruleEnv{env: e, dyn: dyn, kubectl: kubectl, admin: e.aggregatorClient(t), dir: t.TempDir()}
}

// ruleStatus is a MetricRule's status, as the contract of issue 16 has it.
type ruleStatus struct {
	ObservedGeneration int64              `json:"observedGeneration"`
	Conditions         []metav1.Condition `json:"conditions"`
	Message            string             `json:"message"`
	MetricCount        int32              `json:"metricCount"`
	Metrics            []struct {
		Name     string `json:"name"`
		Resource string `json:"resource"`
		Objects  int32  `json:"objects"`
	} `json:"metrics"`
	LastDiscoveryTime *metav1.Time `json:"lastDiscoveryTime"`
}

// ruleState is a MetricRule as last read: its generation and status.
type ruleState struct {
	generation int64
	status     ruleStatus
}

func (s ruleState) cond(typ string) *metav1.Condition {
	return meta.FindStatusCondition(s.status.Conditions, typ)
}

// current reports whether Gantry has judged the MetricRule's latest
// generation.
func (s ruleState) current() bool {
	return s.status.ObservedGeneration == s.generation && s.cond("Accepted") != nil
}

// refused reports whether the latest generation is Accepted=False.
func (s ruleState) refused() bool {
	c := s.cond("Accepted")
	return s.current() && c.Status == metav1.ConditionFalse
}

// ready reports whether the latest generation is Ready=True.
func (s ruleState) ready() bool {
	c := s.cond("Ready")
	return s.current() && c != nil && c.Status == metav1.ConditionTrue
}

func (s ruleState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d, observedGeneration %d, message %q, metricCount %d", s.generation, s.status.ObservedGeneration, s.status.Message, s.status.MetricCount)
	for _, c := range s.status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, m := range s.status.Metrics {
		fmt.Fprintf(&b, "; metric %s on %s (%d objects)", m.Name, m.Resource, m.Objects)
	}
	return b.String()
}

// metricRuleObject builds a MetricRule whose spec is the YAML spec (the
// config file's rules and externalRules sections).
func metricRuleObject(t *testing.T, ns, name, spec string) *unstructured.Unstructured {
	t.Helper()
	j, err := utilyaml.ToJSON([]byte(spec))
	if err != nil {
		t.Fatalf("MetricRule %s/%s: spec is not YAML: %v", ns, name, err)
	}
	var s map[string]any
	if err := json.Unmarshal(j, &s); err != nil {
		t.Fatalf("MetricRule %s/%s: spec: %v", ns, name, err)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gantry.dev/v1alpha1",
		"kind":       "MetricRule",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       s,
	}}
}

// createRule creates a MetricRule through the kube-apiserver and returns
// when it was created.
func (r *ruleEnv) createRule(ctx context.Context, t *testing.T, ns, name, spec string) time.Time {
	t.Helper()
	obj := metricRuleObject(t, ns, name, spec)
	if _, err := r.dyn.Resource(stack.MetricRuleGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating MetricRule %s/%s: %v", ns, name, err)
	}
	return time.Now()
}

// dryRunCreate asks the kube-apiserver (and so any admission webhook) to
// create a MetricRule without storing it.
func (r *ruleEnv) dryRunCreate(ctx context.Context, t *testing.T, ns, name, spec string) error {
	t.Helper()
	obj := metricRuleObject(t, ns, name, spec)
	_, err := r.dyn.Resource(stack.MetricRuleGVR).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// updateSpec replaces a MetricRule's spec.
func (r *ruleEnv) updateSpec(ctx context.Context, t *testing.T, ns, name, spec string) time.Time {
	t.Helper()
	want := metricRuleObject(t, ns, name, spec)
	for attempt := 0; ; attempt++ {
		obj, err := r.dyn.Resource(stack.MetricRuleGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("reading MetricRule %s/%s: %v", ns, name, err)
		}
		obj.Object["spec"] = want.Object["spec"]
		_, err = r.dyn.Resource(stack.MetricRuleGVR).Namespace(ns).Update(ctx, obj, metav1.UpdateOptions{})
		if err == nil {
			return time.Now()
		}
		if !apierrors.IsConflict(err) || attempt == 5 {
			t.Fatalf("updating MetricRule %s/%s: %v", ns, name, err)
		}
	}
}

func (r *ruleEnv) deleteRule(ctx context.Context, t *testing.T, ns, name string) time.Time {
	t.Helper()
	if err := r.dyn.Resource(stack.MetricRuleGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting MetricRule %s/%s: %v", ns, name, err)
	}
	return time.Now()
}

func (r *ruleEnv) readRule(ctx context.Context, ns, name string) (ruleState, error) {
	obj, err := r.dyn.Resource(stack.MetricRuleGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ruleState{}, err
	}
	s := ruleState{generation: obj.GetGeneration()}
	if raw, ok := obj.Object["status"].(map[string]any); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s.status); err != nil {
			return s, fmt.Errorf("MetricRule %s/%s: status: %w", ns, name, err)
		}
	}
	return s, nil
}

// waitRule polls a MetricRule's status until ok holds, failing the test
// after within with the last status read.
func (r *ruleEnv) waitRule(ctx context.Context, t *testing.T, ns, name string, within time.Duration, what string, ok func(ruleState) bool) ruleState {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last ruleState
	var lastErr error
	for {
		s, err := r.readRule(ctx, ns, name)
		if err == nil {
			last = s
			if ok(s) {
				return s
			}
		} else if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("MetricRule %s/%s: waiting for %s: not within %s; last status: %s (last error: %v)", ns, name, what, within, last, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitJudged waits until Gantry has either refused the MetricRule's latest
// generation or made it Ready.
func (r *ruleEnv) waitJudged(ctx context.Context, t *testing.T, ns, name string) ruleState {
	t.Helper()
	return r.waitRule(ctx, t, ns, name, 90*time.Second, "Accepted=False or Ready=True for its latest generation", func(s ruleState) bool {
		return s.refused() || s.ready()
	})
}

// externalPath is an external metric of namespace ns, through the
// aggregator.
func externalPath(ns, metric string, selector string) string {
	p := "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + ns + "/" + metric
	if selector != "" {
		p += "?labelSelector=" + url.QueryEscape(selector)
	}
	return p
}

// externalSum is the sum of an external metric answer's values, and how
// many values it had; ok is false for anything but a 200 with a list.
func externalSum(r apiResult) (sum float64, n int, ok bool) {
	if r.code != http.StatusOK {
		return 0, 0, false
	}
	var list externalv1beta1.ExternalMetricValueList
	if err := json.Unmarshal(r.body, &list); err != nil {
		return 0, 0, false
	}
	for _, it := range list.Items {
		sum += it.Value.AsApproximateFloat64()
	}
	return sum, len(list.Items), true
}

// waitCode polls path through the aggregator until it answers code.
func (r *ruleEnv) waitCode(ctx context.Context, t *testing.T, path string, code int, within time.Duration, what string) apiResult {
	t.Helper()
	var last apiResult
	deadline := time.Now().Add(within)
	for {
		last = r.admin.get(ctx, path)
		if last.code == code {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: waiting for %d (%s): not within %s; last answer %d %.400s", path, code, what, within, last.code, last.message())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubectlRun runs bin/kubectl against the cluster as its admin and returns
// its combined output and error (kubectl's refusals are what some cases
// check).
func (r *ruleEnv) kubectlRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.kubectl, append([]string{"--kubeconfig", r.st.Cluster.KubeconfigPath()}, args...)...).CombinedOutput()
	return string(out), err
}

// manifest writes a MetricRule as a YAML file for kubectl apply.
func (r *ruleEnv) manifest(t *testing.T, ns, name, spec string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: gantry.dev/v1alpha1\nkind: MetricRule\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n", name, ns)
	for _, line := range strings.Split(strings.TrimRight(spec, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	path := filepath.Join(r.dir, ns+"-"+name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// shippedWebhook is the ValidatingWebhookConfiguration of deploy/manifests
// (metricrules-webhook.yaml), as kubectl apply -k would create it.
func shippedWebhook(t *testing.T) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	objs, err := deploy.Objects()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		var wh admissionregistrationv1.ValidatingWebhookConfiguration
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &wh); err != nil {
			t.Fatalf("deploy/manifests: ValidatingWebhookConfiguration %s: %v", o.GetName(), err)
		}
		return &wh
	}
	t.Fatal("deploy/manifests (kustomization.yaml) has no ValidatingWebhookConfiguration for MetricRules")
	return nil
}

// registerWebhook registers the shipped webhook configuration as it is,
// reaching Gantry through its Service (an ExternalName to localhost, which
// the kube-apiserver resolves for webhooks as for APIServices) on port,
// with the serving CA as caBundle, as the cert-manager component would
// inject it. Unlike stack.RegisterWebhook (a URL), this keeps the
// manifest's service reference and path under test.
func (r *ruleEnv) registerWebhook(ctx context.Context, t *testing.T, port int32) {
	t.Helper()
	want := shippedWebhook(t)
	for i := range want.Webhooks {
		svc := want.Webhooks[i].ClientConfig.Service
		if svc == nil {
			t.Fatalf("deploy/manifests: webhook %s of %s does not call a Service", want.Webhooks[i].Name, want.Name)
		}
		svc.Port = &port
		want.Webhooks[i].ClientConfig.CABundle = r.st.Cluster.CAPEM()
	}
	api := r.client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	have, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
	case err == nil:
		want.ResourceVersion = have.ResourceVersion
		_, err = api.Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("registering the MetricRule webhook on port %d: %v", port, err)
	}
}

// removeWebhook deletes the shipped webhook configuration, if there.
func (r *ruleEnv) removeWebhook(ctx context.Context, t *testing.T) {
	t.Helper()
	name := shippedWebhook(t).Name
	err := r.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("removing the MetricRule webhook %s: %v", name, err)
	}
}

// gantryPort is the port of Gantry's secure listener.
func (r *ruleEnv) gantryPort(t *testing.T) int32 {
	t.Helper()
	u, err := url.Parse(r.st.GantryURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return int32(p)
}

// closedPort is a loopback port nothing listens on (one the kernel just
// handed out and the test closed).
func closedLoopbackPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return int32(p)
}

// discoveryNames are the resource names of a discovery document, through
// the aggregator.
func (r *ruleEnv) discoveryNames(ctx context.Context, t *testing.T, path string) []string {
	t.Helper()
	res := r.admin.get(ctx, path)
	if res.code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, res.code, res.message())
	}
	var list metav1.APIResourceList
	if err := json.Unmarshal(res.body, &list); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	var names []string
	for _, a := range list.APIResources {
		names = append(names, a.Name)
	}
	slices.Sort(names)
	return names
}

// promValue is the single value of an instant query on Prometheus itself.
func (r *ruleEnv) promValue(ctx context.Context, query string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.st.Prom.URL()+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", query, body.Error)
	}
	if len(body.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: %d results, want 1", query, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, errors.New("query " + query + ": value " + s)
	}
	return v, nil
}

// percentile is the p-th percentile (nearest rank) of d, sorted in place.
func latencyPercentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(p/100*float64(len(d))+0.5) - 1
	return d[min(max(i, 0), len(d)-1)]
}
