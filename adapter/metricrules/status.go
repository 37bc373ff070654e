package metricrules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// status is the status a resource should have now, and whether it must
// be written: only when it differs from the object's, apart from
// lastDiscoveryTime, which alone is written once it is StatusRefresh old.
// An accepted resource whose current generation has not been discovered
// yet is left as it is until it has (a relist starts at once).
func (c *Controller) status(mr *MetricRule, refusal *Refusal, s *served, nsServed []*served) (Status, bool) {
	gen := mr.Generation
	want := Status{ObservedGeneration: gen}
	var lastRelist time.Time
	if refusal != nil {
		want.Message = refusal.Message()
		want.Conditions = []metav1.Condition{
			{Type: ConditionAccepted, Status: metav1.ConditionFalse, Reason: refusal.Reason, Message: refusal.Full()},
			{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonNotAccepted, Message: "not served: " + refusal.Message()},
		}
		c.metrics.set(mr, false, 0)
	} else {
		s.mu.Lock()
		relisted := s.relistedGeneration == gen
		lastErr := s.lastErr
		lastRelist = s.lastRelist
		objects := make(map[metricKey]int32, len(s.objects))
		for k, v := range s.objects {
			objects[k] = v
		}
		s.mu.Unlock()
		if !relisted {
			return Status{}, false
		}
		var conflicts []string
		for _, m := range servedMetrics(s.registry) {
			if by := c.conflict(m, s, nsServed); by != "" {
				what := "external metric"
				if m.custom != nil {
					what = "metric on " + m.key.resource
				}
				conflicts = append(conflicts, fmt.Sprintf("%s %q is served by %s, which wins", what, m.key.name, by))
				continue
			}
			want.Metrics = append(want.Metrics, MetricStatus{Name: m.key.name, Resource: m.key.resource, Objects: objects[m.key]})
		}
		want.MetricCount = int32(len(want.Metrics))
		want.Conditions = []metav1.Condition{{
			Type: ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonCompiled,
			Message: fmt.Sprintf("compiled and confined to namespace %q", mr.Namespace),
		}}
		ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse}
		switch {
		case lastErr != nil:
			ready.Reason = ReasonDiscoveryFailed
			ready.Message = discoveryMessage(lastErr)
		case len(conflicts) > 0:
			ready.Reason = ReasonNameConflict
			ready.Message = strings.Join(conflicts, "; ")
		case len(want.Metrics) == 0:
			ready.Reason = ReasonNoSeries
			ready.Message = fmt.Sprintf("spec: no series of namespace %q matched any rule's seriesQuery (and filters) at the last discovery", mr.Namespace)
		default:
			ready.Status = metav1.ConditionTrue
			ready.Reason = ReasonDiscovered
			ready.Message = fmt.Sprintf("serving %d metrics in namespace %q", len(want.Metrics), mr.Namespace)
		}
		want.Conditions = append(want.Conditions, ready)
		if ready.Status != metav1.ConditionTrue {
			want.Message = firstProblem(ready.Message)
		}
		c.metrics.set(mr, ready.Status == metav1.ConditionTrue, len(want.Metrics))
	}
	want.Message = truncate(want.Message, maxMessage)
	for i := range want.Conditions {
		want.Conditions[i].Message = truncate(want.Conditions[i].Message, maxConditionMessage)
	}
	now := metav1.NewTime(c.opts.Clock.Now().Truncate(time.Second))
	for i := range want.Conditions {
		w := &want.Conditions[i]
		w.ObservedGeneration = gen
		w.LastTransitionTime = now
		if old := findCondition(mr.Status.Conditions, w.Type); old != nil && old.Status == w.Status {
			w.LastTransitionTime = old.LastTransitionTime
		}
	}
	if refusal == nil {
		want.LastDiscoveryTime = mr.Status.LastDiscoveryTime
	}
	same := sameStatus(want, mr.Status)
	if refusal == nil && !lastRelist.IsZero() {
		old := mr.Status.LastDiscoveryTime
		if !same || old == nil || lastRelist.Sub(old.Time) >= c.opts.StatusRefresh {
			t := metav1.NewTime(lastRelist.Truncate(time.Second))
			want.LastDiscoveryTime = &t
			same = sameStatus(want, mr.Status)
		}
	}
	return want, !same
}

// conflict names what serves metric m before s does: a cluster config
// rule, or a MetricRule of the namespace created before s; "" when
// nothing does.
func (c *Controller) conflict(m metricRef, s *served, nsServed []*served) string {
	if c.opts.Cluster != nil {
		if m.custom != nil {
			if e, ok := c.opts.Cluster.LookupCustom(*m.custom); ok {
				return "the cluster config's " + e.Rule.ID
			}
		} else if e, ok := c.opts.Cluster.LookupExternal(m.key.name); ok {
			return "the cluster config's " + e.Rule.ID
		}
	}
	for _, other := range nsServed {
		if other == s {
			break
		}
		var ok bool
		if m.custom != nil {
			_, ok = other.registry.LookupCustom(*m.custom)
		} else {
			_, ok = other.registry.LookupExternal(m.key.name)
		}
		if ok {
			return fmt.Sprintf("MetricRule %s (created earlier)", other.String())
		}
	}
	return ""
}

// sectionOf finds the rule section in a rule ID.
var sectionOf = regexp.MustCompile(`spec\.(?:rules|externalRules)\[[0-9]+\]`)

// discoveryMessage says which rules' series queries failed and why:
// "spec.rules[0].seriesQuery: discovery failed: ...".
func discoveryMessage(err error) string {
	var parts []string
	for _, e := range flatten(err) {
		cause := errors.Unwrap(e)
		if cause == nil {
			cause = e
		}
		section := sectionOf.FindString(e.Error())
		if section == "" {
			section = "spec"
		}
		parts = append(parts, fmt.Sprintf("%s.seriesQuery: discovery failed: %v", section, cause))
	}
	return strings.Join(parts, "; ")
}

// The longest messages written: status.message is a printer column, and
// the CRD bounds a condition's message at 32768 bytes.
const (
	maxMessage          = 1024
	maxConditionMessage = 16 << 10
)

// truncate shortens s to at most n bytes, on a UTF-8 boundary, and says
// that it did.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = " …"
	i := n - len(more)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + more
}

// firstProblem is the first of the problems a message joins.
func firstProblem(msg string) string {
	first, _, _ := strings.Cut(msg, "; ")
	return first
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// sameStatus compares two statuses as the API stores them.
func sameStatus(a, b Status) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// writeStatus writes st to the status subresource of the object the
// cache holds. A conflict (the object changed) is retried by the queue.
func (c *Controller) writeStatus(ctx context.Context, mr *MetricRule, st Status) error {
	obj, exists, err := c.rules.GetStore().GetByKey(mr.Namespace + "/" + mr.Name)
	if err != nil || !exists {
		return err
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetUID() != mr.UID {
		return nil
	}
	rendered, err := statusToUnstructured(st)
	if err != nil {
		return fmt.Errorf("MetricRule %s: rendering status: %w", mr, err)
	}
	u = u.DeepCopy()
	u.Object["status"] = rendered
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = c.opts.Client.Resource(GVR).Namespace(mr.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("MetricRule %s: writing status: %w", mr, err)
	}
	c.metrics.statusWrites.Inc()
	return nil
}

// controllerMetrics are Gantry's metrics about MetricRules.
type controllerMetrics struct {
	ready         *prometheus.GaugeVec
	served        *prometheus.GaugeVec
	applyToServed prometheus.Histogram
	statusWrites  prometheus.Counter
}

func newControllerMetrics(reg prometheus.Registerer) controllerMetrics {
	m := controllerMetrics{
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_metricrule_ready",
			Help: "1 when the MetricRule's Ready condition is True, else 0.",
		}, []string{"namespace", "name"}),
		served: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_metricrule_metrics",
			Help: "Metrics the MetricRule serves now.",
		}, []string{"namespace", "name"}),
		applyToServed: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gantry_metricrule_apply_to_served_seconds",
			Help:    "Time from Gantry seeing a new generation of a MetricRule to its metrics being served.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120},
		}),
		statusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_metricrule_status_writes_total",
			Help: "Status updates written to MetricRules.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.ready, m.served, m.applyToServed, m.statusWrites)
	}
	return m
}

func (m controllerMetrics) set(mr *MetricRule, ready bool, metrics int) {
	v := 0.0
	if ready {
		v = 1
	}
	m.ready.WithLabelValues(mr.Namespace, mr.Name).Set(v)
	m.served.WithLabelValues(mr.Namespace, mr.Name).Set(float64(metrics))
}

// forget drops the series of a resource that no longer exists.
func (m controllerMetrics) forget(namespace, name string) {
	m.ready.DeleteLabelValues(namespace, name)
	m.served.DeleteLabelValues(namespace, name)
}
