package provider

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/metrics/pkg/apis/external_metrics"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// This file is what adapter/explain reads of the provider: how a request
// would be answered (which rule, which query), without answering it, and a
// read-only look at the value cache. Nothing here sends a query or writes
// to the value cache (its entries, sweeps or counters).

// Plan is how the provider answers a custom or external metrics request.
type Plan struct {
	// Info is the request's metric with the resource resolved as the
	// provider resolves it (custom metrics); Kind is the resource's kind.
	Info cmprovider.CustomMetricInfo
	Kind schema.GroupVersionKind
	// Entry is the rule and series answering; Found is false when no
	// rule answers (the metric is not listed).
	Entry discovery.Entry
	Found bool
	// Namespace is the namespace of the objects the query asks about (""
	// for cluster-scoped objects and for Namespace objects).
	Namespace string
	// Query is the query sent for the request; Wide is true when it is the
	// namespace query that answers every object of the namespace.
	Query rules.Query
	Wide  bool
	// Err is the API error the request gets before any query is sent
	// (NotFound for an unknown resource or metric, BadRequest for a metric
	// selector Gantry cannot turn into a query); Query is then empty.
	Err error

	key valueKey
}

// ExplainCustom plans a custom metrics request made in requestNamespace
// ("" for a cluster-scoped one) about the named objects, as
// GetMetricByName and GetMetricBySelector do.
func (p *MetricsProvider) ExplainCustom(requestNamespace string, names []string, info cmprovider.CustomMetricInfo, metricSelector labels.Selector) Plan {
	var plan Plan
	info, gvk, err := p.normalize(info)
	plan.Info, plan.Kind = info, gvk
	if err != nil {
		plan.Err = err
		return plan
	}
	name := ""
	if len(names) == 1 {
		name = names[0]
	}
	if requestNamespace != "" && !p.inNamespace(info.GroupResource, requestNamespace, name) {
		plan.Err = cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
		return plan
	}
	namespace := requestNamespace
	if info.GroupResource == rules.Namespaces {
		namespace = ""
	}
	plan.Namespace = namespace
	// The cluster's rules, else the namespace's own (MetricRules).
	plan.Entry, plan.Found = p.lookupCustom(requestNamespace, info)
	if !plan.Found {
		plan.Err = cmprovider.NewMetricNotFoundError(info.GroupResource, info.Metric)
		return plan
	}
	plan.Wide = namespace != "" && info.GroupResource != rules.Namespaces && plan.Entry.Rule.NamespaceQueryable()
	plan.key = valueKey{rule: plan.Entry.Rule.ID, series: plan.Entry.Series, gr: info.GroupResource, namespace: namespace, requestNamespace: requestNamespace}
	if metricSelector != nil {
		plan.key.selector = metricSelector.String()
	}
	if plan.Wide {
		plan.Query, err = plan.Entry.Rule.NamespaceQuery(plan.Entry.Series, info.GroupResource, namespace, metricSelector)
	} else {
		plan.key.names = strings.Join(names, "\x00")
		plan.Query, err = plan.Entry.Rule.ObjectQuery(plan.Entry.Series, info.GroupResource, namespace, names, metricSelector)
	}
	if err != nil {
		plan.Err = queryBuildError(err)
	}
	return plan
}

// ExplainExternal plans an external metrics request, as GetExternalMetric
// does.
func (p *MetricsProvider) ExplainExternal(namespace string, metric string, metricSelector labels.Selector) Plan {
	plan := Plan{Info: cmprovider.CustomMetricInfo{Metric: metric}, Namespace: namespace}
	plan.Entry, plan.Found = p.lookupExternal(namespace, metric)
	if !plan.Found {
		plan.Err = cmprovider.NewMetricNotFoundError(schema.GroupResource{Group: external_metrics.GroupName, Resource: "externalmetrics"}, metric)
		return plan
	}
	q, err := plan.Entry.Rule.ExternalQuery(plan.Entry.Series, namespace, metricSelector)
	if err != nil {
		plan.Err = queryBuildError(err)
		return plan
	}
	plan.Query = q
	return plan
}

// CacheState is what the value cache holds for a plan's request.
type CacheState struct {
	// Enabled is false when the TTL is 0.
	Enabled bool
	TTL     time.Duration
	// Hit is true when a request now would be answered from the cache (a
	// fresh value, or a query in flight it would join); Age is how long
	// ago that query was sent.
	Hit bool
	Age time.Duration
}

// PeekValueCache says whether the request plan describes would be answered
// from the value cache now. It only reads the cache.
func (p *MetricsProvider) PeekValueCache(plan Plan) CacheState {
	c := p.values
	st := CacheState{Enabled: c.ttl > 0, TTL: c.ttl}
	if !st.Enabled || !plan.Found || plan.Err != nil || plan.Entry.Rule.External {
		return st
	}
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[plan.key]
	if !ok {
		return st
	}
	if !closed(e.done) || (e.err == nil && now.Sub(e.sent) < c.ttl) {
		st.Hit, st.Age = true, now.Sub(e.sent)
	}
	return st
}

// Now is the evaluation time the provider's queries use.
func (p *MetricsProvider) Now() time.Time { return p.opts.Now() }

// Timeout bounds a request's backend work.
func (p *MetricsProvider) Timeout() time.Duration { return p.opts.Timeout }

// RuleQuerier runs queries for rule on its backend as the provider does
// (within the rule's namespace's share of backend slots), ignoring ts for
// the provider's own evaluation time. ok is false when the rule's backend
// is not configured.
func (p *MetricsProvider) RuleQuerier(rule *rules.Rule) (q Querier, ok bool) {
	source := rule.Source
	if source == "" {
		source = config.SourcePrometheus
	}
	if p.opts.Queriers[source] == nil {
		return nil, false
	}
	return ruleQuerier{p: p, rule: rule}, true
}

type ruleQuerier struct {
	p    *MetricsProvider
	rule *rules.Rule
}

func (q ruleQuerier) Query(ctx context.Context, query string, _ time.Time) (model.Vector, error) {
	return q.p.query(ctx, q.rule, query)
}

// IsNotFound reports whether err is the API's NotFound for a metric.
func IsNotFound(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && apierrors.IsNotFound(err)
}

// Backends are the configured backends by name (a config backend's name,
// or prometheus, loki, local), each querying as the provider does.
func (p *MetricsProvider) Backends() map[string]Querier {
	out := make(map[string]Querier, len(p.opts.Queriers))
	for name, q := range p.opts.Queriers {
		out[name] = q
	}
	return out
}
