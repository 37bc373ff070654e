// Package discovery knows which metrics exist now. It lists the series of
// every distinct seriesQuery in the background, runs them through the rules,
// and keeps the resulting metric names in memory, so that listing metrics
// never waits on a backend.
//
// Flow: collectors (SeriesLister) → discovery.Registry → adapter/provider.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// SeriesLister lists the series matching a selector. Implementations must
// honour ctx's deadline.
type SeriesLister interface {
	Series(ctx context.Context, matchers []string, start, end time.Time) ([]model.LabelSet, error)
}

// ShapeLister is a SeriesLister that can also hand over only what
// discovery needs: each distinct shape of the matching series, a metric
// name and the sorted names of its other labels, once. A Registry prefers
// it, so that a relist holds neither the backend's answer nor a label set
// per series (a million series have a few hundred shapes). fn may keep
// labels; implementations must honour ctx's deadline.
type ShapeLister interface {
	SeriesShapes(ctx context.Context, matchers []string, start, end time.Time, fn func(name string, labels []model.LabelName)) error
}

// Entry is how to answer a discovered metric: the rule and the series name
// its metricsQuery is rendered with.
type Entry struct {
	Rule   *rules.Rule
	Series string
}

// Options configure a Registry.
type Options struct {
	Rules         []*rules.Rule // custom metrics rules
	ExternalRules []*rules.Rule
	// Lister lists the series of Prometheus rules; Listers, by rule
	// source (config.SourceLoki, SourceLocal, ...), those of other rules.
	Lister  SeriesLister
	Listers map[string]SeriesLister
	Mapper  apimeta.RESTMapper
	// Interval between relists (--metrics-relist-interval). Default 1m.
	Interval time.Duration
	// MaxAge is how far back series are looked for (--metrics-max-age).
	// Default: Interval.
	MaxAge time.Duration
	// Timeout bounds one series call. Default 30s.
	Timeout     time.Duration
	Clock       clock.WithTicker
	Registerer  prometheus.Registerer
	Concurrency int // distinct series queries listed at once; default 4
}

// Registry holds the metrics discovered by the last successful relist of each
// series query.
type Registry struct {
	opts Options
	// relistNow asks Run for a relist before the next tick (SetRules).
	relistNow chan struct{}

	mu         sync.RWMutex
	rules      []*rules.Rule // custom rules in use; SetRules swaps them
	extRules   []*rules.Rule
	generation uint64 // counts SetRules calls
	custom     map[provider.CustomMetricInfo]Entry
	external   map[string]Entry
	customList []provider.CustomMetricInfo
	extList    []provider.ExternalMetricInfo
	lastGood   map[string][]seriesShape // per series query: kept when a relist fails
	lastOK     time.Time                // last relist where every query succeeded
	everOK     bool

	metrics registryMetrics
}

type registryMetrics struct {
	duration  prometheus.Histogram
	failures  *prometheus.CounterVec
	metrics   *prometheus.GaugeVec
	conflicts prometheus.Gauge
	lastOK    prometheus.Gauge
}

// New returns a registry; call Run to start discovering.
func New(opts Options) *Registry {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = opts.Interval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	r := &Registry{
		opts:      opts,
		relistNow: make(chan struct{}, 1),
		rules:     opts.Rules,
		extRules:  opts.ExternalRules,
		custom:    map[provider.CustomMetricInfo]Entry{},
		external:  map[string]Entry{},
		lastGood:  map[string][]seriesShape{},
		metrics: registryMetrics{
			duration: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "gantry_discovery_relist_duration_seconds",
				Help:    "Time taken by one relist of every series query.",
				Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
			}),
			failures: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "gantry_discovery_relist_failures_total",
				Help: "Series queries that failed during a relist; the last good result was kept.",
			}, []string{"rule"}),
			metrics: prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "gantry_discovery_metrics",
				Help: "Metrics currently discovered, by API.",
			}, []string{"api"}),
			conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "gantry_discovery_conflicts",
				Help: "Metrics yielded by more than one rule or series in the last relist; as in prometheus-adapter, the last rule in file order answers for each.",
			}),
			lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "gantry_discovery_last_success_timestamp_seconds",
				Help: "Unix time of the last relist in which every series query succeeded.",
			}),
		},
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(r.metrics.duration, r.metrics.failures, r.metrics.metrics, r.metrics.conflicts, r.metrics.lastOK)
	}
	return r
}

// Run relists at once, then every interval and right after SetRules, until
// ctx is cancelled. It returns when ctx is done.
func (r *Registry) Run(ctx context.Context) {
	t := r.opts.Clock.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		if err := r.Relist(ctx); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "relist failed; keeping the last good metric list for the failed queries")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-r.relistNow:
		}
	}
}

// SetRules replaces the rules, as a config reload does, and asks Run for a
// relist at once. Until that relist completes, the metrics found with the
// previous rules keep being served, so no metric disappears while the new
// list is being built; a relist that was already running when the rules
// changed does not publish its list.
func (r *Registry) SetRules(custom, external []*rules.Rule) {
	r.mu.Lock()
	r.rules, r.extRules = custom, external
	r.generation++
	r.mu.Unlock()
	select {
	case r.relistNow <- struct{}{}:
	default: // a relist is already asked for
	}
}

// Relist queries every distinct series query once and rebuilds the metric
// list. A failed query keeps its last good series; the error reports it.
func (r *Registry) Relist(ctx context.Context) error {
	start := r.opts.Clock.Now()
	r.mu.RLock()
	customRules, extRules, generation := r.rules, r.extRules, r.generation
	r.mu.RUnlock()
	// Rules of different backends may share a selector's text, not its
	// series: queries are keyed by source and selector.
	queries := map[string][]*rules.Rule{}
	var order []string
	for _, rule := range slices.Concat(customRules, extRules) {
		k := queryKey(rule)
		if _, ok := queries[k]; !ok {
			order = append(order, k)
		}
		queries[k] = append(queries[k], rule)
	}

	results := make([][]seriesShape, len(order))
	failed := make([]error, len(order))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Concurrency)
	now := r.opts.Clock.Now()
	for i, q := range order {
		g.Go(func() error {
			qctx, cancel := context.WithTimeout(gctx, r.opts.Timeout)
			defer cancel()
			rule := queries[q][0]
			lister, err := r.lister(rule.Source)
			var shapes []seriesShape
			if err == nil {
				shapes, err = listShapes(qctx, lister, rule.SeriesQuery, now.Add(-r.opts.MaxAge), now)
			}
			if err != nil {
				failed[i] = fmt.Errorf("series query %q (%s): %w", rule.SeriesQuery, rule.ID, err)
				for _, rule := range queries[q] {
					r.metrics.failures.WithLabelValues(rule.ID).Inc()
				}
				return nil
			}
			results[i] = shapes
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	r.mu.Lock()
	if r.generation != generation {
		// The rules changed while this relist ran: the relist SetRules
		// asked for publishes instead.
		r.mu.Unlock()
		return nil
	}
	for i, q := range order {
		if failed[i] == nil {
			r.lastGood[q] = results[i]
		}
	}
	byQuery := make(map[string][]seriesShape, len(order))
	for _, q := range order {
		byQuery[q] = r.lastGood[q]
	}
	// Forget the series of queries no rule asks any more.
	for q := range r.lastGood {
		if _, ok := byQuery[q]; !ok {
			delete(r.lastGood, q)
		}
	}
	r.mu.Unlock()

	custom, external, conflicts := build(customRules, extRules, r.opts.Mapper, func(rule *rules.Rule) []seriesShape { return byQuery[queryKey(rule)] })
	err := errors.Join(failed...)

	r.mu.Lock()
	if r.generation != generation {
		r.mu.Unlock()
		return nil
	}
	r.custom, r.external = custom, external
	r.customList = make([]provider.CustomMetricInfo, 0, len(custom))
	for info := range custom {
		r.customList = append(r.customList, info)
	}
	sort.Slice(r.customList, func(i, j int) bool { return r.customList[i].String() < r.customList[j].String() })
	r.extList = make([]provider.ExternalMetricInfo, 0, len(external))
	for name := range external {
		r.extList = append(r.extList, provider.ExternalMetricInfo{Metric: name})
	}
	sort.Slice(r.extList, func(i, j int) bool { return r.extList[i].Metric < r.extList[j].Metric })
	if err == nil {
		r.lastOK = r.opts.Clock.Now()
		r.everOK = true
		r.metrics.lastOK.Set(float64(r.lastOK.Unix()))
	}
	r.mu.Unlock()

	r.metrics.duration.Observe(r.opts.Clock.Since(start).Seconds())
	r.metrics.metrics.WithLabelValues("custom").Set(float64(len(custom)))
	r.metrics.metrics.WithLabelValues("external").Set(float64(len(external)))
	r.metrics.conflicts.Set(float64(len(conflicts)))
	for _, c := range conflicts {
		ignored := make([]string, 0, len(c.Entries)-1)
		for _, e := range c.Entries[:len(c.Entries)-1] {
			ignored = append(ignored, e.String())
		}
		klog.InfoS("metric yielded by more than one rule or series; the last answers for it, as in prometheus-adapter", "metric", c.Metric, "resource", c.Resource.String(), "external", c.External, "servedBy", c.Winner().String(), "ignored", ignored)
	}
	klog.V(2).InfoS("relisted series", "queries", len(order), "customMetrics", len(custom), "externalMetrics", len(external), "failedQueries", countErrs(failed), "duration", r.opts.Clock.Since(start))
	return err
}

// listShapes lists the distinct shapes of a selector's series, sorted.
func listShapes(ctx context.Context, lister SeriesLister, selector string, start, end time.Time) ([]seriesShape, error) {
	sl, ok := lister.(ShapeLister)
	if !ok {
		sets, err := lister.Series(ctx, []string{selector}, start, end)
		if err != nil {
			return nil, err
		}
		return distinctSeries(sets), nil
	}
	var shapes []seriesShape
	err := sl.SeriesShapes(ctx, []string{selector}, start, end, func(name string, labels []model.LabelName) {
		shapes = append(shapes, seriesShape{name: name, labels: labels})
	})
	if err != nil {
		return nil, err
	}
	sortShapes(shapes)
	return shapes, nil
}

// queryKey identifies the series query of a rule: its backend and selector.
func queryKey(rule *rules.Rule) string {
	return rule.Source + "\x00" + rule.SeriesQuery
}

// lister is the backend that lists the series of rules of a source.
func (r *Registry) lister(source string) (SeriesLister, error) {
	if l, ok := r.opts.Listers[source]; ok && l != nil {
		return l, nil
	}
	if (source == "" || source == config.SourcePrometheus) && r.opts.Lister != nil {
		return r.opts.Lister, nil
	}
	return nil, fmt.Errorf("no %s backend is configured", source)
}

func countErrs(errs []error) int {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return n
}

// Conflict is a metric that more than one rule, or more than one series of
// one rule, yields. Entries are in the order discovery reads them: rules in
// file order (custom, then external), the series of a rule by name. As in
// prometheus-adapter, whose series registries overwrite their entry for a
// metric with each rule that yields it (SetSeries in
// pkg/custom-provider/series_registry.go, filterAndStoreMetrics in
// pkg/external-provider/external_series_registry.go), the last one answers
// for the metric.
type Conflict struct {
	Metric string
	// Resource is what a custom metric is about; empty for an external one.
	Resource schema.GroupResource
	External bool
	Entries  []Entry
}

// Winner is the entry that answers for the metric: the last one.
func (c Conflict) Winner() Entry { return c.Entries[len(c.Entries)-1] }

// String names the rule and the series: "rules[3] (requests) series http_requests_total".
func (e Entry) String() string { return e.Rule.ID + " series " + e.Series }

// Conflicts runs the series each rule listed through the rules as a relist
// does, and returns the metrics that more than one rule or series yields,
// ordered by API, metric and resource. series holds the series of each
// rule's seriesQuery (a rule missing from it found none); check-config
// uses it to say which rule would answer.
func Conflicts(customRules, extRules []*rules.Rule, mapper apimeta.RESTMapper, series map[*rules.Rule][]model.LabelSet) []Conflict {
	shapes := make(map[*rules.Rule][]seriesShape, len(series))
	for rule, sets := range series {
		shapes[rule] = distinctSeries(sets)
	}
	_, _, conflicts := build(customRules, extRules, mapper, func(rule *rules.Rule) []seriesShape { return shapes[rule] })
	return conflicts
}

// build runs the series of each rule through it. Rules are read in file
// order and a rule's series by name, and a metric that is yielded again by
// another rule or series is taken over: the last one answers for it, as in
// prometheus-adapter (see Conflict).
func build(customRules, extRules []*rules.Rule, mapper apimeta.RESTMapper, seriesOf func(*rules.Rule) []seriesShape) (map[provider.CustomMetricInfo]Entry, map[string]Entry, []Conflict) {
	custom := map[provider.CustomMetricInfo]Entry{}
	external := map[string]Entry{}
	// Every entry that yielded a contested metric, in order. A rule finds
	// the same series under several label sets, so an entry repeats
	// itself: it is listed once per run.
	contestedCustom := map[provider.CustomMetricInfo][]Entry{}
	contestedExternal := map[string][]Entry{}

	for _, rule := range customRules {
		for _, s := range seriesOf(rule) {
			name, ok := rule.MetricName(s.name)
			if !ok {
				continue
			}
			entry := Entry{Rule: rule, Series: s.name}
			for _, gr := range rule.Labels.ResourcesFor(s.labels) {
				info := provider.CustomMetricInfo{GroupResource: gr, Metric: name, Namespaced: rules.Namespaced(mapper, gr)}
				prev, ok := custom[info]
				if ok && prev != entry {
					if contestedCustom[info] == nil {
						contestedCustom[info] = []Entry{prev}
					}
					contestedCustom[info] = append(contestedCustom[info], entry)
				}
				custom[info] = entry
			}
		}
	}
	for _, rule := range extRules {
		for _, s := range seriesOf(rule) {
			name, ok := rule.MetricName(s.name)
			if !ok {
				continue
			}
			entry := Entry{Rule: rule, Series: s.name}
			prev, ok := external[name]
			if ok && prev != entry {
				if contestedExternal[name] == nil {
					contestedExternal[name] = []Entry{prev}
				}
				contestedExternal[name] = append(contestedExternal[name], entry)
			}
			external[name] = entry
		}
	}

	conflicts := make([]Conflict, 0, len(contestedCustom)+len(contestedExternal))
	for info, entries := range contestedCustom {
		conflicts = append(conflicts, Conflict{Metric: info.Metric, Resource: info.GroupResource, Entries: entries})
	}
	for name, entries := range contestedExternal {
		conflicts = append(conflicts, Conflict{Metric: name, External: true, Entries: entries})
	}
	slices.SortFunc(conflicts, func(a, b Conflict) int {
		if a.External != b.External {
			if a.External {
				return 1
			}
			return -1
		}
		if c := strings.Compare(a.Metric, b.Metric); c != 0 {
			return c
		}
		return strings.Compare(a.Resource.String(), b.Resource.String())
	})
	return custom, external, conflicts
}

// seriesShape is what discovery keeps of a series: its name and which
// labels it has, not their values.
type seriesShape struct {
	name   string
	labels []model.LabelName
}

// distinctSeries reduces label sets to distinct (name, label names) shapes:
// discovery needs which labels exist, not their values.
func distinctSeries(sets []model.LabelSet) []seriesShape {
	seen := map[string]bool{}
	var out []seriesShape
	for _, ls := range sets {
		name := string(ls[model.MetricNameLabel])
		names := make([]model.LabelName, 0, len(ls))
		for l := range ls {
			if l != model.MetricNameLabel {
				names = append(names, l)
			}
		}
		slices.Sort(names)
		key := name
		for _, l := range names {
			key += "\x00" + string(l)
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, seriesShape{name: name, labels: names})
	}
	sortShapes(out)
	return out
}

// sortShapes orders shapes by name, then label names. Backends list series
// in no promised order (Prometheus' head lists them as they were created);
// sorted, when two series of a rule give the same metric name, the same one
// wins on every relist.
func sortShapes(shapes []seriesShape) {
	slices.SortFunc(shapes, func(a, b seriesShape) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return slices.Compare(a.labels, b.labels)
	})
}

// LookupCustom finds the rule answering a custom metric.
func (r *Registry) LookupCustom(info provider.CustomMetricInfo) (Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.custom[info]
	return e, ok
}

// LookupExternal finds the rule answering an external metric.
func (r *Registry) LookupExternal(name string) (Entry, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.external[name]
	return e, ok
}

// CustomMetrics lists the discovered custom metrics.
func (r *Registry) CustomMetrics() []provider.CustomMetricInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.customList
}

// ExternalMetrics lists the discovered external metrics.
func (r *Registry) ExternalMetrics() []provider.ExternalMetricInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.extList
}

// Ready reports an error until the first relist in which every query
// succeeded, and when the last such relist is older than staleAfter.
func (r *Registry) Ready(staleAfter time.Duration) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.everOK {
		return errors.New("metric discovery has not completed yet")
	}
	if age := r.opts.Clock.Since(r.lastOK); staleAfter > 0 && age > staleAfter {
		return fmt.Errorf("last complete metric discovery was %s ago", age.Round(time.Second))
	}
	return nil
}

// GroupResources lists the resources the discovered metrics are about, so
// their object caches can be warmed.
func (r *Registry) GroupResources() []schema.GroupResource {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[schema.GroupResource]bool{}
	var out []schema.GroupResource
	for info := range r.custom {
		if !seen[info.GroupResource] {
			seen[info.GroupResource] = true
			out = append(out, info.GroupResource)
		}
	}
	return out
}
