package explain

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/explain/probe"
	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// MaxRuleListings bounds the series listings one explanation of a metric
// discovery does not list makes, looking for the rule that yields it.
const MaxRuleListings = 16

// explainUnlisted explains a custom metric that discovery does not list for
// the resource asked, through the rule whose series yield the metric's
// name: the series may carry the objects' names in another label than the
// one the rule maps (pod_name where it maps pod), so that discovery lists
// the metric for other resources only, or for none; they may have stopped
// before discovery's look-back; or discovery may not have relisted since
// they appeared. It reports false, leaving ex as it was, when no rule
// yields the name, or when no series carries the objects' names at all
// (the metric is then another resource's, or nobody's).
func (e *Explainer) explainUnlisted(ctx context.Context, ask Ask, ex *v1alpha1.Explanation, plan provider.Plan, names []string) bool {
	if e.opts.Discovery == nil || len(names) == 0 {
		return false
	}
	gr := plan.Info.GroupResource
	if gr.Empty() {
		gr = ask.Resource
	}
	now := e.opts.Provider.Now()
	entry, ok := e.ruleYielding(ctx, ask, gr, now)
	if !ok {
		return false
	}
	label, err := entry.Rule.Labels.LabelFor(gr)
	if err != nil {
		return false
	}
	namespace := ask.Namespace
	if gr == rules.Namespaces {
		namespace = ""
	}
	p := provider.Plan{
		Info:  cmprovider.CustomMetricInfo{GroupResource: gr, Namespaced: namespace != "", Metric: ask.Metric},
		Entry: entry, Found: true, Namespace: namespace,
		Query: rules.Query{ResourceLabel: label},
	}
	asked := names[:min(len(names), MaxObjects)]
	reasons, others := e.whyMissing(ctx, ask, p, asked, now)
	items := make([]v1alpha1.ObjectValue, 0, len(asked))
	var other string
	count := map[string]int{}
	for _, n := range asked {
		it := reasons[n]
		if it.Reason == v1alpha1.NoValueNotInResult {
			it.Message = fmt.Sprintf("series with %s=%q have recent samples, but discovery has not listed %s for %s since they appeared", label, n, ask.Metric, gr.String())
		}
		if other == "" {
			other = others[n]
		}
		count[it.Reason]++
		items = append(items, it)
	}
	ruleID := entry.Rule.ID
	var d v1alpha1.Diagnosis
	switch {
	case other != "":
		d = fail(fmt.Sprintf("%s is not served for %s: the series %q of %s carry the %s' names in label %q, not %q, which the rule maps to %s",
			ask.Metric, gr.String(), entry.Series, ruleID, gr.Resource, other, label, gr.String()),
			fmt.Sprintf("map %s instead of %s to %s in the resources.overrides of %s (%s: %s), or relabel %s to %s where the series are scraped (metric_relabel_configs)",
				other, label, gr.String(), ruleID, other, overrideRef(gr), other, label))
	case count[v1alpha1.NoValueNotInResult] > 0:
		d = fail(fmt.Sprintf("discovery does not list %s for %s yet, though series of %s carry the objects in label %q", ask.Metric, gr.String(), ruleID, label),
			e.relistHint())
	case count[v1alpha1.NoValueStale] > 0:
		d = fail(fmt.Sprintf("discovery does not list %s for %s: %s", ask.Metric, gr.String(), firstReason(items)), hintFor(items, nil))
	default:
		return false
	}
	ex.Rule = e.ruleInfo(entry, gr)
	ex.Objects.Items = items
	ex.Objects.Omitted = len(names) - len(asked)
	ex.Objects.WithValue = 0
	if plan.Err != nil {
		ex.Value = &v1alpha1.ServedValue{Error: plan.Err.Error()}
	}
	ex.Diagnosis = d
	return true
}

// relistHint says when discovery relists.
func (e *Explainer) relistHint() string {
	hint := "wait for discovery's next relist"
	if iv := e.opts.Discovery.Interval(); iv > 0 {
		hint += fmt.Sprintf(" (every %s", iv)
		if t := e.opts.Discovery.LastSuccess(); !t.IsZero() {
			hint += fmt.Sprintf(", last %s ago", e.opts.Provider.Now().Sub(t).Round(time.Second))
		}
		hint += ")"
	}
	return hint + "; if it never lists it, Gantry's log says why a relist fails"
}

// overrideRef is how resources.overrides names gr.
func overrideRef(gr schema.GroupResource) string {
	if gr.Group == "" {
		return fmt.Sprintf("{resource: %s}", gr.Resource)
	}
	return fmt.Sprintf("{group: %s, resource: %s}", gr.Group, gr.Resource)
}

// ruleYielding finds the config rule whose series yield the metric asked
// for: a rule that maps gr (and namespaces, for a request in a namespace)
// and whose seriesQuery, listed in the request's namespace over the
// history, returns a series name the rule names ask.Metric. Rules are read
// last first, as discovery lets the last rule answer; a rule whose
// seriesQuery names its series is checked without a listing, and at most
// MaxRuleListings distinct series queries are listed.
func (e *Explainer) ruleYielding(ctx context.Context, ask Ask, gr schema.GroupResource, now time.Time) (discovery.Entry, bool) {
	custom, _ := e.opts.Discovery.Rules()
	ctx, cancel := context.WithTimeout(backend.WithNamespace(ctx, ask.Namespace), e.opts.Provider.Timeout())
	defer cancel()
	listed := map[string][]model.LabelSet{}
	for i := len(custom) - 1; i >= 0; i-- {
		r := custom[i]
		if r.External || r.LogQL || r.Labels == nil {
			continue
		}
		if _, err := r.Labels.LabelFor(gr); err != nil {
			continue
		}
		var extra []*promlabels.Matcher
		if ask.Namespace != "" {
			l, err := r.Labels.LabelFor(rules.Namespaces)
			if err != nil {
				continue
			}
			extra = append(extra, promlabels.MustNewMatcher(promlabels.MatchEqual, string(l), ask.Namespace))
		}
		if series, fixed := seriesName(r.SeriesQuery); fixed {
			if m, ok := r.MetricName(series); !ok || m != ask.Metric {
				continue
			}
		}
		lister := e.lister(r)
		if lister == nil {
			continue
		}
		key := backendName(r) + "\x00" + r.SeriesQuery
		for _, m := range extra {
			key += "\x00" + m.String()
		}
		sets, seen := listed[key]
		if !seen {
			if len(listed) == MaxRuleListings || ctx.Err() != nil {
				break
			}
			sets, _ = probe.ListSeries(ctx, r, lister, now.Add(-e.opts.History), now, extra...)
			listed[key] = sets
		}
		for _, s := range sets {
			series := string(s[model.MetricNameLabel])
			if m, ok := r.MetricName(series); ok && m == ask.Metric {
				return discovery.Entry{Rule: r, Series: series}, true
			}
		}
	}
	return discovery.Entry{}, false
}

// seriesName is the series name a seriesQuery selects by equality, if it
// does.
func seriesName(selector string) (string, bool) {
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(selector)
	if err != nil {
		return "", false
	}
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == promlabels.MatchEqual {
			return m.Value, true
		}
	}
	return "", false
}
