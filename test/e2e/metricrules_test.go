package e2e

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/test/stack"
)

// The MetricRule cases of issue 16 run in team-a and team-b (nsA, nsB of
// the backends test) and in a namespace the admin's selector leaves out.
const (
	nsDenied = "team-x"
	// denyLabel on a namespace takes it out of
	// --metricrule-namespace-selector.
	denyLabel = "e2e.gantry.dev/metricrules"
	// ruleMaxSeries is --metricrule-max-series; hugeSeries is how many
	// series team-b's huge rule lists.
	ruleMaxSeries = 200
	hugeSeries    = 300
)

// The escape series: escape_requests_total per pod, team-a's growing at
// 1/s and 2/s, team-b's at 100/s, so a value of 3 is team-a's alone and
// anything near 100 or 103 has read team-b.
const (
	escapeA    = 3.0
	escapeB    = 100.0
	escapeTol  = 0.5
	escapeName = "escape_requests_total"
)

// teamRule is a team's Pods rule, on the request rate of its pods; its
// seriesQuery names no namespace (Gantry confines it).
func teamRule(metric string) string {
	return fmt.Sprintf(`rules:
- seriesQuery: 'http_requests_total{pod!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
      pod: {resource: pod}
  name: {matches: "^http_requests_total$", as: %s}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s])) by (<<.GroupBy>>)'
`, metric)
}

// externalRule is an external rule serving metric from query, with series
// listed by seriesQuery and filtered to filter (a series name regexp).
func externalRule(seriesQuery, filter, metric, query string) string {
	return fmt.Sprintf(`externalRules:
- seriesQuery: '%s'
  seriesFilters: [{is: "%s"}]
  name: {as: %s}
  metricsQuery: '%s'
`, seriesQuery, filter, metric, query)
}

// escapeRule is an external rule on the escape series.
func escapeRule(metric, query string) string {
	return externalRule(escapeName, "^"+escapeName+"$", metric, query)
}

// brokenRule does not compile: its metricsQuery does not parse.
const brokenRule = `rules:
- seriesQuery: 'http_requests_total{pod!=""}'
  resources: {template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_broken"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[30s]) by (<<.GroupBy>>)'
`

// brokenField is what every message about brokenRule must name.
const brokenField = "spec.rules[0].metricsQuery"

// TestMetricRules proves issue 16's MetricRules on the local cluster: a
// real kube-apiserver stores them, the real HPA controller scales on them
// through the aggregator, and a real Prometheus holding both teams' series
// answers their queries.
//
//  1. team-a and team-b each apply a MetricRule with a Pods rule; each
//     team's HPA scales its Deployment on its own rule; kubectl get shows
//     the MetricRule Ready with its metrics;
//  2. escape attempts in team-a (no namespace matcher, namespace="team-b",
//     namespace=~".+", {__name__=~".+"}, an or/unless/on() join, a
//     subquery, label_replace of namespace, absent(), info(), LogQL naming
//     team-b, and a request selector naming team-b) are each refused with
//     a message naming the field, or answered with team-a's data only;
//  3. a namespace the admin's selector leaves out gets NamespaceNotAllowed
//     and no metric; a name the cluster config serves is a NameConflict;
//  4. an edit is served, a delete is a 404 at once; a huge rule and a
//     broken one in team-b leave team-a alone;
//  5. team-b gets 404 for team-a's metrics, and the cluster-wide discovery
//     documents name none of them;
//  6. the validating webhook refuses a broken rule (kubectl apply) and the
//     escape attempts with the status's message; with the webhook failing
//     or removed the apiserver stores the rule and its status says the
//     same;
//  7. apply → served latency of a handful of rules is logged.
func TestMetricRules(t *testing.T) {
	ctx := context.Background()
	// LogQL rules need a Loki backend to name; the attempt on it is
	// refused before any query, so nothing needs to listen there.
	rules := fmt.Sprintf("backends:\n- name: logs\n  type: loki\n  url: http://127.0.0.1:%d\n", closedLoopbackPort(t)) + stack.DefaultRules
	e := startEnv(t, stack.Options{
		Rules: rules,
		GantryArgs: []string{
			"--metricrule-namespace-selector=" + denyLabel + "!=off",
			"--metricrule-max-rules-per-namespace=40",
			"--metricrule-max-series=" + strconv.Itoa(ruleMaxSeries),
		},
	}, true)
	r := newRuleEnv(t, e)
	// The status is the truth with or without the webhook: the cases
	// before the webhook's own run without it, whatever the stack
	// registered.
	r.removeWebhook(ctx, t)
	for _, n := range []string{nsA, nsB} {
		if err := e.st.EnsureNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	denied := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsDenied, Labels: map[string]string{denyLabel: "off"}}}
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, denied, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	esc := func(ns, pod string) map[string]string {
		return map[string]string{"__name__": escapeName, "job": "escape", "namespace": ns, "pod": pod}
	}
	e.feed.SetRate(esc(nsA, "a-0"), 1)
	e.feed.SetRate(esc(nsA, "a-1"), 2)
	e.feed.SetRate(esc(nsB, "b-0"), escapeB)
	e.feed.SetRate(esc(nsDenied, "x-0"), 7)
	e.feed.SetGauge(map[string]string{"__name__": "queue_depth", "namespace": nsA, "queue": "orders"}, 250)
	for i := range hugeSeries {
		e.feed.SetGauge(map[string]string{"__name__": "huge_series", "job": "huge", "namespace": nsB, "id": strconv.Itoa(i)}, 1)
	}
	// Every escape is tried on a Prometheus that holds both teams' series.
	waitFor(ctx, t, time.Minute, "Prometheus to hold the escape series of both namespaces", func() bool {
		a, errA := r.promValue(ctx, `sum(rate(escape_requests_total{namespace="team-a"}[1m]))`)
		b, errB := r.promValue(ctx, `sum(rate(escape_requests_total{namespace="team-b"}[1m]))`)
		return errA == nil && errB == nil && approx(a, escapeA, escapeTol) && approx(b, escapeB, escapeTol)
	})

	t.Run("group", func(t *testing.T) {
		t.Run("each team scales on its own rule", r.testTeams)
		t.Run("escape attempts", r.testEscapes)
		t.Run("a prometheus-adapter rule pasted unchanged", r.testPasted)
		t.Run("namespace not allowed", r.testNamespaceNotAllowed)
		t.Run("name served by the cluster config", r.testNameConflict)
		t.Run("edit and delete", r.testEditDelete)
		t.Run("a huge and a broken rule leave other namespaces alone", r.testHugeAndBroken)
	})
	t.Run("other namespaces never see a team's metrics", r.testOtherNamespaces)
	t.Run("validating webhook", r.testWebhook)
	t.Run("gantry's own metrics", r.testRuleSelfMetrics)
	t.Run("apply to served latency", r.testLatency)
}

// testTeams: each team's HPA scales on its own MetricRule's Pods metric:
// team-a's pods do 30 req/s (target 10, max 4), team-b's 15 (max 2).
func (r *ruleEnv) testTeams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	teams := []struct {
		ns, metric string
		perPod     float64
		max        int32
	}{
		{nsA, "team_a_requests_per_second", 30, 4},
		{nsB, "team_b_requests_per_second", 15, 2},
	}
	for _, tm := range teams {
		r.deploymentIn(t, tm.ns, "web", 1, "")
		stop := r.feedNamespacePods(tm.ns, "web", func(pod string) {
			r.feed.SetRate(map[string]string{"__name__": "http_requests_total", "namespace": tm.ns, "pod": pod}, tm.perPod)
		})
		defer stop()
		r.createRule(ctx, t, tm.ns, "web", teamRule(tm.metric))
		r.hpaIn(t, tm.ns, "web", 1, tm.max, podsMetric(tm.metric, "10"))
	}
	for _, tm := range teams {
		r.waitRule(ctx, t, tm.ns, "web", 2*time.Minute, "Ready with pods/"+tm.metric, func(s ruleState) bool {
			return s.ready() && hasMetric(s, tm.metric, "pods")
		})
		r.waitReplicasIn(ctx, t, tm.ns, "web", tm.max, fmt.Sprintf("%v req/s per pod on %s's own rule, target 10", tm.perPod, tm.ns))
		r.waitHPAIn(ctx, t, tm.ns, "web", fmt.Sprintf("an average of %v, its own pods'", tm.perPod), func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
			for _, m := range h.Status.CurrentMetrics {
				if m.Pods != nil && m.Pods.Metric.Name == tm.metric && m.Pods.Current.AverageValue != nil {
					return approx(m.Pods.Current.AverageValue.AsApproximateFloat64(), tm.perPod, 0.5)
				}
			}
			return false
		})
		r.markServed(tm.ns, "pods", tm.metric)
	}

	// kubectl shows the printer columns: READY True and the metric count.
	s, err := r.readRule(ctx, nsA, "web")
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.kubectlRun("get", "metricrules", "-n", nsA)
	if err != nil {
		t.Fatalf("kubectl get metricrules -n %s: %v\n%s", nsA, err, out)
	}
	t.Logf("kubectl get metricrules -n %s:\n%s", nsA, out)
	if !containsLine(out, "NAME", "READY", "METRICS", "MESSAGE", "AGE") {
		t.Errorf("kubectl get metricrules: no NAME READY METRICS MESSAGE AGE header:\n%s", out)
	}
	if !containsLine(out, "web", "True", strconv.Itoa(int(s.status.MetricCount))) || s.status.MetricCount < 1 {
		t.Errorf("kubectl get metricrules: no line for web with READY True and METRICS %d (status: %s):\n%s", s.status.MetricCount, s, out)
	}
	out, err = r.kubectlRun("get", "mrule", "web", "-n", nsA, "-o", `jsonpath={range .status.metrics[*]}{.resource}/{.name}={.objects}{"\n"}{end}`)
	if err != nil {
		t.Fatalf("kubectl get mrule web -n %s: %v\n%s", nsA, err, out)
	}
	// All of team-a's pods that are ready have data.
	if !strings.Contains(out, "pods/team_a_requests_per_second=") || strings.Contains(out, "pods/team_a_requests_per_second=0\n") {
		t.Errorf("MetricRule %s/web lists no pods/team_a_requests_per_second with objects: %q", nsA, out)
	}
}

// escape is one attempt of team-a's to read team-b's series.
type escapeAttempt struct {
	name string // MetricRule name; the metric is esc_<name with _>
	// spec is the MetricRule's spec; query, when set, is its
	// metricsQuery, which Prometheus answers unconfined with team-b's
	// data (checked: the attempt would escape without Gantry).
	spec, query string
	// fields are the fields a refusal may name (under
	// spec.externalRules[0]).
	fields []string
	// want is team-a's answer, if the attempt is not refused.
	want float64
	// refuse: there is no team-a answer to compare (LogQL has no Loki
	// here, info() no info series), so it must be refused.
	refuse bool
}

func escapes() []escapeAttempt {
	var out []escapeAttempt
	add := func(name, query string, want float64, fields ...string) {
		metric := "esc_" + strings.ReplaceAll(name, "-", "_")
		out = append(out, escapeAttempt{name: name, spec: escapeRule(metric, query), query: query, fields: fields, want: want})
	}
	add("no-namespace-matcher", `sum(rate(escape_requests_total[1m]))`, escapeA, "metricsQuery")
	add("names-team-b", `sum(rate(escape_requests_total{namespace="team-b"}[1m]))`, escapeA, "metricsQuery")
	add("namespace-regex", `sum(rate(escape_requests_total{namespace=~".+"}[1m]))`, escapeA, "metricsQuery")
	add("join-or-unless-on",
		`sum(rate(escape_requests_total{pod="b-0"}[1m])) or on() (sum(rate(escape_requests_total[1m])) unless on() escape_requests_total{pod="nobody"})`,
		escapeA, "metricsQuery")
	add("subquery", `max_over_time(sum(rate(escape_requests_total[1m]))[2m:10s])`, escapeA, "metricsQuery")
	add("label-replace-namespace", `sum(label_replace(rate(escape_requests_total[1m]), "namespace", "team-a", "namespace", ".*"))`, escapeA, "metricsQuery")
	// Confined, b-0 is absent from team-a: 1. Unconfined, b-0 exists in
	// team-b: no value.
	add("absent", `absent(escape_requests_total{pod="b-0"})`, 1, "metricsQuery")
	any := `sum(rate({__name__=~".+",job="escape"}[1m]))`
	out = append(out, escapeAttempt{
		name:   "any-name",
		spec:   externalRule(`{__name__=~".+"}`, "^"+escapeName+"$", "esc_any_name", any),
		query:  any,
		fields: []string{"seriesQuery", "metricsQuery"},
		want:   escapeA,
	})
	info := `sum(info(rate(escape_requests_total[1m])))`
	out = append(out, escapeAttempt{name: "info", spec: escapeRule("esc_info", info), fields: []string{"metricsQuery"}, refuse: true})
	out = append(out, escapeAttempt{
		name: "logql-names-team-b",
		spec: `externalRules:
- seriesQuery: '{namespace="team-b"}'
  backend: logs
  name: {as: esc_logql}
  logqlQuery: 'sum(rate({namespace="team-b"} |= "error" [1m]))'
`,
		fields: []string{"seriesQuery", "logqlQuery"},
		refuse: true,
	})
	return out
}

func (r *ruleEnv) testEscapes(t *testing.T) {
	t.Parallel()
	for _, tc := range escapes() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			metric := "esc_" + strings.ReplaceAll(tc.name, "-", "_")
			if tc.query != "" {
				// Unconfined, the query reads team-b: the attempt is real.
				v, err := r.promValue(ctx, tc.query)
				if err == nil && approx(v, tc.want, escapeTol) {
					t.Fatalf("the attempt is no escape: unconfined, Prometheus answers %v, team-a's value", v)
				}
				t.Logf("unconfined, Prometheus answers %s", promAnswer(v, err))
			}
			name := "esc-" + tc.name
			r.createRule(ctx, t, nsA, name, tc.spec)
			s := r.waitJudged(ctx, t, nsA, name)
			path := externalPath(nsA, metric, "")
			if s.refused() {
				t.Logf("refused: %s", s.status.Message)
				r.checkRefusal(t, s, "Invalid", "spec.externalRules[0].", tc.fields)
				r.refusals.Store(name, refusal{spec: tc.spec, message: s.status.Message})
				if res := r.admin.get(ctx, path); res.code != http.StatusNotFound {
					t.Errorf("GET %s of a refused rule: %d %.300s, want 404", path, res.code, res.message())
				}
				return
			}
			if tc.refuse {
				t.Errorf("accepted (%s); it must be refused: no answer of it could be checked to hold team-a's data only", s)
			}
			res := r.waitCode(ctx, t, path, http.StatusOK, time.Minute, "the accepted attempt's metric")
			sum, n, ok := externalSum(res)
			if !ok || n == 0 || !approx(sum, tc.want, escapeTol) {
				t.Errorf("accepted and answered %v (%d values, %.300s); team-a's answer is %v (team-a and team-b together: %v)", sum, n, res.body, tc.want, escapeA+escapeB)
				return
			}
			t.Logf("accepted and answered %v, team-a's data only", sum)
			r.markServed(nsA, "external", metric)
		})
	}
	t.Run("request selector naming team-b", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		metric := "esc_selector"
		spec := `externalRules:
- seriesQuery: 'escape_requests_total'
  name: {as: esc_selector}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m]))'
`
		r.createRule(ctx, t, nsA, "esc-selector", spec)
		r.waitRule(ctx, t, nsA, "esc-selector", 90*time.Second, "Ready", ruleState.ready)
		res := r.waitCode(ctx, t, externalPath(nsA, metric, ""), http.StatusOK, time.Minute, "the metric without a selector")
		if sum, _, _ := externalSum(res); !approx(sum, escapeA, escapeTol) {
			t.Fatalf("without a selector: %v, want team-a's %v", sum, escapeA)
		}
		r.markServed(nsA, "external", metric)
		for _, sel := range []string{"namespace=team-b", "namespace!=team-a", "namespace in (team-a,team-b)", "pod=b-0"} {
			res := r.admin.get(ctx, externalPath(nsA, metric, sel))
			sum, _, ok := externalSum(res)
			switch {
			case ok && sum > escapeA+escapeTol:
				t.Errorf("labelSelector %q: answered %v, more than team-a's %v: %.300s", sel, sum, escapeA, res.body)
			case !ok && (res.code < 400 || res.code >= 500):
				t.Errorf("labelSelector %q: %d %.300s, want team-a's data or a 4xx refusal", sel, res.code, res.message())
			default:
				t.Logf("labelSelector %q: %d %s", sel, res.code, strings.TrimSpace(fmt.Sprintf("%.200s", res.message())))
			}
		}
	})
}

// refusal is a refused MetricRule's spec and status message, for the
// webhook to refuse in the same words.
type refusal struct{ spec, message string }

// checkRefusal checks an Accepted=False status: its reason, and a message
// naming prefix and one of fields.
func (r *ruleEnv) checkRefusal(t *testing.T, s ruleState, reason, prefix string, fields []string) {
	t.Helper()
	c := s.cond("Accepted")
	if c.Reason != reason {
		t.Errorf("Accepted=False with reason %q, want %q (%s)", c.Reason, reason, s)
	}
	named := false
	for _, f := range fields {
		named = named || strings.Contains(s.status.Message, prefix+f)
	}
	if !named {
		t.Errorf("status message %q names none of %s%v", s.status.Message, prefix, fields)
	}
	if r := s.cond("Ready"); r == nil || r.Status == metav1.ConditionTrue {
		t.Errorf("a refused rule is Ready or has no Ready condition: %s", s)
	}
	if s.status.MetricCount != 0 {
		t.Errorf("a refused rule reports %d metrics", s.status.MetricCount)
	}
}

// testPasted: prometheus-adapter's walkthrough rule, pasted as it is
// (its seriesQuery has namespace!=""), into team-b, is served on team-b's
// pods (15 req/s each, fed by testTeams).
func (r *ruleEnv) testPasted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := `rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "pasted_${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
`
	r.createRule(ctx, t, nsB, "pasted", spec)
	r.waitRule(ctx, t, nsB, "pasted", 2*time.Minute, "Ready with pods/pasted_http_requests_per_second", func(s ruleState) bool {
		return s.ready() && hasMetric(s, "pasted_http_requests_per_second", "pods")
	})
	path := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + nsB + "/pods/*/pasted_http_requests_per_second?labelSelector=app%3Dweb"
	waitFor(ctx, t, time.Minute, "pasted_http_requests_per_second 15 for team-b's pods", func() bool {
		vals := podValues(nil, r.admin.get(ctx, path))
		return len(vals) > 0 && allNear(vals, 15, 0.5)
	})
	r.markServed(nsB, "pods", "pasted_http_requests_per_second")
}

// testNamespaceNotAllowed: team-x is outside the admin's namespace
// selector: its rule is NamespaceNotAllowed and serves nothing, though
// its series are there.
func (r *ruleEnv) testNamespaceNotAllowed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r.createRule(ctx, t, nsDenied, "web", escapeRule("esc_denied", `sum(rate(escape_requests_total[1m]))`))
	s := r.waitRule(ctx, t, nsDenied, "web", 90*time.Second, "Accepted=False", ruleState.refused)
	if c := s.cond("Accepted"); c.Reason != "NamespaceNotAllowed" {
		t.Errorf("Accepted=False with reason %q, want NamespaceNotAllowed (%s)", c.Reason, s)
	}
	if s.status.Message == "" || s.status.MetricCount != 0 {
		t.Errorf("status of a rule in a namespace not allowed: %s; want a message and no metrics", s)
	}
	path := externalPath(nsDenied, "esc_denied", "")
	// Longer than a relist: it is never served.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if res := r.admin.get(ctx, path); res.code != http.StatusNotFound {
			t.Fatalf("GET %s: %d %.300s, want 404", path, res.code, res.message())
		}
	}
}

// testNameConflict: team-a's rule names its metric queue_depth, which the
// cluster config serves: the cluster rule wins, the MetricRule says so.
func (r *ruleEnv) testNameConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r.createRule(ctx, t, nsA, "conflict", externalRule("queue_depth", "^queue_depth$", "queue_depth", `sum(queue_depth) * 1000`))
	s := r.waitRule(ctx, t, nsA, "conflict", 90*time.Second, "Ready=False NameConflict", func(s ruleState) bool {
		c := s.cond("Ready")
		return s.current() && c != nil && c.Status == metav1.ConditionFalse && c.Reason == "NameConflict"
	})
	t.Logf("status: %s", s)
	if !strings.Contains(s.status.Message, "queue_depth") {
		t.Errorf("the NameConflict message does not name queue_depth: %q", s.status.Message)
	}
	res := r.waitCode(ctx, t, externalPath(nsA, "queue_depth", "queue=orders"), http.StatusOK, time.Minute, "the cluster rule's queue_depth")
	if sum, _, _ := externalSum(res); !approx(sum, 250, 0.01) {
		t.Errorf("queue_depth in %s: %v, want the cluster rule's 250 (the MetricRule's would be 250000)", nsA, sum)
	}
}

// testEditDelete: an edit of the query is served within a bounded wait; a
// deleted rule's metric is a 404 at once.
func (r *ruleEnv) testEditDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	metric := "esc_edit"
	path := externalPath(nsA, metric, "")
	r.createRule(ctx, t, nsA, "edit-me", escapeRule(metric, `sum(rate(escape_requests_total[1m]))`))
	r.waitRule(ctx, t, nsA, "edit-me", 90*time.Second, "Ready", ruleState.ready)
	waitFor(ctx, t, time.Minute, "esc_edit = team-a's sum", func() bool {
		sum, _, ok := externalSum(r.admin.get(ctx, path))
		return ok && approx(sum, escapeA, escapeTol)
	})

	edited := r.updateSpec(ctx, t, nsA, "edit-me", escapeRule(metric, `sum(rate(escape_requests_total{pod="a-1"}[1m]))`))
	var last apiResult
	waitFor(ctx, t, 30*time.Second, "the edit (a-1 alone: 2) to be served", func() bool {
		last = r.admin.get(ctx, path)
		sum, _, ok := externalSum(last)
		return ok && approx(sum, 2, escapeTol)
	})
	t.Logf("edit → served in %s", time.Since(edited).Round(10*time.Millisecond))
	s := r.waitRule(ctx, t, nsA, "edit-me", 30*time.Second, "Ready for generation 2", ruleState.ready)
	if s.generation < 2 {
		t.Errorf("generation %d after an edit", s.generation)
	}

	deleted := r.deleteRule(ctx, t, nsA, "edit-me")
	r.waitCode(ctx, t, path, http.StatusNotFound, 5*time.Second, "a deleted rule's metric")
	t.Logf("delete → 404 in %s", time.Since(deleted).Round(10*time.Millisecond))
	// And it stays gone over a relist.
	time.Sleep(6 * time.Second)
	if res := r.admin.get(ctx, path); res.code != http.StatusNotFound {
		t.Errorf("GET %s %s after the delete: %d %.300s, want 404", path, time.Since(deleted).Round(time.Second), res.code, res.message())
	}
}

// testHugeAndBroken: team-b applies a rule whose discovery lists more
// series than --metricrule-max-series, and one that does not compile;
// team-a's rule applied after them is served as ever.
func (r *ruleEnv) testHugeAndBroken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r.createRule(ctx, t, nsB, "huge", externalRule("huge_series", "^huge_series$", "huge_total", `sum(huge_series)`))
	r.createRule(ctx, t, nsB, "broken", brokenRule)
	huge := r.waitRule(ctx, t, nsB, "huge", 90*time.Second, "Ready=False (discovery over the series limit)", func(s ruleState) bool {
		c := s.cond("Ready")
		return s.current() && c != nil && c.Status == metav1.ConditionFalse && c.Reason != "" && c.Reason != "NotAccepted"
	})
	t.Logf("huge rule (%d series, limit %d): %s", hugeSeries, ruleMaxSeries, huge)
	if huge.status.Message == "" {
		t.Errorf("the huge rule's status has no message: %s", huge)
	}
	broken := r.waitRule(ctx, t, nsB, "broken", 90*time.Second, "Accepted=False", ruleState.refused)
	r.checkRefusal(t, broken, "Invalid", "spec.rules[0].", []string{"metricsQuery"})

	begin := r.createRule(ctx, t, nsA, "after-huge", escapeRule("esc_after_huge", `sum(rate(escape_requests_total[1m]))`))
	r.waitRule(ctx, t, nsA, "after-huge", 90*time.Second, "Ready", ruleState.ready)
	res := r.waitCode(ctx, t, externalPath(nsA, "esc_after_huge", ""), http.StatusOK, time.Minute, "team-a's rule applied after team-b's huge and broken ones")
	if sum, _, _ := externalSum(res); !approx(sum, escapeA, escapeTol) {
		t.Errorf("team-a's rule after team-b's huge one: %v, want %v", sum, escapeA)
	}
	t.Logf("team-a's rule served %s after its apply, with team-b's huge and broken rules in place", time.Since(begin).Round(10*time.Millisecond))
	r.markServed(nsA, "external", "esc_after_huge")
	// The huge rule's metric is not served from a partial discovery.
	if res := r.admin.get(ctx, externalPath(nsB, "huge_total", "")); res.code == http.StatusOK {
		t.Logf("NOTE: the huge rule's metric is served: %.300s", res.body)
	}
}

// testOtherNamespaces: team-a's metrics are a 404 in team-b, and no
// cluster-wide discovery document names them.
func (r *ruleEnv) testOtherNamespaces(t *testing.T) {
	ctx := context.Background()
	served := r.servedIn(nsA)
	if len(served) == 0 {
		t.Fatal("no metric of team-a was served by the cases before")
	}
	for _, m := range served {
		var path string
		if m.resource == "external" {
			path = externalPath(nsB, m.name, "")
		} else {
			path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + nsB + "/" + m.resource + "/*/" + m.name
		}
		if res := r.admin.get(ctx, path); res.code != http.StatusNotFound {
			t.Errorf("team-b asking for team-a's %s: GET %s: %d %.300s, want 404", m.name, path, res.code, res.message())
		}
	}
	t.Logf("team-b asked for team-a's %d served metrics: 404 each", len(served))
	docs := map[string][]string{}
	for _, p := range []string{"/apis/custom.metrics.k8s.io/v1beta2", "/apis/custom.metrics.k8s.io/v1beta1", "/apis/external.metrics.k8s.io/v1beta1"} {
		docs[p] = r.discoveryNames(ctx, t, p)
	}
	// The documents are not empty: the cluster config's metrics are there.
	for p, want := range map[string]string{"/apis/custom.metrics.k8s.io/v1beta2": "pods/http_requests_per_second", "/apis/external.metrics.k8s.io/v1beta1": "queue_depth"} {
		if !slices.Contains(docs[p], want) {
			t.Errorf("%s does not list the cluster config's %s: %v", p, want, docs[p])
		}
	}
	for _, ns := range []string{nsA, nsB} {
		for _, m := range r.servedIn(ns) {
			for p, names := range docs {
				for _, n := range names {
					if n == m.name || strings.HasSuffix(n, "/"+m.name) {
						t.Errorf("%s lists %s, a metric of MetricRules in %s", p, n, ns)
					}
				}
			}
		}
	}
}

// testWebhook registers Gantry's validating webhook: a broken rule and the
// refused escape attempts are refused at apply time with the status's
// message; with the webhook failing (failurePolicy Ignore) or removed, the
// apiserver stores the broken rule and its status gives the same message.
func (r *ruleEnv) testWebhook(t *testing.T) {
	ctx := context.Background()
	r.registerWebhook(ctx, t, r.gantryPort(t))
	t.Cleanup(func() { r.removeWebhook(context.Background(), t) })
	waitFor(ctx, t, 30*time.Second, "the kube-apiserver to call the webhook (a dry run of a broken rule denied)", func() bool {
		err := r.dryRunCreate(ctx, t, nsA, "webhook-probe", brokenRule)
		return err != nil && strings.Contains(err.Error(), "denied")
	})

	file := r.manifest(t, nsA, "broken", brokenRule)
	denial, err := r.kubectlRun("apply", "-f", file)
	if err == nil {
		t.Fatalf("kubectl apply of a broken rule with the webhook registered succeeded:\n%s", denial)
	}
	t.Logf("kubectl apply of a broken rule: %s", strings.TrimSpace(denial))
	if !strings.Contains(denial, brokenField) {
		t.Errorf("kubectl apply's refusal does not name %s:\n%s", brokenField, denial)
	}
	if _, err := r.readRule(ctx, nsA, "broken"); !apierrors.IsNotFound(err) {
		t.Errorf("the refused rule was stored (get: %v)", err)
	}

	// The escape attempts the status refused, the webhook refuses in the
	// same words.
	n := 0
	r.refusals.Range(func(k, v any) bool {
		n++
		name, ref := k.(string), v.(refusal)
		err := r.dryRunCreate(ctx, t, nsA, "webhook-"+name, ref.spec)
		switch {
		case err == nil:
			t.Errorf("%s: the webhook let it through (status refused it: %s)", name, ref.message)
		case !strings.Contains(err.Error(), ref.message):
			t.Errorf("%s: the webhook's refusal is not the status's message %q: %v", name, ref.message, err)
		}
		return true
	})
	t.Logf("the webhook refused %d escape attempts with their status messages", n)

	// A valid rule goes through; breaking it with an update is refused and
	// leaves it served.
	valid := escapeRule("esc_webhook_valid", `sum(rate(escape_requests_total[1m]))`)
	if out, err := r.kubectlRun("apply", "-f", r.manifest(t, nsA, "webhook-valid", valid)); err != nil {
		t.Fatalf("kubectl apply of a valid rule with the webhook registered: %v\n%s", err, out)
	}
	before := r.waitRule(ctx, t, nsA, "webhook-valid", 90*time.Second, "Ready", ruleState.ready)
	r.markServed(nsA, "external", "esc_webhook_valid")
	out, err := r.kubectlRun("apply", "-f", r.manifest(t, nsA, "webhook-valid", escapeRule("esc_webhook_valid", `sum(rate(escape_requests_total[1m])`)))
	if err == nil || !strings.Contains(out, "spec.externalRules[0].metricsQuery") {
		t.Errorf("kubectl apply of a broken edit: err %v, want a refusal naming spec.externalRules[0].metricsQuery:\n%s", err, out)
	}
	if after, err := r.readRule(ctx, nsA, "webhook-valid"); err != nil || after.generation != before.generation {
		t.Errorf("the refused edit changed the rule: generation %d → %d (%v)", before.generation, after.generation, err)
	}

	// Gantry's webhook failing: the configuration points where nothing
	// listens. failurePolicy Ignore lets the apply through.
	r.registerWebhook(ctx, t, closedLoopbackPort(t))
	var applied string
	waitFor(ctx, t, 30*time.Second, "kubectl apply of the broken rule to succeed with the webhook failing", func() bool {
		out, err := r.kubectlRun("apply", "-f", file)
		applied = out
		return err == nil
	})
	t.Logf("with the webhook failing: %s", strings.TrimSpace(applied))
	s := r.waitRule(ctx, t, nsA, "broken", 90*time.Second, "Accepted=False", ruleState.refused)
	r.checkRefusal(t, s, "Invalid", "spec.rules[0].", []string{"metricsQuery"})
	if !strings.Contains(denial, s.status.Message) {
		t.Errorf("the status message %q is not the webhook's refusal:\n%s", s.status.Message, denial)
	}

	// Removed altogether: the same.
	r.removeWebhook(ctx, t)
	file2 := r.manifest(t, nsA, "broken-2", brokenRule)
	waitFor(ctx, t, 30*time.Second, "kubectl apply of the broken rule to succeed with the webhook removed", func() bool {
		_, err := r.kubectlRun("apply", "-f", file2)
		return err == nil
	})
	s2 := r.waitRule(ctx, t, nsA, "broken-2", 90*time.Second, "Accepted=False", ruleState.refused)
	if s2.status.Message != s.status.Message {
		t.Errorf("the same broken rule, applied with the webhook removed: status message %q, want %q", s2.status.Message, s.status.Message)
	}
}

// testRuleSelfMetrics: gantry_metricrule_ready and _metrics agree with the
// status.
func (r *ruleEnv) testRuleSelfMetrics(t *testing.T) {
	ctx := context.Background()
	x := r.gantryMetrics(ctx, t, r.st.GantryURL)
	web, err := r.readRule(ctx, nsA, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		series     string
		ns, name   string
		want       float64
		whyMessage string
	}{
		{"gantry_metricrule_ready", nsA, "web", 1, "Ready"},
		{"gantry_metricrule_ready", nsB, "broken", 0, "refused"},
		{"gantry_metricrule_ready", nsDenied, "web", 0, "namespace not allowed"},
		{"gantry_metricrule_metrics", nsA, "web", float64(web.status.MetricCount), "status.metricCount"},
	} {
		l := []string{`namespace="` + c.ns + `"`, `name="` + c.name + `"`}
		if got := x.sum(c.series, l...); got != c.want || !x.has(c.series, l...) {
			t.Errorf("%s{namespace=%q,name=%q} = %v (present: %v), want %v (%s)", c.series, c.ns, c.name, got, x.has(c.series, l...), c.want, c.whyMessage)
		}
	}
	if x.sum("gantry_metricrule_apply_to_served_seconds_count") == 0 {
		t.Errorf("gantry_metricrule_apply_to_served_seconds has no observations")
	}
}

// testLatency measures apply → served: from the create's return to the
// first 200 of the metric through the aggregator, for a handful of rules.
// The figures are logged, not asserted.
func (r *ruleEnv) testLatency(t *testing.T) {
	ctx := context.Background()
	const rules = 5
	var took []time.Duration
	for i := range rules {
		metric := fmt.Sprintf("esc_latency_%d", i)
		begin := r.createRule(ctx, t, nsA, fmt.Sprintf("latency-%d", i), escapeRule(metric, `sum(rate(escape_requests_total[1m]))`))
		path := externalPath(nsA, metric, "")
		for {
			res := r.admin.get(ctx, path)
			if res.code == http.StatusOK {
				break
			}
			if time.Since(begin) > time.Minute {
				t.Fatalf("%s not served within a minute of its apply: %d %.300s", metric, res.code, res.message())
			}
			time.Sleep(50 * time.Millisecond)
		}
		took = append(took, time.Since(begin))
		r.markServed(nsA, "external", metric)
	}
	x := r.gantryMetrics(ctx, t, r.st.GantryURL)
	sum, count := x.sum("gantry_metricrule_apply_to_served_seconds_sum"), x.sum("gantry_metricrule_apply_to_served_seconds_count")
	mean := "n/a"
	if count > 0 {
		mean = (time.Duration(sum / count * float64(time.Second))).Round(time.Millisecond).String()
	}
	t.Logf("apply → served over %d rules (create to first 200 through the aggregator): p50 %s, max %s; gantry_metricrule_apply_to_served_seconds: %v observations, mean %s",
		rules, latencyPercentile(took, 50).Round(time.Millisecond), latencyPercentile(took, 100).Round(time.Millisecond), count, mean)
}

// --- helpers ---

type servedMetric struct{ ns, resource, name string }

// markServed records a metric served in a namespace, for the checks that
// no other namespace sees it.
func (r *ruleEnv) markServed(ns, resource, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.served = append(r.served, servedMetric{ns, resource, name})
}

func (r *ruleEnv) servedIn(ns string) []servedMetric {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []servedMetric
	for _, m := range r.served {
		if m.ns == ns {
			out = append(out, m)
		}
	}
	return out
}

func hasMetric(s ruleState, name, resource string) bool {
	for _, m := range s.status.Metrics {
		if m.Name == name && m.Resource == resource {
			return true
		}
	}
	return false
}

func approx(v, want, tolerance float64) bool { return math.Abs(v-want) <= tolerance }

func promAnswer(v float64, err error) string {
	if err != nil {
		return err.Error()
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// has reports whether a series of metric name with every one of labels is
// in the scrape.
func (x exposition) has(name string, labels ...string) bool {
	for series := range x {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if all {
			return true
		}
	}
	return false
}
