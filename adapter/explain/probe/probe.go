// Package probe is the one code path from a rule to what a backend answers
// for it, shared by `gantry check-config` (adapter/checkconfig) and the
// explanations of adapter/explain, so that the two never disagree: a rule's
// seriesQuery → the series a backend lists → the metrics the rule turns them
// into; and a rendered query → the backend's answer → a value per object.
//
// It neither caches nor keeps anything: every call asks the backend afresh.
package probe

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// Querier runs an instant query, as adapter/provider's Querier does: it
// honours ctx's deadline and drops NaN and infinite samples.
type Querier interface {
	Query(ctx context.Context, query string, ts time.Time) (model.Vector, error)
}

// ListSeries lists the series r's seriesQuery selects between start and
// end, narrowed by extra matchers (none: the whole seriesQuery).
func ListSeries(ctx context.Context, r *rules.Rule, lister discovery.SeriesLister, start, end time.Time, extra ...*labels.Matcher) ([]model.LabelSet, error) {
	sel, err := Narrow(r.SeriesQuery, extra...)
	if err != nil {
		return nil, err
	}
	sets, err := lister.Series(ctx, []string{sel}, start, end)
	if err != nil {
		return nil, fmt.Errorf("listing series %s: %w", sel, err)
	}
	return sets, nil
}

// Narrow adds matchers to a series selector such as `{__name__=~"http_.*"}`
// or `http_requests_total{job="x"}`, on the parsed selector, and returns
// the result as selector text.
func Narrow(selector string, extra ...*labels.Matcher) (string, error) {
	if len(extra) == 0 {
		return selector, nil
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(selector)
	if err != nil {
		return "", fmt.Errorf("seriesQuery %s: %w", selector, err)
	}
	parts := make([]string, 0, len(ms)+len(extra))
	for _, m := range slices.Concat(ms, extra) {
		parts = append(parts, m.String())
	}
	return "{" + strings.Join(parts, ",") + "}", nil
}

// Metric is a metric a rule yields from listed series: its name, the
// resources its series describe (none for external rules) and the series
// name the rule's query is rendered with.
type Metric struct {
	Name      string
	Series    string
	Resources []schema.GroupResource
}

// Metrics are the metrics rule r turns the listed series into, by name. A
// custom rule's series yield a metric only for the resources their labels
// map; series mapping none yield nothing.
func Metrics(r *rules.Rule, sets []model.LabelSet) map[string]Metric {
	out := map[string]Metric{}
	for _, s := range sets {
		series := string(s[model.MetricNameLabel])
		name, ok := r.MetricName(series)
		if !ok {
			continue
		}
		var resources []schema.GroupResource
		if !r.External {
			labels := make([]model.LabelName, 0, len(s))
			for l := range s {
				labels = append(labels, l)
			}
			resources = r.Labels.ResourcesFor(labels)
			if len(resources) == 0 {
				continue
			}
		}
		m, seen := out[name]
		if !seen {
			m = Metric{Name: name, Series: series}
		}
		for _, gr := range resources {
			if !slices.Contains(m.Resources, gr) {
				m.Resources = append(m.Resources, gr)
			}
		}
		out[name] = m
	}
	return out
}

// Result is a backend's answer to one query.
type Result struct {
	// Vector is the answer, without NaN and infinite samples.
	Vector model.Vector
	// ByName is the first sample of each object, by the value of the
	// query's resource label (as the provider picks them); nil for a query
	// without one.
	ByName map[string]model.SamplePair
	// Duplicates names the objects more than one series answered for.
	Duplicates []string
	// Time is the evaluation time, Duration how long the backend took.
	Time     time.Time
	Duration time.Duration
	// Err is the backend's error; the rest is then empty.
	Err error
}

// Run sends q to querier, evaluated at ts, and reads the answer per object
// of q.ResourceLabel.
func Run(ctx context.Context, querier Querier, q rules.Query, ts time.Time) Result {
	start := time.Now()
	vec, err := querier.Query(ctx, q.Text, ts)
	res := Result{Time: ts, Duration: time.Since(start), Err: err}
	if err != nil {
		return res
	}
	res.Vector = slices.DeleteFunc(vec, func(s *model.Sample) bool {
		v := float64(s.Value)
		return math.IsNaN(v) || math.IsInf(v, 0)
	})
	if q.ResourceLabel == "" {
		return res
	}
	res.ByName = make(map[string]model.SamplePair, len(res.Vector))
	for _, s := range res.Vector {
		n := string(s.Metric[q.ResourceLabel])
		if _, dup := res.ByName[n]; dup {
			res.Duplicates = append(res.Duplicates, n)
			continue
		}
		res.ByName[n] = model.SamplePair{Timestamp: s.Timestamp, Value: s.Value}
	}
	return res
}
