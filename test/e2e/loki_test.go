package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	"k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/gantry-dev/gantry/test/loki"
	"github.com/gantry-dev/gantry/test/stack"
)

// lokiRule is an external rule on Loki: error lines per second of the web
// app's streams in the request's namespace.
const lokiRule = `externalRules:
# Log-derived: error lines per second of the web app, from Loki.
- seriesQuery: '{app="web"}'
  backend: logs
  logqlQuery: 'sum(rate({app="web",<<.LabelMatchers>>} |= "error" [1m]))'
  resources:
    namespaced: true
  name: {as: web_errors_per_second}
`

// lokiPodsRule is a Pods rule on Loki: error lines per second of each pod,
// from streams labelled with the pod's namespace and name.
const lokiPodsRule = `rules:
# Log-derived: error lines per second of each pod, from Loki.
- seriesQuery: '{job="e2e-logs",namespace!="",pod!=""}'
  backend: logs
  logqlQuery: 'sum by (<<.GroupBy>>) (rate({job="e2e-logs",<<.LabelMatchers>>} |= "error" [1m]))'
  resources: {template: "<<.Resource>>"}
  name: {as: log_errors_per_second}
`

// lokiTenants maps namespaces to tenants of the multi-tenant Loki.
var lokiTenants = map[string]string{ns: "team-e2e", "elsewhere": "team-elsewhere"}

// TestLoki scales Deployments with real HPAs on an External and a Pods
// metric Gantry computes with LogQL on a real multi-tenant Loki (auth
// enabled, a tenant per namespace), from log lines the test pushes at a
// set rate into each namespace's tenant; then stops Loki: the metric
// answers 503 naming the backend, the HPA stops scaling and says why, and
// both recover when Loki is back.
func TestLoki(t *testing.T) {
	lk := loki.StartT(t, loki.Options{MultiTenant: true})
	rules := strings.Replace(stack.DefaultRules, "externalRules:\n", lokiRule, 1)
	rules = strings.Replace(rules, "rules:\n", lokiPodsRule, 1)
	if strings.Count(rules, "logqlQuery") != 2 {
		t.Fatal("the default rules have no rules or externalRules section to extend")
	}
	rules = fmt.Sprintf("backends:\n- name: logs\n  type: loki\n  url: %s\n  tenant: {byNamespace: {%s: %s, elsewhere: %s}}\n", lk.URL(), ns, lokiTenants[ns], lokiTenants["elsewhere"]) + rules
	e := startEnv(t, stack.Options{Rules: rules}, true)
	ctx := context.Background()

	// 18 error lines per second in the test's namespace; the same app in
	// another namespace and another app in this one log far more errors,
	// which the rule's selector and the namespace must keep out. So must
	// the tenants: the "intruder" stream is labelled as this namespace's
	// web app but goes to the other namespace's tenant.
	pusher := newLogPusher(lk, t.Logf)
	pusher.tenantOf = func(lbls map[string]string) string {
		if lbls["pod"] == "intruder" {
			return lokiTenants["elsewhere"]
		}
		return lokiTenants[lbls["namespace"]]
	}
	pusher.set(map[string]string{"app": "web", "namespace": ns, "pod": "intruder"}, 40)
	pusher.set(map[string]string{"app": "web", "namespace": ns, "pod": "web-0"}, 12)
	pusher.set(map[string]string{"app": "web", "namespace": ns, "pod": "web-1"}, 6)
	pusher.set(map[string]string{"app": "web", "namespace": "elsewhere", "pod": "web-0"}, 40)
	pusher.set(map[string]string{"app": "api", "namespace": ns, "pod": "api-0"}, 40)
	// A minute of history first, so rate(...[1m]) is at its level at once.
	if err := pusher.backfill(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	stopPush := pusher.run()
	t.Cleanup(stopPush)

	name := "log-errors"
	e.deployment(t, name, 1, "")
	// AverageValue 5: desired = ceil(18/5) = 4 (and stays 4 for any total
	// in (15, 20], whatever a line more or less in the window does).
	e.hpa(t, name, 1, 6, autoscalingv2.MetricSpec{
		Type: autoscalingv2.ExternalMetricSourceType,
		External: &autoscalingv2.ExternalMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "web_errors_per_second"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("5")},
		},
	})
	e.waitReplicas(ctx, t, name, 4, "18 error lines/s in Loki against an AverageValue target of 5")
	// The HPA's value is Loki's rate over the last minute: 18, less the
	// lines of the last second or so, not pushed yet. The other
	// namespace's, app's and tenant's 40 lines/s each would show.
	reported := externalValue(e.getHPA(ctx, t, name))
	if q, err := resource.ParseQuantity(reported); err != nil || !lokiRateNear(q.AsApproximateFloat64(), 18) {
		t.Errorf("HPA reports web_errors_per_second %q, want 18 less up to 1.5 (the other namespace's, app's and tenant's lines must be kept out)", reported)
	}

	// A Pods metric from the same Loki: each pod of another Deployment
	// logs 12 error lines per second (with a minute of history from its
	// start), against an AverageValue target of 5 per pod: desired =
	// ceil(12/5 × replicas) until the maximum, 3.
	podsApp := "log-pods"
	e.deployment(t, podsApp, 1, "")
	stopPods := e.feedPods(podsApp, func(pod string) {
		pusher.add(ctx, map[string]string{"job": "e2e-logs", "namespace": ns, "pod": pod}, 12, time.Minute)
	})
	t.Cleanup(stopPods)
	e.hpa(t, podsApp, 1, 3, autoscalingv2.MetricSpec{
		Type: autoscalingv2.PodsMetricSourceType,
		Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "log_errors_per_second"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: qty("5")},
		},
	})
	e.waitReplicas(ctx, t, podsApp, 3, "12 error lines/s per pod in Loki against an AverageValue target of 5")

	admin := e.aggregatorClient(t)
	podsPath := "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + ns + "/pods/*/log_errors_per_second?labelSelector=app%3D" + podsApp
	// The two new pods' lines reach Loki once the pusher has seen them,
	// and their values the API once the value cache has expired.
	var podValues map[string]string
	waitFor(ctx, t, valueCacheTTL+slack, "log_errors_per_second 12 (less up to 1.5) for each of the 3 pods", func() bool {
		r := admin.get(ctx, podsPath)
		if r.code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", podsPath, r.code, r.body)
		}
		var list v1beta2.MetricValueList
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatalf("GET %s: %v", podsPath, err)
		}
		podValues = map[string]string{}
		ok := len(list.Items) == 3
		for _, it := range list.Items {
			podValues[it.DescribedObject.Name] = it.Value.String()
			ok = ok && lokiRateNear(it.Value.AsApproximateFloat64(), 12)
		}
		return ok
	})
	t.Logf("loki: log_errors_per_second per pod: %v", podValues)

	extPath := "/apis/external.metrics.k8s.io/v1beta1/namespaces/" + ns + "/web_errors_per_second"
	if r := admin.get(ctx, extPath); r.code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", extPath, r.code, r.body)
	} else {
		var list v1beta1.ExternalMetricValueList
		if err := json.Unmarshal(r.body, &list); err != nil || len(list.Items) != 1 {
			t.Fatalf("GET %s: %s, want one value", extPath, r.body)
		}
		t.Logf("loki: %s = %s", extPath, list.Items[0].Value.String())
	}

	// Loki down.
	if err := lk.Halt(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	var first503 apiResult
	waitFor(ctx, t, valueCacheTTL+slack, "503 for web_errors_per_second with Loki down", func() bool {
		r := admin.get(ctx, extPath)
		switch r.code {
		case http.StatusOK: // from the value cache, for up to its TTL
			return false
		case http.StatusServiceUnavailable:
			first503 = r
			return true
		default:
			t.Fatalf("with Loki down: %d %s, want 503 (or a cached 200)", r.code, r.body)
			return false
		}
	})
	t.Logf("loki down: first 503 %s after the halt: %s", time.Since(down).Round(10*time.Millisecond), first503.message())
	r := admin.get(ctx, extPath)
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.message(), "logs: unreachable") {
		t.Errorf("GET %s with Loki down: %d %q, want 503 naming the backend (logs) and the reason", extPath, r.code, r.message())
	}
	if strings.Contains(string(r.body), strings.TrimPrefix(lk.URL(), "http://")) {
		t.Errorf("the 503 names Loki's address: %s", r.body)
	}
	if r.took > backendTimeout {
		t.Errorf("GET %s with Loki down took %s, more than the backend timeout %s", extPath, r.took, backendTimeout)
	}
	e.waitHPA(ctx, t, name, "ScalingActive=False while Loki is down", func(h *autoscalingv2.HorizontalPodAutoscaler) bool {
		c := condition(h, autoscalingv2.ScalingActive)
		return c != nil && c.Status == corev1.ConditionFalse
	})
	h := e.getHPA(ctx, t, name)
	t.Logf("loki down: the HPA says: %s", condition(h, autoscalingv2.ScalingActive).Message)
	if h.Status.DesiredReplicas != 4 {
		t.Errorf("with Loki down the HPA wants %d replicas, want it to keep 4", h.Status.DesiredReplicas)
	}

	// While it is down the error rate rises (the lines are lost, as with
	// a log shipper that gives up); once Loki is back the HPA acts on it.
	pusher.set(map[string]string{"app": "web", "namespace": ns, "pod": "web-0"}, 20)
	pusher.set(map[string]string{"app": "web", "namespace": ns, "pod": "web-1"}, 10)
	upCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := lk.Restart(upCtx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	waitFor(ctx, t, valueCacheTTL+slack, "200 for web_errors_per_second after Loki's restart", func() bool {
		return admin.get(ctx, extPath).code == http.StatusOK
	})
	t.Logf("loki back: first 200 %s after the restart", time.Since(up).Round(10*time.Millisecond))
	// 30 lines/s against 5 per replica: 6, the HPA's maximum, once the
	// new rate fills most of the minute-long window.
	e.waitReplicas(ctx, t, name, 6, "30 error lines/s in Loki after its restart, against an AverageValue target of 5")
	if c := condition(e.getHPA(ctx, t, name), autoscalingv2.ScalingActive); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("ScalingActive after Loki's return: %+v, want True", c)
	}
}

// lokiRateNear reports whether a rate read from Loki is want less the
// lines of at most the last second and a half, which the pusher may not
// have sent yet.
func lokiRateNear(got, want float64) bool { return got <= want+0.1 && got >= want-1.5 }

// logPusher pushes log lines into Loki at a set rate per stream, every
// second, timestamped evenly over the second they stand for; half as many
// info lines go with the error lines. Failed pushes (Loki down) lose their
// lines.
type logPusher struct {
	lk   *loki.Server
	logf func(string, ...any)
	// tenantOf, when set, is the tenant a stream is pushed as.
	tenantOf func(lbls map[string]string) string

	mu    sync.Mutex
	rates map[string]float64 // stream key → error lines per second
	lbls  map[string]map[string]string
	last  time.Time // lines were pushed up to here
	carry map[string]float64
}

func newLogPusher(lk *loki.Server, logf func(string, ...any)) *logPusher {
	return &logPusher{lk: lk, logf: logf, rates: map[string]float64{}, lbls: map[string]map[string]string{}, carry: map[string]float64{}}
}

func (p *logPusher) set(lbls map[string]string, errorsPerSecond float64) {
	k := fmt.Sprint(lbls)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rates[k] = errorsPerSecond
	p.lbls[k] = lbls
}

// add starts pushing errorsPerSecond error lines into the stream lbls,
// after pushing the last history of them at once; a stream already pushed
// to is left as it is.
func (p *logPusher) add(ctx context.Context, lbls map[string]string, errorsPerSecond float64, history time.Duration) {
	k := fmt.Sprint(lbls)
	p.mu.Lock()
	_, known := p.rates[k]
	last := p.last
	p.mu.Unlock()
	if known {
		return
	}
	n := int(errorsPerSecond * history.Seconds())
	st := loki.Stream{Labels: lbls}
	for i := range n {
		at := last.Add(-history).Add(time.Duration(float64(history) * (float64(i) + 0.5) / float64(n)))
		st.Entries = append(st.Entries, loki.Entry{Time: at, Line: fmt.Sprintf("level=error msg=\"upstream error\" seq=%d", i)})
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.send(pctx, []loki.Stream{st}); err != nil {
		p.logf("log pusher: history of %v: %v", lbls, err)
		return // tried again on the next call
	}
	p.set(lbls, errorsPerSecond)
}

// backfill pushes the lines of the last d, as if the rates had held.
func (p *logPusher) backfill(ctx context.Context, d time.Duration) error {
	now := time.Now()
	p.mu.Lock()
	p.last = now.Add(-d)
	p.mu.Unlock()
	return p.push(ctx, now)
}

// push sends the lines between the last push and now.
func (p *logPusher) push(ctx context.Context, now time.Time) error {
	p.mu.Lock()
	from := p.last
	p.last = now
	span := now.Sub(from)
	var streams []loki.Stream
	for k, rate := range p.rates {
		// Whole lines only; the fraction carries over to the next push.
		exact := rate*span.Seconds() + p.carry[k]
		n := int(math.Floor(exact))
		p.carry[k] = exact - float64(n)
		st := loki.Stream{Labels: p.lbls[k]}
		for i := range n {
			at := from.Add(time.Duration(float64(span) * (float64(i) + 0.5) / float64(n)))
			st.Entries = append(st.Entries, loki.Entry{Time: at, Line: fmt.Sprintf("level=error msg=\"upstream error\" seq=%d", i)})
			if i%2 == 0 {
				st.Entries = append(st.Entries, loki.Entry{Time: at.Add(time.Microsecond), Line: "level=info msg=\"request served\""})
			}
		}
		if len(st.Entries) > 0 {
			streams = append(streams, st)
		}
	}
	p.mu.Unlock()
	if len(streams) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.send(ctx, streams)
}

// send pushes streams, each as its tenant's when tenantOf is set.
func (p *logPusher) send(ctx context.Context, streams []loki.Stream) error {
	if p.tenantOf == nil {
		return p.lk.Push(ctx, streams)
	}
	byTenant := map[string][]loki.Stream{}
	for _, st := range streams {
		tenant := p.tenantOf(st.Labels)
		byTenant[tenant] = append(byTenant[tenant], st)
	}
	var errs []error
	for tenant, sts := range byTenant {
		errs = append(errs, p.lk.PushTenant(ctx, tenant, sts))
	}
	return errors.Join(errs...)
}

// run pushes every second until the returned stop is called.
func (p *logPusher) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if err := p.push(ctx, now); err != nil && ctx.Err() == nil {
					p.logf("log pusher: %v", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
