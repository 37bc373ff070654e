// Package provider answers the three metrics APIs. The custom and external
// providers implement custom-metrics-apiserver's interfaces; the resource
// provider serves metrics.k8s.io. Each turns a request into a rule's query
// (adapter/rules), asks a backend through the small Querier interface, and
// shapes the answer, keeping the backend's timestamps.
//
// Flow: API path → provider → rule → collector → backend.
package provider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"k8s.io/utils/clock"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// Querier runs an instant PromQL query. It must honour ctx's deadline and
// drop NaN and infinite samples.
type Querier interface {
	Query(ctx context.Context, query string, ts time.Time) (model.Vector, error)
}

// Registry is what the providers need from discovery.
type Registry interface {
	LookupCustom(cmprovider.CustomMetricInfo) (discovery.Entry, bool)
	LookupExternal(name string) (discovery.Entry, bool)
	CustomMetrics() []cmprovider.CustomMetricInfo
	ExternalMetrics() []cmprovider.ExternalMetricInfo
}

// Options configure the custom and external metrics provider.
type Options struct {
	Registry Registry
	// Queriers run the rules' queries, by rule source
	// (config.SourcePrometheus, SourceLoki, SourceLocal).
	Queriers map[string]Querier
	Objects  ObjectLister
	Mapper   apimeta.RESTMapper
	// Timeout bounds a request's backend work when the request itself has no
	// earlier deadline. Default 10s.
	Timeout time.Duration
	// Now is the evaluation time of queries; default time.Now.
	Now func() time.Time
	// ValueCacheTTL is how long the values of a custom metrics query are
	// reused for later requests with the same rule, namespace and metric
	// selector; 0 disables the cache.
	ValueCacheTTL time.Duration
	// ValueCacheMaxBytes bounds the memory of the values kept; default
	// DefaultValueCacheBytes.
	ValueCacheMaxBytes int64
	// Clock measures the value cache's TTL; default the real clock.
	Clock clock.PassiveClock
	// Registerer takes the provider's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// MetricsProvider serves custom.metrics.k8s.io and external.metrics.k8s.io.
type MetricsProvider struct {
	opts   Options
	values *valueCache
	// namespaced serves namespaces' own rules (ServeNamespaced); nil
	// until then.
	namespaced atomic.Pointer[namespaced]
}

var _ cmprovider.MetricsProvider = (*MetricsProvider)(nil)

// New returns the custom and external metrics provider.
func New(opts Options) *MetricsProvider {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &MetricsProvider{opts: opts, values: newValueCache(opts.ValueCacheTTL, opts.ValueCacheMaxBytes, opts.Clock, opts.Registerer)}
}

// ListAllMetrics lists the discovered custom metrics, from memory.
func (p *MetricsProvider) ListAllMetrics() []cmprovider.CustomMetricInfo {
	return p.opts.Registry.CustomMetrics()
}

// ListAllExternalMetrics lists the discovered external metrics, from memory.
func (p *MetricsProvider) ListAllExternalMetrics() []cmprovider.ExternalMetricInfo {
	return p.opts.Registry.ExternalMetrics()
}

// normalize resolves the request's group-resource the way discovery does.
func (p *MetricsProvider) normalize(info cmprovider.CustomMetricInfo) (cmprovider.CustomMetricInfo, schema.GroupVersionKind, error) {
	gvr, err := p.opts.Mapper.ResourceFor(info.GroupResource.WithVersion(""))
	if err != nil {
		return info, schema.GroupVersionKind{}, cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	info.GroupResource = gvr.GroupResource()
	if info.GroupResource == rules.Namespaces {
		info.Namespaced = false
	}
	gvk, err := p.opts.Mapper.KindFor(gvr)
	if err != nil {
		return info, gvk, cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	return info, gvk, nil
}

// GetMetricByName answers a metric about one object.
func (p *MetricsProvider) GetMetricByName(ctx context.Context, name types.NamespacedName, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	info, gvk, err := p.normalize(info)
	if err != nil {
		return nil, err
	}
	namespace := name.Namespace
	requestNamespace := namespace
	if namespace != "" && !p.inNamespace(info.GroupResource, namespace, name.Name) {
		return nil, cmprovider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	// A backend with tenants answers for the request's namespace's tenant.
	ctx = backend.WithNamespace(ctx, namespace)
	if info.GroupResource == rules.Namespaces {
		namespace = ""
	}
	entry, ok := p.lookupCustom(requestNamespace, info)
	if !ok {
		return nil, cmprovider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	values, samples, err := p.objectValues(ctx, entry, info, namespace, []string{name.Name}, metricSelector, gvk)
	if err != nil {
		return nil, err
	}
	if len(values) == 0 {
		return nil, noData(info.Metric, describeTarget(info.GroupResource, namespace, name.Name), entry.Rule.ID, samples, info.GroupResource)
	}
	return &values[0], nil
}

// GetMetricBySelector answers a metric about the objects matching selector,
// resolved against the shared object cache (never a LIST per request).
func (p *MetricsProvider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	info, gvk, err := p.normalize(info)
	if err != nil {
		return nil, err
	}
	entry, ok := p.lookupCustom(namespace, info)
	if !ok {
		return nil, cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	if namespace != "" && !p.inNamespace(info.GroupResource, namespace, "") {
		return nil, cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	ctx = backend.WithNamespace(ctx, namespace)
	listNamespace := namespace
	if info.GroupResource == rules.Namespaces {
		listNamespace = ""
	}
	names, err := p.opts.Objects.Names(ctx, info.GroupResource, listNamespace, selector)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("listing %s matching %q: %v", info.GroupResource.String(), truncate(selector.String()), err))
	}
	if info.GroupResource == rules.Namespaces && namespace != "" {
		// Of all namespaces, a request in one may only see that one.
		names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n != namespace })
		namespace = ""
	}
	if len(names) == 0 {
		return &custom_metrics.MetricValueList{}, nil
	}
	values, samples, err := p.objectValues(ctx, entry, info, namespace, names, metricSelector, gvk)
	if err != nil {
		return nil, err
	}
	if len(values) == 0 {
		target := fmt.Sprintf("%s matching %q", info.GroupResource.String(), truncate(selector.String()))
		if namespace != "" {
			target += fmt.Sprintf(" in namespace %q", namespace)
		}
		return nil, noData(info.Metric, target, entry.Rule.ID, samples, info.GroupResource)
	}
	return &custom_metrics.MetricValueList{Items: values}, nil
}

// inNamespace reports whether a request made in namespace may be answered
// about objects of gr (about the one called name, if name is not empty).
// RBAC authorized the request in that namespace, so it must never be
// answered about anything outside it: a cluster-scoped resource has no
// objects in a namespace, except that the namespace itself is the one
// Namespace object a request in it may describe (the same one
// /namespaces/<ns>/metrics/<metric> describes).
func (p *MetricsProvider) inNamespace(gr schema.GroupResource, namespace, name string) bool {
	if gr == rules.Namespaces {
		return name == "" || name == namespace
	}
	return rules.Namespaced(p.opts.Mapper, gr)
}

func (p *MetricsProvider) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < p.opts.Timeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.opts.Timeout)
}

// objectValues returns a value per named object that has one, in the order
// of names, and the samples they were picked from.
func (p *MetricsProvider) objectValues(ctx context.Context, entry discovery.Entry, info cmprovider.CustomMetricInfo, namespace string, names []string, metricSelector labels.Selector, gvk schema.GroupVersionKind) ([]custom_metrics.MetricValue, *objectSamples, error) {
	samples, err := p.samples(ctx, entry, info, namespace, names, metricSelector)
	if err != nil {
		return nil, nil, err
	}
	var selector *metav1.LabelSelector
	if metricSelector != nil && !metricSelector.Empty() {
		if ls, err := metav1.ParseToLabelSelector(metricSelector.String()); err == nil {
			selector = ls
		}
	}
	window := windowSeconds(entry.Rule.Window)
	apiVersion := gvk.GroupVersion().String()
	out := make([]custom_metrics.MetricValue, 0, len(names))
	for _, n := range names {
		s, ok := samples.byName[n]
		if !ok {
			continue
		}
		out = append(out, custom_metrics.MetricValue{
			DescribedObject: custom_metrics.ObjectReference{
				Kind:       gvk.Kind,
				Namespace:  namespace,
				Name:       n,
				APIVersion: apiVersion,
			},
			Metric:        custom_metrics.MetricIdentifier{Name: info.Metric, Selector: selector},
			Timestamp:     metav1.NewTime(s.Timestamp.Time()),
			WindowSeconds: window,
			Value:         Quantity(float64(s.Value)),
		})
	}
	return out, samples, nil
}

// samples runs, or finds in the value cache, the query that answers a
// request about names. A request about objects in a namespace is answered by
// the rule's namespace query, which covers every object of the resource
// there: HPAs asking about different pods of one namespace share it, and it
// names no object, however many there are. Cluster-scoped objects, requests
// across all namespaces, and rules where the namespace query could change
// a requested object's value (rules.Rule.NamespaceQueryable: templates that
// aggregate across objects, read the names, or are LogQL) use a query that
// names the objects. Names never
// become query text but escaped label matchers, and answers are picked by
// the resource label.
func (p *MetricsProvider) samples(ctx context.Context, entry discovery.Entry, info cmprovider.CustomMetricInfo, namespace string, names []string, metricSelector labels.Selector) (*objectSamples, error) {
	wide := namespace != "" && info.GroupResource != rules.Namespaces && entry.Rule.NamespaceQueryable()
	key := valueKey{rule: entry.Rule.ID, series: entry.Series, gr: info.GroupResource, namespace: namespace}
	// The tenant follows the request's namespace, which is not always the
	// objects' (a Namespace object is cluster-scoped).
	key.requestNamespace, _ = backend.RequestNamespace(ctx)
	if metricSelector != nil {
		key.selector = metricSelector.String()
	}
	if !wide {
		key.names = strings.Join(names, "\x00")
	}
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	samples, err := p.values.get(ctx, key, func(ctx context.Context) (*objectSamples, error) {
		var q rules.Query
		var err error
		if wide {
			q, err = entry.Rule.NamespaceQuery(entry.Series, info.GroupResource, namespace, metricSelector)
		} else {
			q, err = entry.Rule.ObjectQuery(entry.Series, info.GroupResource, namespace, names, metricSelector)
		}
		if err != nil {
			return nil, queryBuildError(err)
		}
		vec, err := p.query(ctx, entry.Rule, q.Text)
		if err != nil {
			return nil, backendError(info.Metric, entry.Rule.ID, err)
		}
		byName := make(map[string]model.SamplePair, len(vec))
		for _, s := range vec {
			// A copy: the decoder's label values share one string of
			// the whole answer, which a kept name would hold alive
			// beyond what the value cache counts.
			n := strings.Clone(string(s.Metric[q.ResourceLabel]))
			if _, dup := byName[n]; dup {
				klog.V(2).InfoS("query returned more than one series for an object; using the first (check the rule's group by)", "rule", entry.Rule.ID, "object", n)
				continue
			}
			byName[n] = model.SamplePair{Timestamp: s.Timestamp, Value: s.Value}
		}
		return &objectSamples{query: q.Text, byName: byName}, nil
	})
	if err != nil {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			return nil, err
		}
		// The request ended while it waited for a shared query.
		return nil, backendError(info.Metric, entry.Rule.ID, fmt.Errorf("gave up waiting for the query: %w", err))
	}
	return samples, nil
}

// GetExternalMetric answers an external metric.
func (p *MetricsProvider) GetExternalMetric(ctx context.Context, namespace string, metricSelector labels.Selector, info cmprovider.ExternalMetricInfo) (*external_metrics.ExternalMetricValueList, error) {
	entry, ok := p.lookupExternal(namespace, info.Metric)
	if !ok {
		return nil, cmprovider.NewMetricNotFoundError(schema.GroupResource{Group: external_metrics.GroupName, Resource: "externalmetrics"}, info.Metric)
	}
	q, err := entry.Rule.ExternalQuery(entry.Series, namespace, metricSelector)
	if err != nil {
		return nil, queryBuildError(err)
	}
	ctx = backend.WithNamespace(ctx, namespace)
	ctx, cancel := p.withTimeout(ctx)
	defer cancel()
	vec, err := p.query(ctx, entry.Rule, q.Text)
	if err != nil {
		return nil, backendError(info.Metric, entry.Rule.ID, err)
	}
	if len(vec) == 0 {
		target := "external metric"
		if namespace != "" && entry.Rule.Namespaced {
			target += fmt.Sprintf(" in namespace %q", namespace)
		}
		if metricSelector != nil && !metricSelector.Empty() {
			target += fmt.Sprintf(" with selector %q", truncate(metricSelector.String()))
		}
		return nil, noData(info.Metric, target, entry.Rule.ID, &objectSamples{query: q.Text}, schema.GroupResource{})
	}
	window := windowSeconds(entry.Rule.Window)
	out := &external_metrics.ExternalMetricValueList{Items: make([]external_metrics.ExternalMetricValue, 0, len(vec))}
	for _, s := range vec {
		lbls := make(map[string]string, len(s.Metric))
		for k, v := range s.Metric {
			if k != model.MetricNameLabel {
				lbls[string(k)] = string(v)
			}
		}
		out.Items = append(out.Items, external_metrics.ExternalMetricValue{
			MetricName:    info.Metric,
			MetricLabels:  lbls,
			Timestamp:     metav1.NewTime(s.Timestamp.Time()),
			WindowSeconds: window,
			Value:         Quantity(float64(s.Value)),
		})
	}
	return out, nil
}

func windowSeconds(d time.Duration) *int64 {
	if d <= 0 {
		return nil
	}
	s := int64(d / time.Second)
	return &s
}

// Quantity converts a sample value to a Kubernetes quantity with milli
// precision, as the HPA reads it.
func Quantity(v float64) resource.Quantity {
	if math.Abs(v) < 9e12 {
		return *resource.NewMilliQuantity(int64(math.Round(v*1000)), resource.DecimalSI)
	}
	q, err := resource.ParseQuantity(strconv.FormatFloat(v, 'f', 0, 64))
	if err != nil {
		return *resource.NewQuantity(math.MaxInt64, resource.DecimalSI)
	}
	return q
}

// maxEcho is how much of a request's selector, or of a query built from it,
// an error message repeats: enough to recognise it, never the 100 KB a
// selector with thousands of values can be.
const maxEcho = 512

// truncate shortens s to maxEcho bytes (on a UTF-8 boundary) and says how
// many were left out.
func truncate(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	i := maxEcho
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:i], len(s)-i)
}

func describeTarget(gr schema.GroupResource, namespace, name string) string {
	s := fmt.Sprintf("%s %q", gr.String(), name)
	if namespace != "" {
		s += fmt.Sprintf(" in namespace %q", namespace)
	}
	return s
}

// noData is the NotFound error of a request whose query found no series for
// its objects: it says which metric, objects, rule and query, and how many
// other objects the query did find, which is what someone debugging an HPA
// needs.
func noData(metric, target, ruleID string, samples *objectSamples, gr schema.GroupResource) error {
	msg := fmt.Sprintf("no data for metric %q on %s: %s query %s returned no samples", metric, target, ruleID, truncate(samples.query))
	if n := len(samples.byName); n > 0 {
		msg += fmt.Sprintf(" for them (only for %d other %s)", n, gr.String())
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusNotFound,
		Reason:  metav1.StatusReasonNotFound,
		Message: msg,
	}}
}

// backendError turns a backend failure into an API error: a query the backend
// rejects is the rule's fault (500 with the reason), anything else is the
// backend being unavailable (503).
// query runs q on the backend of rule's source.
func (p *MetricsProvider) query(ctx context.Context, rule *rules.Rule, q string) (model.Vector, error) {
	source := rule.Source
	if source == "" {
		// The default source, as config.Rule.SourceOrDefault says.
		source = config.SourcePrometheus
	}
	querier := p.opts.Queriers[source]
	if querier == nil {
		return nil, fmt.Errorf("no %s backend is configured", rule.Source)
	}
	// A namespace's own rules share its slots (ServeNamespaced).
	release, err := p.acquireNamespaceSlot(ctx, rule.Namespace)
	if err != nil {
		return nil, err
	}
	defer release()
	return querier.Query(ctx, q, p.opts.Now())
}

func backendError(metric, ruleID string, err error) error {
	var nt *backend.NoTenantError
	if errors.As(err, &nt) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusNotFound,
			Reason:  metav1.StatusReasonNotFound,
			Message: fmt.Sprintf("metric %q: %s: %v", metric, ruleID, nt),
		}}
	}
	var be *backend.Error
	if errors.As(err, &be) && be.BadQuery() {
		return apierrors.NewInternalError(fmt.Errorf("metric %q: %s: the backend rejected the query: %v", metric, ruleID, be.Err))
	}
	return apierrors.NewServiceUnavailable(fmt.Sprintf("metric %q: %s: backend unavailable: %v", metric, ruleID, err))
}

func queryBuildError(err error) error {
	var ise *rules.InvalidSelectorError
	if errors.As(err, &ise) {
		return apierrors.NewBadRequest(ise.Reason)
	}
	return apierrors.NewInternalError(err)
}
