// Package explain computes Gantry's explanations: for a metrics request (or
// each metric of an HPA), the whole path from the API to the backend and
// back — the APIService, the rule and where it lives, discovery, the query
// with the request's values, what the backend returned, each object's value
// or why it has none, the value cache, the value served, and what the HPA
// controller computes from it — ending in one line of diagnosis.
//
// It reads Gantry's internals (adapter/provider's plans, adapter/discovery,
// the backends) and runs the query afresh through adapter/explain/probe,
// the path check-config takes too. It never writes to the provider's value
// cache: it only peeks at it. adapter/diagnostics.go serves the result as
// diagnostics.gantry.dev/v1alpha1.
package explain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	promlabels "github.com/prometheus/prometheus/model/labels"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/enforce"
	"github.com/gantry-dev/gantry/adapter/explain/probe"
	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// Provider is what an explanation reads of the metrics provider.
type Provider interface {
	ExplainCustom(requestNamespace string, names []string, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) provider.Plan
	ExplainExternal(namespace, metric string, metricSelector labels.Selector) provider.Plan
	PeekValueCache(provider.Plan) provider.CacheState
	RuleQuerier(*rules.Rule) (provider.Querier, bool)
	Now() time.Time
	Timeout() time.Duration
}

// Discovery is what an explanation reads of discovery.
type Discovery interface {
	CustomMetrics() []cmprovider.CustomMetricInfo
	ExternalMetrics() []cmprovider.ExternalMetricInfo
	LastSuccess() time.Time
	Interval() time.Duration
	// Rules are the config's custom and external rules in use.
	Rules() (custom, external []*rules.Rule)
}

var (
	_ Provider  = (*provider.MetricsProvider)(nil)
	_ Discovery = (*discovery.Registry)(nil)
)

// Options configure an Explainer.
type Options struct {
	Provider  Provider
	Discovery Discovery
	// Listers list the rules' series, by source, to find why an object
	// has no value.
	Listers map[string]discovery.SeriesLister
	// Objects resolves label selectors to object names, from the shared
	// object cache the provider uses.
	Objects provider.ObjectLister
	Mapper  apimeta.RESTMapper
	Cluster Cluster
	// ConfigFile names the config file, for the rule's origin.
	ConfigFile string
	// Lookback is how far back an instant query sees a sample (Prometheus'
	// --query.lookback-delta); default 5m.
	Lookback time.Duration
	// History is how far back the series of objects without a value are
	// looked for, to tell stale data from none; default 1h.
	History time.Duration
	// APIServiceTTL is how long an APIService read from Cluster serves
	// explanations; default DefaultAPIServiceTTL.
	APIServiceTTL time.Duration
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
}

// Explainer computes explanations.
type Explainer struct {
	opts        Options
	apiServices *apiServiceCache
}

// New returns an Explainer.
func New(opts Options) *Explainer {
	if opts.Lookback <= 0 {
		opts.Lookback = 5 * time.Minute
	}
	if opts.History <= 0 {
		opts.History = time.Hour
	}
	if opts.APIServiceTTL <= 0 {
		opts.APIServiceTTL = DefaultAPIServiceTTL
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Explainer{opts: opts, apiServices: newAPIServiceCache(opts.APIServiceTTL, opts.Clock)}
}

// Limits of what an explanation lists.
const (
	// MaxSamples is how many series of a result are shown.
	MaxSamples = 5
	// MaxObjects is how many objects are listed.
	MaxObjects = 50
)

// Ask is a metrics request to explain.
type Ask struct {
	// Type is v1alpha1.MetricTypePods, MetricTypeObject or MetricTypeExternal.
	Type      string
	Metric    string
	Namespace string
	// Resource is the objects' group-resource (Pods: pods; Object: the
	// object's).
	Resource schema.GroupResource
	// Object names the object (Object).
	Object string
	// Selector selects the pods (Pods).
	Selector       labels.Selector
	MetricSelector labels.Selector
}

// outcome is what the HPA computation needs of an explained metric.
type outcome struct {
	// podValues are the milli-values by object (Pods, Object).
	values map[string]int64
	// total is the value served in milli-units (Object: the object's;
	// External: the sum), valid when found.
	total int64
	found bool
}

// Metric explains one raw metrics request.
func (e *Explainer) Metric(ctx context.Context, ask Ask) *v1alpha1.MetricExplanation {
	ex, _ := e.explain(ctx, ask)
	out := &v1alpha1.MetricExplanation{Explanation: ex}
	out.Kind, out.APIVersion = v1alpha1.KindMetricExplanation, v1alpha1.SchemeGroupVersion.String()
	out.Name, out.Namespace = ask.Metric, ask.Namespace
	return out
}

// explain runs the request's path, stopping at the first step that fails.
// An APIService that is not Available fails the metric whatever Gantry
// answers: the HPA controller's request goes through it and gets nothing.
func (e *Explainer) explain(ctx context.Context, ask Ask) (v1alpha1.Explanation, outcome) {
	ex, out := e.explainPath(ctx, ask)
	if d, down := apiDown(ex.API); down {
		if ex.Diagnosis.Status == v1alpha1.StatusFail {
			d.Hint += "; then: " + ex.Diagnosis.Reason
		} else if ex.Value != nil && ex.Value.Found {
			d.Hint += fmt.Sprintf("; Gantry itself serves %s, which the HPA controller cannot get", ex.Value.Value)
		}
		ex.Diagnosis = d
	}
	return ex, out
}

// apiDown is the diagnosis of an APIService that exists but is not
// Available (one that could not be read is not judged).
func apiDown(api v1alpha1.APIInfo) (v1alpha1.Diagnosis, bool) {
	if api.Error != "" || !api.Found || api.Available {
		return v1alpha1.Diagnosis{}, false
	}
	reason := api.Reason
	if reason == "" {
		reason = "no reason given"
	}
	msg := fmt.Sprintf("APIService %s is not Available (%s)", api.APIService, reason)
	if api.Message != "" {
		msg += ": " + strings.Join(strings.Fields(api.Message), " ")
	}
	hint := "the kube-apiserver cannot reach the service behind it: check its endpoints and Gantry's pods"
	if api.Service != "" {
		hint = fmt.Sprintf("the kube-apiserver cannot reach the service behind it (%s): check its endpoints and Gantry's pods", api.Service)
	}
	return fail(msg, hint), true
}

// explainPath runs the request's path from the rule on.
func (e *Explainer) explainPath(ctx context.Context, ask Ask) (v1alpha1.Explanation, outcome) {
	var out outcome
	ex := v1alpha1.Explanation{Request: request(ask)}
	ex.API = e.api(ctx, ask.Type)
	if ask.Type == v1alpha1.MetricTypeExternal {
		return e.explainExternal(ctx, ask, ex)
	}

	// The objects asked about.
	var names []string
	if ask.Type == v1alpha1.MetricTypePods {
		listed, err := e.opts.Objects.Names(ctx, ask.Resource, ask.Namespace, ask.Selector)
		if err != nil {
			ex.Diagnosis = fail(fmt.Sprintf("listing pods matching %q: %v", ask.Selector.String(), err), "")
			return ex, out
		}
		names = listed
		ex.Objects = &v1alpha1.ObjectsInfo{Selector: ask.Selector.String(), Matched: len(names)}
		if len(names) == 0 {
			ex.Diagnosis = fail(fmt.Sprintf("the selector %q matches no pods in namespace %q", ask.Selector.String(), ask.Namespace),
				"check the scale target's selector and that its pods exist; the HPA has nothing to average")
			return ex, out
		}
	} else {
		names = []string{ask.Object}
		ex.Objects = &v1alpha1.ObjectsInfo{Matched: 1}
	}

	plan := e.opts.Provider.ExplainCustom(ask.Namespace, names, cmprovider.CustomMetricInfo{GroupResource: ask.Resource, Namespaced: ask.Namespace != "", Metric: ask.Metric}, ask.MetricSelector)
	ex.Discovery = e.discoveryInfo(plan.Found)
	if !plan.Found {
		ex.Discovery.Similar = e.similar(ask.Metric, ask.Resource)
		if (plan.Err == nil || apierrors.IsNotFound(plan.Err)) && e.explainUnlisted(ctx, ask, &ex, plan, names) {
			return ex, out
		}
		ex.Diagnosis = e.notListed(ask, ex.Discovery.Similar, plan.Err)
		return ex, out
	}
	ex.Rule = e.ruleInfo(plan.Entry, ask.Resource)
	if plan.Err != nil {
		ex.Value = &v1alpha1.ServedValue{Error: plan.Err.Error()}
		ex.Diagnosis = fail(plan.Err.Error(), "")
		return ex, out
	}
	if ask.Type == v1alpha1.MetricTypeObject && !e.exists(ctx, ask, plan) {
		ex.Objects.Items = []v1alpha1.ObjectValue{{Name: ask.Object, Reason: v1alpha1.NoValueNotFound,
			Message: fmt.Sprintf("%s %q does not exist in namespace %q", plan.Info.GroupResource.String(), ask.Object, ask.Namespace)}}
	}
	form := "objects"
	if plan.Wide {
		form = "namespace"
	}
	now := e.opts.Provider.Now()
	ex.Query = queryInfo(plan.Entry.Rule, plan.Query.Text, form, now)
	// A read-only look before the query: what an HPA request now would get.
	cache := e.opts.Provider.PeekValueCache(plan)
	ex.Cache = cacheInfo(cache)

	res, err := e.run(ctx, ask.Namespace, plan.Entry.Rule, plan.Query, now)
	ex.Result = result(res, err, now)
	if err != nil || res.Err != nil {
		for _, n := range names[:min(len(names), MaxObjects)] {
			ex.Objects.Items = append(ex.Objects.Items, v1alpha1.ObjectValue{Name: n, Reason: v1alpha1.NoValueQueryFailed})
		}
		ex.Objects.Omitted = max(0, len(names)-MaxObjects)
		ex.Value = &v1alpha1.ServedValue{Error: ex.Result.Error}
		ex.Diagnosis = fail(fmt.Sprintf("backend %s: %s", ex.Query.Backend, ex.Result.Error), backendHint(ex.Result.BadQuery))
		return ex, out
	}

	// Each object's value, or why it has none.
	out.values = map[string]int64{}
	var missing []string
	var oldest time.Time
	for _, n := range names {
		s, ok := res.ByName[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		out.values[n] = milli(float64(s.Value))
		if t := s.Timestamp.Time(); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if ex.Objects.Items == nil { // not already found missing
		reasons, _ := e.whyMissing(ctx, ask, plan, missing, now)
		for _, n := range missing {
			ex.Objects.Items = append(ex.Objects.Items, reasons[n])
		}
	}
	for _, n := range names {
		if s, ok := res.ByName[n]; ok {
			age := metav1.Duration{Duration: now.Sub(s.Timestamp.Time()).Round(time.Millisecond)}
			ex.Objects.Items = append(ex.Objects.Items, v1alpha1.ObjectValue{Name: n, Value: quantity(float64(s.Value)), Age: &age})
		}
	}
	ex.Objects.WithValue = len(out.values)
	if len(ex.Objects.Items) > MaxObjects {
		ex.Objects.Omitted = len(ex.Objects.Items) - MaxObjects
		ex.Objects.Items = ex.Objects.Items[:MaxObjects]
	}

	// The value served.
	ex.Value = &v1alpha1.ServedValue{Count: len(out.values)}
	if len(out.values) == 0 {
		ex.Value.Error = fmt.Sprintf("no data for metric %q on %s: %s query returned no samples for them", ask.Metric, describe(ask), plan.Entry.Rule.ID)
		if n := len(res.ByName); n > 0 {
			ex.Value.Error += fmt.Sprintf(" (only for %d other %s)", n, plan.Info.GroupResource.String())
		}
		ex.Diagnosis = fail(fmt.Sprintf("no value for %s: %s", describe(ask), firstReason(ex.Objects.Items)), hintFor(ex.Objects.Items, ex.Rule))
		return ex, out
	}
	var total int64
	for _, v := range out.values {
		total += v
	}
	avg := total / int64(len(out.values))
	out.found, out.total = true, avg
	ex.Value.Found = true
	ex.Value.Value = fmt.Sprint(milliQuantity(avg))
	ts := metav1.NewTime(oldest)
	ex.Value.Timestamp = &ts

	ex.Diagnosis = ok(fmt.Sprintf("%s served %s from %d of %d objects", ask.Metric, ex.Value.Value, len(out.values), len(names)))
	switch {
	case len(missing) > 0:
		ex.Diagnosis = warn(fmt.Sprintf("%d of %d objects have no value (%s)", len(missing), len(names), firstReason(ex.Objects.Items)), hintFor(ex.Objects.Items, ex.Rule))
	case now.Sub(oldest) > e.opts.Lookback/2:
		ex.Diagnosis = warn(fmt.Sprintf("the oldest sample is %s old", now.Sub(oldest).Round(time.Second)), "check that the series are still scraped")
	}
	return ex, out
}

func (e *Explainer) explainExternal(ctx context.Context, ask Ask, ex v1alpha1.Explanation) (v1alpha1.Explanation, outcome) {
	var out outcome
	plan := e.opts.Provider.ExplainExternal(ask.Namespace, ask.Metric, ask.MetricSelector)
	ex.Discovery = e.discoveryInfo(plan.Found)
	if !plan.Found {
		ex.Discovery.Similar = e.similar(ask.Metric, schema.GroupResource{})
		ex.Diagnosis = e.notListed(ask, ex.Discovery.Similar, plan.Err)
		return ex, out
	}
	ex.Rule = e.ruleInfo(plan.Entry, schema.GroupResource{})
	if plan.Err != nil {
		ex.Value = &v1alpha1.ServedValue{Error: plan.Err.Error()}
		ex.Diagnosis = fail(plan.Err.Error(), "")
		return ex, out
	}
	now := e.opts.Provider.Now()
	ex.Query = queryInfo(plan.Entry.Rule, plan.Query.Text, "external", now)
	res, err := e.run(ctx, ask.Namespace, plan.Entry.Rule, plan.Query, now)
	ex.Result = result(res, err, now)
	if err != nil || res.Err != nil {
		ex.Value = &v1alpha1.ServedValue{Error: ex.Result.Error}
		ex.Diagnosis = fail(fmt.Sprintf("backend %s: %s", ex.Query.Backend, ex.Result.Error), backendHint(ex.Result.BadQuery))
		return ex, out
	}
	ex.Value = &v1alpha1.ServedValue{Count: len(res.Vector)}
	if len(res.Vector) == 0 {
		ex.Value.Error = fmt.Sprintf("no data for external metric %q: %s query returned no samples", ask.Metric, plan.Entry.Rule.ID)
		ex.Diagnosis = fail(fmt.Sprintf("the query for external metric %q returns no series", ask.Metric),
			"check the metric selector and that the series have samples in the last "+e.opts.Lookback.String())
		return ex, out
	}
	var total int64
	var oldest time.Time
	for _, s := range res.Vector {
		total += milli(float64(s.Value))
		if t := s.Timestamp.Time(); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	out.found, out.total = true, total
	ex.Value.Found, ex.Value.Value = true, fmt.Sprint(milliQuantity(total))
	ts := metav1.NewTime(oldest)
	ex.Value.Timestamp = &ts
	ex.Diagnosis = ok(fmt.Sprintf("%s served %s (sum of %d series)", ask.Metric, ex.Value.Value, len(res.Vector)))
	return ex, out
}

// run sends the query afresh, as the provider would, within its timeout
// and for the request's namespace's tenant.
func (e *Explainer) run(ctx context.Context, namespace string, rule *rules.Rule, q rules.Query, now time.Time) (probe.Result, error) {
	querier, ok := e.opts.Provider.RuleQuerier(rule)
	if !ok {
		return probe.Result{}, fmt.Errorf("no backend %s is configured", backendName(rule))
	}
	ctx, cancel := context.WithTimeout(backend.WithNamespace(ctx, namespace), e.opts.Provider.Timeout())
	defer cancel()
	return probe.Run(ctx, querier, q, now), nil
}

func request(ask Ask) v1alpha1.MetricRequest {
	r := v1alpha1.MetricRequest{Type: ask.Type, Metric: ask.Metric, Namespace: ask.Namespace, Object: ask.Object}
	if ask.Type != v1alpha1.MetricTypeExternal {
		r.Resource = ask.Resource.String()
	}
	if ask.Selector != nil && ask.Type == v1alpha1.MetricTypePods {
		r.LabelSelector = ask.Selector.String()
	}
	if ask.MetricSelector != nil && !ask.MetricSelector.Empty() {
		r.MetricSelector = ask.MetricSelector.String()
	}
	switch ask.Type {
	case v1alpha1.MetricTypePods:
		r.Path = fmt.Sprintf("/apis/custom.metrics.k8s.io/v1beta2/namespaces/%s/pods/*/%s", ask.Namespace, ask.Metric)
	case v1alpha1.MetricTypeObject:
		res := ask.Resource.String()
		if ask.Namespace == "" {
			r.Path = fmt.Sprintf("/apis/custom.metrics.k8s.io/v1beta2/%s/%s/%s", res, ask.Object, ask.Metric)
		} else {
			r.Path = fmt.Sprintf("/apis/custom.metrics.k8s.io/v1beta2/namespaces/%s/%s/%s/%s", ask.Namespace, res, ask.Object, ask.Metric)
		}
	case v1alpha1.MetricTypeExternal:
		r.Path = fmt.Sprintf("/apis/external.metrics.k8s.io/v1beta1/namespaces/%s/%s", ask.Namespace, ask.Metric)
	}
	return r
}

// APIService names of the three metrics APIs and the diagnostics API.
const (
	APIServiceCustom      = "v1beta2.custom.metrics.k8s.io"
	APIServiceExternal    = "v1beta1.external.metrics.k8s.io"
	APIServiceResource    = "v1beta1.metrics.k8s.io"
	APIServiceDiagnostics = "v1alpha1.diagnostics.gantry.dev"
)

func apiServiceFor(metricType string) string {
	switch metricType {
	case v1alpha1.MetricTypeExternal:
		return APIServiceExternal
	case v1alpha1.MetricTypeResource, v1alpha1.MetricTypeContainerResource:
		return APIServiceResource
	}
	return APIServiceCustom
}

// api reads the APIService serving the metric type. Gantry is the service
// behind its own diagnostics APIService; another service behind a metrics
// APIService is another adapter.
func (e *Explainer) api(ctx context.Context, metricType string) v1alpha1.APIInfo {
	return e.APIService(ctx, apiServiceFor(metricType))
}

// APIService describes the named APIService.
func (e *Explainer) APIService(ctx context.Context, name string) v1alpha1.APIInfo {
	version, group, _ := strings.Cut(name, ".")
	info := v1alpha1.APIInfo{Group: group, Version: version, APIService: name}
	if e.opts.Cluster == nil {
		info.Error = "no cluster client"
		return info
	}
	svc, err := e.apiServices.get(ctx, e.opts.Cluster, name)
	if err != nil {
		info.Error = fmt.Sprintf("reading APIService %s: %v", name, err)
		return info
	}
	info.Found, info.Available, info.Reason, info.Message, info.Service = svc.Found, svc.Available, svc.Reason, svc.Message, svc.Service
	if svc.Found {
		if own, err := e.apiServices.get(ctx, e.opts.Cluster, APIServiceDiagnostics); err == nil && own.Found {
			info.ServedByGantry = own.Service == svc.Service
		}
	}
	return info
}

func (e *Explainer) discoveryInfo(listed bool) *v1alpha1.DiscoveryInfo {
	d := &v1alpha1.DiscoveryInfo{Listed: listed}
	if e.opts.Discovery == nil {
		return d
	}
	if t := e.opts.Discovery.LastSuccess(); !t.IsZero() {
		mt := metav1.NewTime(t)
		d.LastSuccess = &mt
	}
	d.Interval = &metav1.Duration{Duration: e.opts.Discovery.Interval()}
	return d
}

// similar lists discovered metrics that could be what was meant: the same
// name for other resources (or as an external metric), and names that
// contain the one asked or are contained in it.
func (e *Explainer) similar(metric string, gr schema.GroupResource) []string {
	if e.opts.Discovery == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] && len(out) < 10 {
			seen[s] = true
			out = append(out, s)
		}
	}
	custom := e.opts.Discovery.CustomMetrics()
	sort.Slice(custom, func(i, j int) bool { return custom[i].String() < custom[j].String() })
	for _, m := range custom {
		if m.Metric == metric && m.GroupResource != gr {
			add(fmt.Sprintf("%s (custom, %s)", m.Metric, m.GroupResource.String()))
		}
	}
	for _, m := range e.opts.Discovery.ExternalMetrics() {
		if m.Metric == metric && gr != (schema.GroupResource{}) {
			add(fmt.Sprintf("%s (external)", m.Metric))
		}
	}
	for _, m := range custom {
		if m.Metric != metric && (strings.Contains(m.Metric, metric) || strings.Contains(metric, m.Metric)) {
			add(fmt.Sprintf("%s (custom, %s)", m.Metric, m.GroupResource.String()))
		}
	}
	return out
}

// notListed diagnoses a metric no rule answers.
func (e *Explainer) notListed(ask Ask, similar []string, apiErr error) v1alpha1.Diagnosis {
	what := fmt.Sprintf("custom metric %q of %s", ask.Metric, ask.Resource.String())
	if ask.Type == v1alpha1.MetricTypeExternal {
		what = fmt.Sprintf("external metric %q", ask.Metric)
	}
	if apiErr != nil && !apierrors.IsNotFound(apiErr) {
		return fail(fmt.Sprintf("%s: %v", what, apiErr), "")
	}
	if hint := e.otherForms(ask); hint != "" {
		return fail(fmt.Sprintf("no rule serves %s (wrong metric type?)", what), hint)
	}
	hint := "no rule's series yield this metric: check the rules' seriesQuery, resources and name (gantry check-config lists what each rule yields)"
	if len(similar) > 0 {
		hint += "; similar: " + strings.Join(similar, ", ")
	}
	return fail(fmt.Sprintf("no rule serves %s (discovery does not list it)", what), hint)
}

// otherForms is the hint for a metric discovery lists under the same name
// for other resources or as an external metric: every form it is served
// in, the one the user most likely wants first (a workload, then a
// service or another namespaced object, namespaces last). "" when there
// is none.
func (e *Explainer) otherForms(ask Ask) string {
	if e.opts.Discovery == nil {
		return ""
	}
	var grs []schema.GroupResource
	for _, m := range e.opts.Discovery.CustomMetrics() {
		if m.Metric == ask.Metric && (ask.Type == v1alpha1.MetricTypeExternal || m.GroupResource != ask.Resource) && !slices.Contains(grs, m.GroupResource) {
			grs = append(grs, m.GroupResource)
		}
	}
	external := false
	if ask.Type != v1alpha1.MetricTypeExternal {
		for _, m := range e.opts.Discovery.ExternalMetrics() {
			external = external || m.Metric == ask.Metric
		}
	}
	if len(grs) == 0 && !external {
		return ""
	}
	sort.Slice(grs, func(i, j int) bool {
		if ri, rj := likelyRank(grs[i]), likelyRank(grs[j]); ri != rj {
			return ri < rj
		}
		return grs[i].String() < grs[j].String()
	})
	var forms []string
	for _, gr := range grs {
		forms = append(forms, gr.String())
	}
	if external {
		forms = append(forms, "external")
	}
	hint := fmt.Sprintf("Gantry serves %s for %s", ask.Metric, strings.Join(forms, ", "))
	if len(grs) == 0 {
		return hint + "; ask for it as an External metric"
	}
	object := grs[0].String()
	if kind := e.kindOf(grs[0]); kind != "" {
		object = "a " + kind
	}
	switch ask.Type {
	case v1alpha1.MetricTypePods:
		hint += fmt.Sprintf("; ask for it as an Object metric, not as a Pods metric: most likely with describedObject %s", object)
	case v1alpha1.MetricTypeExternal:
		hint += fmt.Sprintf("; ask for it as an Object metric, not as an External one: most likely with describedObject %s", object)
	default:
		hint += fmt.Sprintf("; ask for it about one of these: most likely with describedObject %s", object)
	}
	if external {
		hint += ", or as an External metric"
	}
	return hint
}

// likelyRank orders the resources a metric may be about by how likely an
// HPA means one of them: workloads, then services and ingresses, then
// other namespaced objects, namespaces last.
func likelyRank(gr schema.GroupResource) int {
	switch {
	case gr.Group == "apps" || gr.Group == "batch" || gr.Group == "argoproj.io":
		return 0
	case gr == schema.GroupResource{Resource: "services"} || gr.Resource == "ingresses":
		return 1
	case gr == rules.Namespaces:
		return 3
	}
	return 2
}

// kindOf is gr's kind with its apiVersion ("Service (v1)"), or "" when the
// mapper does not know it.
func (e *Explainer) kindOf(gr schema.GroupResource) string {
	if e.opts.Mapper == nil {
		return ""
	}
	gvk, err := e.opts.Mapper.KindFor(gr.WithVersion(""))
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s (%s)", gvk.Kind, gvk.GroupVersion().String())
}

// ruleInfo describes the rule answering, and where it lives.
func (e *Explainer) ruleInfo(entry discovery.Entry, gr schema.GroupResource) *v1alpha1.RuleInfo {
	r := entry.Rule
	info := &v1alpha1.RuleInfo{ID: r.ID, Origin: v1alpha1.RuleOriginConfig, ConfigFile: e.opts.ConfigFile, Backend: backendName(r), Series: entry.Series, SeriesQuery: r.SeriesQuery}
	if r.Namespace != "" {
		info.Origin, info.ConfigFile = v1alpha1.RuleOriginMetricRule, ""
		// "MetricRule team-a/web spec.rules[0] (x)"
		if rest, found := strings.CutPrefix(r.ID, "MetricRule "); found {
			info.MetricRule, _, _ = strings.Cut(rest, " ")
		}
	}
	if r.Labels != nil {
		if !r.External && gr != (schema.GroupResource{}) {
			if l, err := r.Labels.LabelFor(gr); err == nil {
				info.ResourceLabel = string(l)
			}
		}
		if l, err := r.Labels.LabelFor(rules.Namespaces); err == nil {
			info.NamespaceLabel = string(l)
		}
	}
	if r.Window > 0 {
		info.Window = &metav1.Duration{Duration: r.Window}
	}
	return info
}

// exists reports whether the object of an Object request exists (or
// cannot be checked).
func (e *Explainer) exists(ctx context.Context, ask Ask, plan provider.Plan) bool {
	if e.opts.Objects == nil {
		return true
	}
	names, err := e.opts.Objects.Names(ctx, plan.Info.GroupResource, plan.Namespace, labels.Everything())
	if err != nil {
		return true
	}
	if plan.Info.GroupResource == rules.Namespaces {
		names, err = e.opts.Objects.Names(ctx, rules.Namespaces, "", labels.Everything())
		if err != nil {
			return true
		}
	}
	return slices.Contains(names, ask.Object)
}

// whyMissing says, for each object without a value, why. It lists the
// series of the metric in the namespace twice — over the lookback an instant
// query sees, and over a longer history — asks the backend for the latest
// sample of the stale ones, and once more which of the query's values were
// NaN. others holds, for each object whose name the series carry in another
// label than the rule maps, that label.
func (e *Explainer) whyMissing(ctx context.Context, ask Ask, plan provider.Plan, missing []string, now time.Time) (reasons map[string]v1alpha1.ObjectValue, others map[string]string) {
	out := make(map[string]v1alpha1.ObjectValue, len(missing))
	others = map[string]string{}
	resLabel := string(plan.Query.ResourceLabel)
	for _, n := range missing {
		out[n] = v1alpha1.ObjectValue{Name: n, Reason: v1alpha1.NoValueNoSeries,
			Message: fmt.Sprintf("no series of %q has %s=%q", plan.Entry.Series, resLabel, n)}
	}
	if len(missing) == 0 {
		return out, others
	}
	rule := plan.Entry.Rule
	lister := e.lister(rule)
	if lister == nil {
		return out, others
	}
	extra := e.seriesMatchers(plan)
	ctx, cancel := context.WithTimeout(backend.WithNamespace(ctx, ask.Namespace), e.opts.Provider.Timeout())
	defer cancel()
	recent, errRecent := probe.ListSeries(ctx, rule, lister, now.Add(-e.opts.Lookback), now, extra...)
	history, errHistory := probe.ListSeries(ctx, rule, lister, now.Add(-e.opts.History), now, extra...)
	if errRecent != nil || errHistory != nil {
		return out, others
	}
	inRecent := labelValues(recent, resLabel)
	inHistory := labelValues(history, resLabel)
	var present, stale []string
	for _, n := range missing {
		v := out[n]
		switch {
		case inRecent[n]:
			v.Reason = v1alpha1.NoValueNotInResult
			v.Message = fmt.Sprintf("series with %s=%q have recent samples, but the query's result has no value for it (its range may hold too few samples, or the query filters it)", resLabel, n)
			present = append(present, n)
		case inHistory[n]:
			v.Reason = v1alpha1.NoValueStale
			v.Message = fmt.Sprintf("series with %s=%q have no sample in the last %s (the lookback of an instant query); the latest is older", resLabel, n, e.opts.Lookback)
			stale = append(stale, n)
		default:
			if other := otherLabel(history, resLabel, n); other != "" {
				v.Reason = v1alpha1.NoValueOtherLabel
				v.Message = fmt.Sprintf("series carry %q in label %q, not %q, which the rule maps to %s", n, other, resLabel, plan.Info.GroupResource.String())
				others[n] = other
			}
		}
		out[n] = v
	}
	if len(stale) > 0 {
		latest := e.latestSamples(ctx, ask.Namespace, plan, extra, stale[:min(len(stale), MaxObjects)], now)
		for _, n := range stale {
			t, ok := latest[n]
			if !ok {
				continue
			}
			v := out[n]
			age := metav1.Duration{Duration: now.Sub(t).Round(time.Second)}
			v.Age = &age
			v.Message = fmt.Sprintf("series with %s=%q have no sample within the lookback of an instant query: latest sample %s old, lookback %s", resLabel, n, age.Duration, e.opts.Lookback)
			out[n] = v
		}
	}
	if len(present) > 0 && !rule.LogQL && plan.Query.Text != "" {
		// NaN != NaN: the comparison is 1 exactly where the query's value
		// is NaN, which the backend client drops from the answer.
		q := plan.Query
		q.Text = "(" + q.Text + ") != bool (" + q.Text + ")"
		if nan, err := e.run(ctx, ask.Namespace, rule, q, now); err == nil && nan.Err == nil {
			for _, n := range present {
				if s, ok := nan.ByName[n]; ok && s.Value == 1 {
					v := out[n]
					v.Reason = v1alpha1.NoValueNaN
					v.Message = fmt.Sprintf("the query's value for %q is NaN (a division by zero?), which Gantry drops", n)
					out[n] = v
				}
			}
		}
	}
	return out, others
}

// lister is the backend that lists rule's series.
func (e *Explainer) lister(rule *rules.Rule) discovery.SeriesLister {
	if l := e.opts.Listers[rule.Source]; l != nil {
		return l
	}
	return e.opts.Listers[backendName(rule)]
}

// seriesMatchers narrow a rule's seriesQuery to the plan's series name and
// namespace.
func (e *Explainer) seriesMatchers(plan provider.Plan) []*promlabels.Matcher {
	var extra []*promlabels.Matcher
	rule := plan.Entry.Rule
	if !rule.LogQL && plan.Entry.Series != "" {
		extra = append(extra, promlabels.MustNewMatcher(promlabels.MatchEqual, model.MetricNameLabel, plan.Entry.Series))
	}
	if plan.Namespace != "" {
		if l, err := rule.Labels.LabelFor(rules.Namespaces); err == nil {
			extra = append(extra, promlabels.MustNewMatcher(promlabels.MatchEqual, string(l), plan.Namespace))
		}
	}
	return extra
}

// latestSamples asks the backend when each named object's series last
// had a sample within the history: the latest timestamp() a subquery
// sees, stepping at a fifth of the lookback so that every sample is seen
// at least once. Only PromQL backends are asked; an error leaves the
// ages out.
func (e *Explainer) latestSamples(ctx context.Context, namespace string, plan provider.Plan, extra []*promlabels.Matcher, names []string, now time.Time) map[string]time.Time {
	rule := plan.Entry.Rule
	label := string(plan.Query.ResourceLabel)
	if rule.LogQL || label == "" || len(names) == 0 {
		return nil
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	m, err := promlabels.NewMatcher(promlabels.MatchRegexp, label, strings.Join(quoted, "|"))
	if err != nil {
		return nil
	}
	sel, err := probe.Narrow(rule.SeriesQuery, append(slices.Clone(extra), m)...)
	if err != nil {
		return nil
	}
	step := max(time.Second, e.opts.Lookback/5)
	text := fmt.Sprintf("max by (%s) (max_over_time(timestamp(%s)[%s:%s]))", label, sel, model.Duration(e.opts.History), model.Duration(step))
	if rule.NamespaceLabel != "" {
		// A MetricRule's own queries stay in its namespace; so does this.
		if text, err = enforce.PromQL(text, rule.NamespaceLabel, rule.Namespace); err != nil {
			return nil
		}
	}
	res, err := e.run(ctx, namespace, rule, rules.Query{Text: text, ResourceLabel: plan.Query.ResourceLabel}, now)
	if err != nil || res.Err != nil {
		return nil
	}
	out := make(map[string]time.Time, len(res.ByName))
	for n, s := range res.ByName {
		if slices.Contains(names, n) {
			out[n] = time.UnixMilli(int64(float64(s.Value) * 1000))
		}
	}
	return out
}

func labelValues(sets []model.LabelSet, label string) map[string]bool {
	out := map[string]bool{}
	for _, s := range sets {
		if v, ok := s[model.LabelName(label)]; ok {
			out[string(v)] = true
		}
	}
	return out
}

// otherLabel is a label other than label whose value is name in one of
// sets, preferring names that contain label (pod_name for pod).
func otherLabel(sets []model.LabelSet, label, name string) string {
	var found []string
	for _, s := range sets {
		for l, v := range s {
			if string(v) == name && string(l) != label && l != model.MetricNameLabel && !slices.Contains(found, string(l)) {
				found = append(found, string(l))
			}
		}
	}
	sort.Slice(found, func(i, j int) bool {
		ci, cj := strings.Contains(found[i], label), strings.Contains(found[j], label)
		if ci != cj {
			return ci
		}
		return found[i] < found[j]
	})
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

func backendName(r *rules.Rule) string {
	if r.Source == "" {
		return config.SourcePrometheus
	}
	return r.Source
}

func queryInfo(r *rules.Rule, text, form string, now time.Time) *v1alpha1.QueryInfo {
	lang := "promql"
	if r.LogQL {
		lang = "logql"
	}
	return &v1alpha1.QueryInfo{Backend: backendName(r), Language: lang, Text: text, Form: form, Time: metav1.NewTime(now)}
}

func cacheInfo(c provider.CacheState) *v1alpha1.CacheInfo {
	out := &v1alpha1.CacheInfo{Enabled: c.Enabled, Hit: c.Hit}
	if c.Enabled {
		out.TTL = &metav1.Duration{Duration: c.TTL}
	}
	if c.Hit {
		out.Age = &metav1.Duration{Duration: c.Age.Round(time.Millisecond)}
	}
	return out
}

func result(res probe.Result, err error, now time.Time) *v1alpha1.QueryResult {
	out := &v1alpha1.QueryResult{DurationMilliseconds: res.Duration.Milliseconds()}
	if err == nil {
		err = res.Err
	}
	if err != nil {
		out.Error, out.BadQuery = SafeError(err)
		return out
	}
	out.Series = len(res.Vector)
	for _, s := range res.Vector[:min(len(res.Vector), MaxSamples)] {
		lbls := make(map[string]string, len(s.Metric))
		for k, v := range s.Metric {
			lbls[string(k)] = string(v)
		}
		out.Samples = append(out.Samples, v1alpha1.Sample{
			Labels:    lbls,
			Value:     quantity(float64(s.Value)),
			Age:       metav1.Duration{Duration: now.Sub(s.Timestamp.Time()).Round(time.Millisecond)},
			Timestamp: metav1.NewTime(s.Timestamp.Time()),
		})
	}
	return out
}

var (
	urlPattern  = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"']+`)
	addrPattern = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9a-fA-F:]+\](?::\d+)?`)
)

// SafeError is a backend error as an explanation may show it: the kind of
// failure (timeout, unreachable, bad_query, ...) and the backend's own
// message for a query it rejected, with every URL and address taken out.
// badQuery is true when the backend rejected the query.
func SafeError(err error) (msg string, badQuery bool) {
	var be *backend.Error
	var nt *backend.NoTenantError
	var ne net.Error
	switch {
	case errors.As(err, &nt):
		msg = nt.Error()
	case errors.As(err, &be):
		msg = strings.ReplaceAll(be.Reason, "_", " ")
		if be.BadQuery() || be.Reason == "backend_error" || be.Reason == "too_large" {
			msg += ": " + be.Err.Error()
		}
		badQuery = be.BadQuery()
	case errors.Is(err, context.DeadlineExceeded):
		msg = "timeout: no answer within the deadline"
	case errors.As(err, &ne):
		msg = "unreachable"
	default:
		msg = err.Error()
	}
	msg = urlPattern.ReplaceAllString(msg, "<url>")
	msg = addrPattern.ReplaceAllString(msg, "<address>")
	return msg, badQuery
}

func backendHint(badQuery bool) string {
	if badQuery {
		return "the backend rejected the rule's query: fix the rule's metricsQuery (gantry check-config)"
	}
	return "the backend is down or unreachable from Gantry: check it and Gantry's log (the value cache holds values for seconds only)"
}

func describe(ask Ask) string {
	if ask.Type == v1alpha1.MetricTypePods {
		return fmt.Sprintf("pods matching %q in namespace %q", ask.Selector.String(), ask.Namespace)
	}
	if ask.Namespace == "" {
		return fmt.Sprintf("%s %q", ask.Resource.String(), ask.Object)
	}
	return fmt.Sprintf("%s %q in namespace %q", ask.Resource.String(), ask.Object, ask.Namespace)
}

func firstReason(items []v1alpha1.ObjectValue) string {
	for _, it := range items {
		if it.Reason != "" {
			if it.Message != "" {
				return it.Message
			}
			return it.Reason
		}
	}
	return "no reason found"
}

func hintFor(items []v1alpha1.ObjectValue, rule *v1alpha1.RuleInfo) string {
	for _, it := range items {
		switch it.Reason {
		case v1alpha1.NoValueOtherLabel:
			return "map the label the series carry to the resource (resources.overrides or resources.template), or relabel the series"
		case v1alpha1.NoValueStale:
			return "the series stopped: check the scrape (target up?) and the object's exporter"
		case v1alpha1.NoValueNaN:
			return "the query divides by zero or reads NaN samples: guard it (e.g. > 0) or fix the exporter"
		case v1alpha1.NoValueNotFound:
			return "the HPA names an object that does not exist: check describedObject"
		case v1alpha1.NoValueNotInResult:
			return "the series exist but the query drops them: check its range (rate() needs two samples) and filters"
		case v1alpha1.NoValueNoSeries:
			label := "the mapped label"
			if rule != nil && rule.ResourceLabel != "" {
				label = fmt.Sprintf("label %q", rule.ResourceLabel)
			}
			return fmt.Sprintf("no series carries the object's name in %s: check that the objects export the metric", label)
		}
	}
	return ""
}

// milli is a value as the HPA controller reads it from the API: the
// quantity Gantry serves, in milli-units.
func milli(v float64) int64 {
	q := provider.Quantity(v)
	return q.MilliValue()
}

// quantity is a value as Gantry serves it.
func quantity(v float64) string {
	q := provider.Quantity(v)
	return q.String()
}

func milliQuantity(m int64) string { return quantity(float64(m) / 1000) }

func ok(reason string) v1alpha1.Diagnosis {
	return v1alpha1.Diagnosis{Status: v1alpha1.StatusOK, Reason: reason}
}

func warn(reason, hint string) v1alpha1.Diagnosis {
	return v1alpha1.Diagnosis{Status: v1alpha1.StatusWarn, Reason: reason, Hint: hint}
}

func fail(reason, hint string) v1alpha1.Diagnosis {
	return v1alpha1.Diagnosis{Status: v1alpha1.StatusFail, Reason: reason, Hint: hint}
}

// worse orders diagnoses: FAIL over WARN over OK.
func worse(a, b v1alpha1.Diagnosis) bool {
	rank := func(s v1alpha1.DiagnosisStatus) int {
		switch s {
		case v1alpha1.StatusFail:
			return 2
		case v1alpha1.StatusWarn:
			return 1
		}
		return 0
	}
	return rank(a.Status) > rank(b.Status)
}
