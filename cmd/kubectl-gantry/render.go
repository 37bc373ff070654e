package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
)

// printServed prints an object as the server served it, for -o json|yaml.
func (o *options) printServed(body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return failed(fmt.Errorf("decoding the server's answer: %w", err))
	}
	return o.print(v)
}

// print writes v as -o asks: indented JSON or YAML.
func (o *options) print(v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return failed(err)
	}
	if o.output == "yaml" {
		if out, err = yaml.JSONToYAML(out); err != nil {
			return failed(err)
		}
	} else {
		out = append(out, '\n')
	}
	if _, err := o.stdout.Write(out); err != nil {
		return failed(err)
	}
	return nil
}

// renderer writes explanations for people: per metric a compact block of
// labelled steps, then one diagnosis line and a hint. The first write error
// is kept in err.
type renderer struct {
	w   io.Writer
	now time.Time
	err error
}

// stepWidth aligns the step labels of a metric block.
const stepWidth = 11

func (r *renderer) printf(format string, args ...any) {
	if r.err != nil {
		return
	}
	_, r.err = fmt.Fprintf(r.w, format, args...)
}

// step writes one labelled line of a metric block; more lines continue under it.
func (r *renderer) step(label, format string, args ...any) {
	r.printf("  %-*s %s\n", stepWidth-1, label, fmt.Sprintf(format, args...))
}

// more continues a step on the next line.
func (r *renderer) more(format string, args ...any) {
	r.printf("  %-*s %s\n", stepWidth-1, "", fmt.Sprintf(format, args...))
}

func (r *renderer) hpaExplanation(e *v1alpha1.HPAExplanation) {
	h := e.HPA
	r.printf("HPA %s/%s → %s %s (replicas %d..%d)\n", e.Namespace, e.Name, h.ScaleTargetRef.Kind, h.ScaleTargetRef.Name, h.MinReplicas, h.MaxReplicas)
	switch {
	case h.Selector != "":
		r.printf("  pods       %s\n", h.Selector)
	case h.SelectorError != "":
		r.printf("  pods       selector unreadable: %s\n", h.SelectorError)
	}
	status := fmt.Sprintf("%d current, %d desired", h.CurrentReplicas, h.DesiredReplicas)
	if h.LastScaleTime != nil {
		status += ", last scaled " + r.ago(h.LastScaleTime.Time)
	}
	r.printf("  status     %s\n", status)
	for _, c := range h.Conditions {
		r.printf("  %-10s %s\n", "", hpaCondition(c))
	}
	for i := range e.Metrics {
		r.printf("\n")
		r.printf("Metric %d/%d: %s\n", i+1, len(e.Metrics), requestTitle(e.Metrics[i].Request))
		r.explanationSteps(&e.Metrics[i])
	}
	r.printf("\n")
	if rc := e.Replicas; rc != nil {
		line := fmt.Sprintf("largest proposal %d, within %d..%d → %d; the HPA's status wants %d", rc.Proposed, h.MinReplicas, h.MaxReplicas, rc.Bounded, rc.HPADesired)
		r.printf("Replicas: %s\n", line)
		if rc.Note != "" {
			r.printf("          %s\n", rc.Note)
		}
	} else if len(e.Metrics) > 0 {
		r.printf("Replicas: no metric yields a proposal; the HPA's status wants %d\n", h.DesiredReplicas)
	}
	r.diagnosis(e.Diagnosis)
}

func (r *renderer) metricExplanation(e *v1alpha1.MetricExplanation) {
	r.printf("Metric %s\n", requestTitle(e.Request))
	r.explanationSteps(&e.Explanation)
	r.printf("\n")
	r.diagnosis(e.Diagnosis)
}

func (r *renderer) diagnosis(d v1alpha1.Diagnosis) {
	r.printf("Diagnosis: %s: %s\n", d.Status, d.Reason)
	if d.Hint != "" {
		r.printf("Hint: %s\n", d.Hint)
	}
}

// requestTitle names a metric request in one line:
// "Pods http_requests_per_second", "Object deployments.apps/web hits",
// "External queue_depth{queue=orders}".
func requestTitle(q v1alpha1.MetricRequest) string {
	var b strings.Builder
	b.WriteString(q.Type)
	b.WriteString(" ")
	switch q.Type {
	case v1alpha1.MetricTypeObject:
		if q.Resource != "" || q.Object != "" {
			b.WriteString(q.Resource + "/" + q.Object + " ")
		}
	}
	b.WriteString(q.Metric)
	if q.Container != "" {
		b.WriteString(" (container " + q.Container + ")")
	}
	if q.MetricSelector != "" {
		b.WriteString("{" + q.MetricSelector + "}")
	}
	if q.Namespace != "" {
		b.WriteString(" in namespace " + q.Namespace)
	}
	return b.String()
}

// explanationSteps writes the steps of one metric, in the order a request
// takes them; steps the server left out (after the first that failed) are
// skipped.
func (r *renderer) explanationSteps(e *v1alpha1.Explanation) {
	r.apiStep(e.API)
	if e.Request.Path != "" {
		r.more("GET %s", e.Request.Path)
	}
	if e.Rule != nil {
		r.ruleStep(e.Rule)
	} else if e.Discovery != nil {
		// Gantry went on past the rule step without one: none matched.
		r.step("rule", "none answers this metric")
	}
	if d := e.Discovery; d != nil {
		r.discoveryStep(d)
	}
	if q := e.Query; q != nil {
		form := q.Language
		if q.Form != "" {
			form += ", " + q.Form
		}
		r.step("query", "%s (%s): %s", q.Backend, form, q.Text)
	}
	if res := e.Result; res != nil {
		r.resultStep(res)
	}
	if obj := e.Objects; obj != nil {
		r.objectsStep(obj, e.Request)
	}
	if c := e.Cache; c != nil {
		r.cacheStep(c)
	}
	if v := e.Value; v != nil {
		r.valueStep(v, e.Request)
	}
	if h := e.HPA; h != nil {
		r.hpaStep(h)
	}
	r.step(string(e.Diagnosis.Status), "%s", e.Diagnosis.Reason)
	if e.Diagnosis.Hint != "" {
		r.more("hint: %s", e.Diagnosis.Hint)
	}
}

func (r *renderer) apiStep(a v1alpha1.APIInfo) {
	gv := a.Group + "/" + a.Version
	if a.Group == "" {
		gv = a.Version
	}
	var state string
	switch {
	case a.Error != "":
		state = "APIService " + a.APIService + " unreadable: " + a.Error
	case !a.Found:
		state = "APIService " + a.APIService + " not registered"
	case a.Available:
		state = "APIService " + a.APIService + " Available"
	default:
		cond := strings.Trim(a.Reason+": "+a.Message, ": ")
		if cond == "" {
			cond = "no Available condition"
		}
		state = "APIService " + a.APIService + " NOT Available (" + cond + ")"
	}
	if a.Found && a.Error == "" {
		switch {
		case a.ServedByGantry && a.Service != "":
			state += ", served by Gantry (" + a.Service + ")"
		case a.ServedByGantry:
			state += ", served by Gantry"
		case a.Service != "":
			state += ", served by " + a.Service + " (" + adapterName(a.Service) + "), NOT Gantry"
		default:
			state += ", served by the kube-apiserver itself, NOT Gantry"
		}
	}
	r.step("api", "%s via %s", gv, state)
}

func (r *renderer) ruleStep(ru *v1alpha1.RuleInfo) {
	where := ru.Origin
	switch ru.Origin {
	case v1alpha1.RuleOriginConfig:
		where = "config file"
		if ru.ConfigFile != "" {
			where += " " + ru.ConfigFile
		}
	case v1alpha1.RuleOriginMetricRule:
		where = "MetricRule"
		if ru.MetricRule != "" {
			where += " " + ru.MetricRule
		}
	}
	line := fmt.Sprintf("%s in %s, backend %s", ru.ID, where, ru.Backend)
	if ru.Window != nil {
		line += ", window " + compactDuration(ru.Window.Duration)
	}
	r.step("rule", "%s", line)
	var maps []string
	if ru.ResourceLabel != "" {
		maps = append(maps, fmt.Sprintf("object ← label %q", ru.ResourceLabel))
	}
	if ru.NamespaceLabel != "" {
		maps = append(maps, fmt.Sprintf("namespace ← label %q", ru.NamespaceLabel))
	}
	if len(maps) > 0 {
		r.more("maps %s", strings.Join(maps, ", "))
	}
	if ru.SeriesQuery != "" {
		series := ""
		if ru.Series != "" {
			series = " (series " + ru.Series + ")"
		}
		r.more("seriesQuery %s%s", ru.SeriesQuery, series)
	}
	if len(ru.Conflicts) > 0 {
		r.more("also yielded by %s (the rule above answers)", strings.Join(ru.Conflicts, "; "))
	}
}

func (r *renderer) discoveryStep(d *v1alpha1.DiscoveryInfo) {
	listed := "listed"
	if !d.Listed {
		listed = "NOT listed"
	}
	when := "no relist has succeeded yet"
	if d.LastSuccess != nil {
		when = "last relist " + r.ago(d.LastSuccess.Time)
	}
	if d.Interval != nil {
		when += " (every " + compactDuration(d.Interval.Duration) + ")"
	}
	r.step("discovery", "%s; %s", listed, when)
	if len(d.Similar) > 0 {
		r.more("discovered instead: %s", strings.Join(d.Similar, ", "))
	}
}

// maxSampleLines bounds the series shown per result.
const maxSampleLines = 5

func (r *renderer) resultStep(res *v1alpha1.QueryResult) {
	if res.Error != "" {
		what := "backend error"
		if res.BadQuery {
			what = "backend rejected the query"
		}
		r.step("backend", "%s: %s", what, res.Error)
		return
	}
	line := fmt.Sprintf("%s in %dms", plural(res.Series, "series", "series"), res.DurationMilliseconds)
	if res.Dropped > 0 {
		line += fmt.Sprintf(", %s dropped (NaN or infinite)", plural(res.Dropped, "sample", "samples"))
	}
	r.step("backend", "%s", line)
	for i, s := range res.Samples {
		if i == maxSampleLines {
			break
		}
		r.more("  %s = %s (age %s)", labelSet(s.Labels), s.Value, shortDuration(s.Age.Duration))
	}
	if shown := min(len(res.Samples), maxSampleLines); res.Series > shown {
		r.more("  ... %d more", res.Series-shown)
	}
}

// maxObjectLines bounds the objects shown; those without a value come first.
const maxObjectLines = 8

func (r *renderer) objectsStep(o *v1alpha1.ObjectsInfo, q v1alpha1.MetricRequest) {
	what := "objects"
	if q.Type == v1alpha1.MetricTypePods || q.Resource == "pods" {
		what = "pods"
	}
	line := fmt.Sprintf("%d of %d %s with a value", o.WithValue, o.Matched, what)
	if o.Selector != "" {
		line += " (selector " + o.Selector + ")"
	}
	if o.Matched == 0 {
		line = "no " + what + " match"
		if o.Selector != "" {
			line += " the selector " + o.Selector
		}
	}
	r.step("objects", "%s", line)
	shown := 0
	for _, it := range o.Items {
		if shown == maxObjectLines {
			break
		}
		// With many objects, list only those without a value.
		if it.Reason == "" && o.Matched > maxObjectLines {
			continue
		}
		shown++
		if it.Reason == "" {
			age := ""
			if it.Age != nil {
				age = " (age " + shortDuration(it.Age.Duration) + ")"
			}
			r.more("  %s = %s%s", it.Name, it.Value, age)
			continue
		}
		msg := it.Message
		if msg == "" {
			msg = it.Reason
		} else {
			msg = it.Reason + ": " + msg
		}
		r.more("  %s: no value: %s", it.Name, msg)
	}
	if rest := o.Omitted + len(o.Items) - shown; rest > 0 {
		r.more("  ... %d more", rest)
	}
}

func (r *renderer) cacheStep(c *v1alpha1.CacheInfo) {
	if !c.Enabled {
		r.step("cache", "off (--value-cache-ttl 0): every HPA request queries the backend")
		return
	}
	ttl := ""
	if c.TTL != nil {
		ttl = " (TTL " + compactDuration(c.TTL.Duration) + ")"
	}
	if c.Hit {
		age := ""
		if c.Age != nil {
			age = ", " + shortDuration(c.Age.Duration) + " old"
		}
		r.step("cache", "hit%s%s: the HPA gets the cached value", age, ttl)
		return
	}
	r.step("cache", "miss%s: the HPA's next request queries the backend", ttl)
}

func (r *renderer) valueStep(v *v1alpha1.ServedValue, q v1alpha1.MetricRequest) {
	if !v.Found {
		msg := v.Error
		if msg == "" {
			msg = "no value"
		}
		r.step("value", "NOT served: %s", msg)
		return
	}
	how := ""
	switch q.Type {
	case v1alpha1.MetricTypePods:
		how = fmt.Sprintf(" (average over %s)", plural(v.Count, "pod", "pods"))
	case v1alpha1.MetricTypeExternal:
		how = fmt.Sprintf(" (sum over %s)", plural(v.Count, "series", "series"))
	}
	ts := ""
	if v.Timestamp != nil {
		ts = ", sampled " + r.ago(v.Timestamp.Time)
	}
	r.step("value", "%s%s%s", v.Value, how, ts)
}

func (r *renderer) hpaStep(h *v1alpha1.HPAComputation) {
	current := h.Current
	if current == "" {
		current = "none"
	}
	line := fmt.Sprintf("%s: current %s vs target %s", h.TargetType, current, h.Target)
	if h.Ratio != nil {
		line += fmt.Sprintf(", ratio %s", strconv.FormatFloat(*h.Ratio, 'f', 2, 64))
		if h.WithinTolerance {
			line += fmt.Sprintf(" (within tolerance %s: no change)", strconv.FormatFloat(h.Tolerance, 'f', -1, 64))
		} else {
			line += fmt.Sprintf(" (tolerance %s)", strconv.FormatFloat(h.Tolerance, 'f', -1, 64))
		}
	}
	r.step("hpa", "%s", line)
	from := fmt.Sprintf("from %d current", h.CurrentReplicas)
	if h.ReadyPods > 0 {
		from += fmt.Sprintf(", %d ready pods", h.ReadyPods)
	}
	if h.Replicas != nil {
		r.more("→ %d replicas (%s)", *h.Replicas, from)
	} else {
		r.more("→ no proposal (%s)", from)
	}
	hpaSays := "the HPA's status reports no current value"
	if h.HPACurrent != "" {
		hpaSays = "the HPA's status reports current " + h.HPACurrent
	}
	r.more("%s", hpaSays)
	if h.Note != "" {
		r.more("%s", h.Note)
	}
}

func hpaCondition(c autoscalingv2.HorizontalPodAutoscalerCondition) string {
	s := fmt.Sprintf("%s=%s", c.Type, c.Status)
	if c.Reason != "" {
		s += " " + c.Reason
	}
	if c.Message != "" {
		s += ": " + c.Message
	}
	return s
}

// ago says how long before the renderer's now t was.
func (r *renderer) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := r.now.Sub(t)
	if d < 0 {
		return "just now"
	}
	return duration.HumanDuration(d) + " ago"
}

// compactDuration is a configured duration as one writes it: 1m, 90s, 1h30m.
func compactDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func shortDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return duration.HumanDuration(d)
}

func labelSet(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// adapterName guesses which adapter a service (namespace/name) belongs
// to, from the names the common ones install with.
func adapterName(service string) string {
	s := strings.ToLower(service)
	switch {
	case strings.Contains(s, "metrics-server"):
		return "metrics-server"
	case strings.Contains(s, "keda"):
		return "KEDA"
	case strings.Contains(s, "prometheus-adapter"):
		return "prometheus-adapter"
	case strings.Contains(s, "datadog"):
		return "Datadog Cluster Agent"
	case strings.Contains(s, "kube-metrics-adapter"):
		return "kube-metrics-adapter"
	}
	return "another adapter"
}

// report writes doctor's report: a table of the cluster checks, one of the
// HPAs' metrics, each problem followed by its hint, then the counts.
func (r *renderer) report(rep *report) {
	r.printf("Gantry\n")
	rows := make([][]string, 0, len(rep.Cluster))
	hints := make([]string, 0, len(rep.Cluster))
	for _, c := range rep.Cluster {
		rows = append(rows, []string{string(c.Status), c.Check + " " + c.Subject, c.Reason})
		hints = append(hints, hintFor(c.Status, c.Hint))
	}
	r.table(rows, hints)

	r.printf("\n")
	if rep.AllNamespaces {
		r.printf("HPAs in all namespaces\n")
	} else {
		r.printf("HPAs in namespace %s\n", rep.Namespace)
	}
	if len(rep.HPAs) == 0 {
		r.printf("  none\n")
	}
	rows, hints = rows[:0], hints[:0]
	for _, h := range rep.HPAs {
		subject := h.Namespace + "/" + h.HPA
		if h.HPA == "" {
			subject = "namespace " + orDefault(h.Namespace, "(all)")
		}
		if h.Metric != "" {
			subject += " " + h.Metric
		}
		rows = append(rows, []string{string(h.Status), subject, h.Reason})
		hints = append(hints, hintFor(h.Status, h.Hint))
	}
	r.table(rows, hints)
	r.printf("\n%d OK, %d WARN, %d FAIL\n", rep.Counts.OK, rep.Counts.Warn, rep.Counts.Fail)
}

// hintFor shows a hint only beside a problem.
func hintFor(s v1alpha1.DiagnosisStatus, hint string) string {
	if s == v1alpha1.StatusOK {
		return ""
	}
	return hint
}

// table writes rows of three columns, the first two padded, each row
// followed by its hint (if any) on a line of its own.
func (r *renderer) table(rows [][]string, hints []string) {
	w0, w1 := len("FAIL"), 0
	for _, row := range rows {
		w0 = max(w0, len(row[0]))
		w1 = max(w1, len([]rune(row[1])))
	}
	for i, row := range rows {
		pad := w1 - len([]rune(row[1]))
		r.printf("  %-*s  %s%s  %s\n", w0, row[0], row[1], strings.Repeat(" ", pad), row[2])
		if hints[i] != "" {
			r.printf("  %-*s  hint: %s\n", w0, "", hints[i])
		}
	}
}
