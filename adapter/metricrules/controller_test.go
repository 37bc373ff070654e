package metricrules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	discoveryfake "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
)

var promqlParser = parser.NewParser(parser.Options{})

// seriesBackend is a backend holding series of several namespaces: it
// answers a series listing by the selector's matchers, as Prometheus
// does, so a selector that lost its namespace matcher would list other
// namespaces' series. It records the namespace each listing was made for.
type seriesBackend struct {
	series []model.LabelSet

	mu         sync.Mutex
	namespaces []string
}

func (b *seriesBackend) Series(ctx context.Context, matchers []string, _, _ time.Time) ([]model.LabelSet, error) {
	ns, _ := backend.RequestNamespace(ctx)
	b.mu.Lock()
	b.namespaces = append(b.namespaces, ns)
	b.mu.Unlock()
	var out []model.LabelSet
	for _, m := range matchers {
		ms, err := promqlParser.ParseMetricSelector(m)
		if err != nil {
			return nil, err
		}
	series:
		for _, ls := range b.series {
			for _, lm := range ms {
				if !lm.Matches(string(ls[model.LabelName(lm.Name)])) {
					continue series
				}
			}
			out = append(out, ls)
		}
	}
	return out, nil
}

func (b *seriesBackend) listedFor() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.namespaces)
}

func podSeries(name, namespace string, pods ...string) []model.LabelSet {
	var out []model.LabelSet
	for _, p := range pods {
		out = append(out, model.LabelSet{"__name__": model.LabelValue(name), "namespace": model.LabelValue(namespace), "pod": model.LabelValue(p)})
	}
	return out
}

// clusterRules is the cluster config's registry in the tests.
type clusterRules struct {
	custom map[cmprovider.CustomMetricInfo]discovery.Entry
}

func (c clusterRules) LookupCustom(info cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	e, ok := c.custom[info]
	return e, ok
}
func (c clusterRules) LookupExternal(string) (discovery.Entry, bool) { return discovery.Entry{}, false }
func (c clusterRules) CustomMetrics() []cmprovider.CustomMetricInfo {
	var out []cmprovider.CustomMetricInfo
	for info := range c.custom {
		out = append(out, info)
	}
	return out
}
func (c clusterRules) ExternalMetrics() []cmprovider.ExternalMetricInfo { return nil }

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

func namespaceObject(name string, lbls map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName(name)
	u.SetLabels(lbls)
	return u
}

var created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// metricRule is a MetricRule object with the spec given as YAML, created
// minute minutes after the others of minute 0.
func metricRule(t testing.TB, namespace, name string, minute int, specYAML string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"spec": runtime.DeepCopyJSONValue(toJSON(spec(t, specYAML)))}}
	u.SetAPIVersion(GVR.GroupVersion().String())
	u.SetKind(Kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetUID(types.UID(namespace + "-" + name))
	u.SetGeneration(1)
	u.SetCreationTimestamp(metav1.NewTime(created.Add(time.Duration(minute) * time.Minute)))
	return u
}

// toJSON turns YAML-decoded values into what a JSON decoder gives, as
// unstructured objects hold.
func toJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = toJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toJSON(e)
		}
		return out
	case int:
		return int64(v)
	}
	return v
}

func ruleFor(series, as string) string {
	return fmt.Sprintf(`
rules:
- seriesQuery: '%s{pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {as: %q}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`, series, as)
}

type harness struct {
	t      *testing.T
	client *dynamicfake.FakeDynamicClient
	ctrl   *Controller
	back   *seriesBackend
}

func startController(t *testing.T, opts Options, back *seriesBackend, objs ...runtime.Object) *harness {
	t.Helper()
	return startControllerWith(t, opts, back, nil, objs...)
}

// startControllerWith is startController with the controller's client
// wrapped by wrap (nil: the fake client itself).
func startControllerWith(t *testing.T, opts Options, back *seriesBackend, wrap func(dynamic.Interface) dynamic.Interface, objs ...runtime.Object) *harness {
	t.Helper()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		GVR:           "MetricRuleList",
		namespacesGVR: "NamespaceList",
	}, objs...)
	opts.Client = client
	if wrap != nil {
		opts.Client = wrap(client)
	}
	if opts.Env == nil {
		opts.Env = testEnv()
	}
	opts.ListersFor = func(string) map[string]discovery.SeriesLister {
		return map[string]discovery.SeriesLister{"prometheus": back, "thanos": back}
	}
	if opts.Interval == 0 {
		opts.Interval = time.Hour // relists come from new generations only
	}
	ctrl := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctrl.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &harness{t: t, client: client, ctrl: ctrl, back: back}
}

// waitStatus polls the object's status until cond holds, under a deadline.
func (h *harness) waitStatus(namespace, name string, cond func(Status) bool) Status {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last Status
	for time.Now().Before(deadline) {
		u, err := h.client.Resource(GVR).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			mr, err := FromUnstructured(u)
			if err == nil {
				last = mr.Status
				if cond(last) {
					return last
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("MetricRule %s/%s: status never met the condition; last: %+v", namespace, name, last)
	return last
}

func reasonIs(condType, reason string) func(Status) bool {
	return func(s Status) bool {
		c := findCondition(s.Conditions, condType)
		return c != nil && c.Reason == reason
	}
}

var podsInfo = func(metric string) cmprovider.CustomMetricInfo {
	return cmprovider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric}
}

func TestServedOnlyInItsNamespace(t *testing.T) {
	back := &seriesBackend{series: slices.Concat(
		podSeries("a_requests_total", "team-a", "web-1", "web-2"),
		podSeries("a_requests_total", "team-b", "web-1", "web-2", "web-3"),
		podSeries("b_requests_total", "team-b", "api-1"),
	)}
	h := startController(t, Options{Cluster: clusterRules{}}, back,
		metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "a_requests")),
		metricRule(t, "team-b", "api", 0, ruleFor("b_requests_total", "b_requests")),
	)
	st := h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonDiscovered))
	// The namespace label maps to namespaces too: the namespace's own
	// Namespace object has the metric, as with prometheus-adapter.
	if diff := cmp.Diff([]MetricStatus{{Name: "a_requests", Resource: "namespaces", Objects: 1}, {Name: "a_requests", Resource: "pods", Objects: 2}}, st.Metrics); diff != "" {
		t.Errorf("team-a/web metrics (-want +got):\n%s", diff)
	}
	if st.MetricCount != 2 || st.ObservedGeneration != 1 || st.Message != "" || st.LastDiscoveryTime == nil {
		t.Errorf("team-a/web status: %+v", st)
	}
	if c := findCondition(st.Conditions, ConditionAccepted); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonCompiled {
		t.Errorf("Accepted: %+v", c)
	}
	h.waitStatus("team-b", "api", reasonIs(ConditionReady, ReasonDiscovered))
	for _, ns := range h.back.listedFor() {
		if ns != "team-a" && ns != "team-b" {
			t.Errorf("a listing was made for namespace %q; want each MetricRule's own", ns)
		}
	}

	// The lookups: each namespace finds its own rules only.
	if e, ok := h.ctrl.LookupCustomIn("team-a", podsInfo("a_requests")); !ok || e.Rule.Namespace != "team-a" {
		t.Errorf("team-a: a_requests: %+v, %v; want team-a's rule", e, ok)
	}
	if e, ok := h.ctrl.LookupCustomIn("team-b", podsInfo("a_requests")); ok {
		t.Errorf("team-b found team-a's metric a_requests: %s", e.Rule.ID)
	}
	if e, ok := h.ctrl.LookupCustomIn("team-a", podsInfo("b_requests")); ok {
		t.Errorf("team-a found team-b's metric b_requests: %s", e.Rule.ID)
	}

	// Through the provider: never in the cluster-wide lists, and a team-b
	// request is not answered from team-a's rule.
	p := provider.New(provider.Options{Registry: clusterRules{}, Mapper: testMapper(), Objects: noObjects{}})
	p.ServeNamespaced(h.ctrl, 4)
	if l := p.ListAllMetrics(); len(l) != 0 {
		t.Errorf("ListAllMetrics lists namespaced metrics: %v", l)
	}
	if l := p.ListAllExternalMetrics(); len(l) != 0 {
		t.Errorf("ListAllExternalMetrics lists namespaced metrics: %v", l)
	}
	_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "team-b", Name: "web-1"}, podsInfo("a_requests"), labels.Everything())
	if !apierrors.IsNotFound(err) {
		t.Errorf("team-b pod web-1, a_requests: %v; want NotFound", err)
	}
	_, err = p.GetMetricBySelector(context.Background(), "", labels.Everything(), podsInfo("a_requests"), labels.Everything())
	if !apierrors.IsNotFound(err) {
		t.Errorf("a_requests across all namespaces: %v; want NotFound", err)
	}

	// A deleted resource's metrics go at once.
	if err := h.client.Resource(GVR).Namespace("team-a").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := h.ctrl.LookupCustomIn("team-a", podsInfo("a_requests")); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("team-a/web was deleted, its metric is still found")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noObjects is an object cache with no objects.
type noObjects struct{}

func (noObjects) Names(context.Context, schema.GroupResource, string, labels.Selector) ([]string, error) {
	return nil, nil
}

func (noObjects) Objects(context.Context, schema.GroupResource, string, labels.Selector) ([]*metav1.PartialObjectMetadata, error) {
	return nil, nil
}

func TestAdminControls(t *testing.T) {
	huge := podSeries("huge_total", "team-d", "p1", "p2", "p3", "p4", "p5")
	back := &seriesBackend{series: slices.Concat(
		podSeries("a_requests_total", "team-a", "web-1"),
		podSeries("c_requests_total", "team-c", "web-1"),
		huge,
		podSeries("d_requests_total", "team-d", "web-1"),
	)}
	env := testEnv()
	env.AllowedBackends = []string{"prometheus"}
	sel, err := labels.Parse("gantry.dev/metricrules=enabled")
	if err != nil {
		t.Fatal(err)
	}
	enabled := map[string]string{"gantry.dev/metricrules": "enabled"}
	h := startController(t, Options{
		Env:                  env,
		Cluster:              clusterRules{},
		NamespaceSelector:    sel,
		MaxRulesPerNamespace: 2,
		MaxSeries:            3,
	}, back,
		namespaceObject("team-a", enabled),
		namespaceObject("team-c", nil),
		namespaceObject("team-d", enabled),
		// team-a: three resources of one rule each, at most two.
		metricRule(t, "team-a", "first", 0, ruleFor("a_requests_total", "a1")),
		metricRule(t, "team-a", "second", 1, ruleFor("a_requests_total", "a2")),
		metricRule(t, "team-a", "third", 2, ruleFor("a_requests_total", "a3")),
		metricRule(t, "team-a", "thanos", 0, ruleFor("a_requests_total", "a4")+"  backend: thanos\n"),
		// team-c is not selected.
		metricRule(t, "team-c", "web", 0, ruleFor("c_requests_total", "c")),
		// team-d: one rule lists too many series, the other is fine.
		metricRule(t, "team-d", "huge", 0, ruleFor("huge_total", "huge")),
		metricRule(t, "team-d", "web", 1, ruleFor("d_requests_total", "d")),
	)

	st := h.waitStatus("team-c", "web", reasonIs(ConditionAccepted, ReasonNamespaceNotAllowed))
	if !strings.Contains(st.Message, `"team-c"`) || !strings.Contains(st.Message, "gantry.dev/metricrules=enabled") {
		t.Errorf("NamespaceNotAllowed message: %q", st.Message)
	}
	if r := findCondition(st.Conditions, ConditionReady); r == nil || r.Reason != ReasonNotAccepted {
		t.Errorf("team-c/web Ready: %+v; want NotAccepted", r)
	}
	if _, ok := h.ctrl.LookupCustomIn("team-c", podsInfo("c")); ok {
		t.Error("team-c's metric is served though its namespace is not selected")
	}

	st = h.waitStatus("team-a", "thanos", reasonIs(ConditionAccepted, ReasonBackendNotAllowed))
	if want := "spec.rules[0].backend: MetricRules may not use the thanos backend (allowed: prometheus)"; st.Message != want {
		t.Errorf("BackendNotAllowed message %q; want %q", st.Message, want)
	}
	h.waitStatus("team-a", "first", reasonIs(ConditionReady, ReasonDiscovered))
	h.waitStatus("team-a", "second", reasonIs(ConditionReady, ReasonDiscovered))
	st = h.waitStatus("team-a", "third", reasonIs(ConditionAccepted, ReasonTooManyRules))
	if !strings.Contains(st.Message, "at most 2") {
		t.Errorf("TooManyRules message: %q", st.Message)
	}
	if _, ok := h.ctrl.LookupCustomIn("team-a", podsInfo("a3")); ok {
		t.Error("the third resource of team-a is served beyond the bound")
	}

	st = h.waitStatus("team-d", "huge", reasonIs(ConditionReady, ReasonDiscoveryFailed))
	if want := "spec.rules[0].seriesQuery: discovery failed: the seriesQuery lists more than 3 series"; !strings.HasPrefix(st.Message, want) {
		t.Errorf("DiscoveryFailed message %q; want it to start with %q", st.Message, want)
	}
	h.waitStatus("team-d", "web", reasonIs(ConditionReady, ReasonDiscovered))

	// A namespace that gets the label has its rules served.
	if _, err := h.client.Resource(namespacesGVR).Update(context.Background(), namespaceObject("team-c", enabled), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("team-c", "web", reasonIs(ConditionReady, ReasonDiscovered))
}

func TestClusterRulesWinANameConflict(t *testing.T) {
	back := &seriesBackend{series: slices.Concat(
		podSeries("a_requests_total", "team-a", "web-1"),
		podSeries("b_requests_total", "team-a", "web-1"),
	)}
	clusterRule := &rules.Rule{ID: "rules[3] (http_requests)"}
	cluster := clusterRules{custom: map[cmprovider.CustomMetricInfo]discovery.Entry{
		podsInfo("taken"): {Rule: clusterRule, Series: "x"},
	}}
	h := startController(t, Options{Cluster: cluster}, back,
		metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "taken")),
		metricRule(t, "team-a", "first", 0, ruleFor("b_requests_total", "mine")),
		metricRule(t, "team-a", "later", 5, ruleFor("b_requests_total", "mine")),
	)
	st := h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonNameConflict))
	if want := `metric on pods "taken" is served by the cluster config's rules[3] (http_requests), which wins`; st.Message != want {
		t.Errorf("NameConflict message %q; want %q", st.Message, want)
	}
	if diff := cmp.Diff([]MetricStatus{{Name: "taken", Resource: "namespaces", Objects: 1}}, st.Metrics); diff != "" {
		t.Errorf("served metrics (-want +got), taken on pods being the cluster's:\n%s", diff)
	}
	h.waitStatus("team-a", "first", reasonIs(ConditionReady, ReasonDiscovered))
	st = h.waitStatus("team-a", "later", reasonIs(ConditionReady, ReasonNameConflict))
	if !strings.Contains(st.Message, "MetricRule team-a/first (created earlier)") {
		t.Errorf("NameConflict message %q; want it to name team-a/first", st.Message)
	}
	if e, ok := h.ctrl.LookupCustomIn("team-a", podsInfo("mine")); !ok || !strings.Contains(e.Rule.ID, "team-a/first") {
		t.Errorf("mine is answered by %+v; want team-a/first", e)
	}
}

func TestInvalidRuleStatusAndEdit(t *testing.T) {
	back := &seriesBackend{series: podSeries("a_requests_total", "team-a", "web-1")}
	bad := metricRule(t, "team-a", "web", 0, `
rules:
- seriesQuery: 'a_requests_total{pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m]) by (<<.GroupBy>>)'
`)
	h := startController(t, Options{Cluster: clusterRules{}}, back, bad)
	st := h.waitStatus("team-a", "web", reasonIs(ConditionAccepted, ReasonInvalid))
	if !strings.HasPrefix(st.Message, "spec.rules[0].metricsQuery: rendered query does not parse") {
		t.Errorf("Invalid message: %q", st.Message)
	}
	if st.ObservedGeneration != 1 {
		t.Errorf("observedGeneration %d; want 1", st.ObservedGeneration)
	}

	// The fix is served as its new generation.
	good := metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "a_requests"))
	good.SetGeneration(2)
	good.SetResourceVersion("")
	cur, err := h.client.Resource(GVR).Namespace("team-a").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good.Object["status"] = cur.Object["status"]
	if _, err := h.client.Resource(GVR).Namespace("team-a").Update(context.Background(), good, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st = h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonDiscovered))
	if st.ObservedGeneration != 2 || st.MetricCount != 2 {
		t.Errorf("after the fix: %+v", st)
	}
}

// TestStatusWrittenOnlyWhenChanged: a sync that finds nothing new writes
// nothing.
func TestStatusWrittenOnlyWhenChanged(t *testing.T) {
	back := &seriesBackend{series: podSeries("a_requests_total", "team-a", "web-1")}
	h := startController(t, Options{Cluster: clusterRules{}}, back, metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "a")))
	h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonDiscovered))
	u, err := h.client.Resource(GVR).Namespace("team-a").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mr, err := FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	s := h.ctrl.servedByUIDFor(mr.UID)
	if s == nil {
		t.Fatal("team-a/web is not served")
	}
	c := h.ctrl
	c.mu.RLock()
	list := c.byNamespace["team-a"]
	c.mu.RUnlock()
	if _, write := c.status(mr, nil, s, list); write {
		t.Error("the status as written asks to be written again")
	}
}

func (c *Controller) servedByUIDFor(uid types.UID) *served {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.servedByUID[uid]
}

// crdDiscovery serves the MetricRule group once installed is set.
type crdDiscovery struct {
	*discoveryfake.FakeDiscovery
	installed atomic.Bool
	checks    atomic.Int32
}

func (d *crdDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	d.checks.Add(1)
	if gv == GVR.GroupVersion().String() && d.installed.Load() {
		return &metav1.APIResourceList{GroupVersion: gv, APIResources: []metav1.APIResource{{Name: Resource, Namespaced: true, Kind: Kind}}}, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: Group, Resource: Resource}, "")
}

// TestWaitsForTheCRD: without the CRD the controller waits, checking
// again, and serves MetricRules once it is installed.
func TestWaitsForTheCRD(t *testing.T) {
	back := &seriesBackend{series: podSeries("a_requests_total", "team-a", "web-1")}
	disc := &crdDiscovery{FakeDiscovery: &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}}
	h := startController(t, Options{Cluster: clusterRules{}, Discovery: disc, CRDCheckInterval: 10 * time.Millisecond}, back,
		metricRule(t, "team-a", "web", 0, ruleFor("a_requests_total", "a")))
	deadline := time.Now().Add(20 * time.Second)
	for disc.checks.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the controller did not look for the CRD again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := h.ctrl.LookupCustomIn("team-a", podsInfo("a")); ok {
		t.Fatal("a MetricRule is served before its CRD is found")
	}
	disc.installed.Store(true)
	h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonDiscovered))
}

// TestClusterScopedMetricsAreNotListed: a rule that also maps a node
// label finds a metric about nodes, which no request in a namespace can
// be about: the status does not list it as served.
func TestClusterScopedMetricsAreNotListed(t *testing.T) {
	back := &seriesBackend{series: []model.LabelSet{{"__name__": "a_requests_total", "namespace": "team-a", "pod": "web-1", "node": "node-1"}}}
	h := startController(t, Options{Cluster: clusterRules{}}, back, metricRule(t, "team-a", "web", 0, `
rules:
- seriesQuery: 'a_requests_total{pod!=""}'
  resources: {overrides: {pod: {resource: pod}, node: {resource: node}}}
  name: {as: a}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
`))
	st := h.waitStatus("team-a", "web", reasonIs(ConditionReady, ReasonDiscovered))
	if diff := cmp.Diff([]MetricStatus{{Name: "a", Resource: "pods", Objects: 1}}, st.Metrics); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}
