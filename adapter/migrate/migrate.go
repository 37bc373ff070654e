// Package migrate splits a central rule file into per-namespace MetricRule
// resources (gantry.dev/v1alpha1): `gantry migrate-rules`.
//
// A rule moves to a namespace only when it clearly belongs there: its
// seriesQuery has exactly one matcher on the namespace label, an equality
// with a namespace name, and the rule compiles and passes the same namespace
// enforcement Gantry applies to every MetricRule (rules.Rule.Confine), so
// the manifests it writes can be applied as they are. Every other rule stays
// in the central file, with the reason.
//
// It sits beside adapter/checkconfig at the start of the flow: it reads a
// config (adapter/config), compiles it (adapter/rules) and talks to no
// backend and no cluster.
package migrate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// The MetricRule resource the manifests are of.
const (
	APIVersion = "gantry.dev/v1alpha1"
	Kind       = "MetricRule"
)

// Defaults of Options.
const (
	DefaultNamespaceLabel = "namespace"
	DefaultName           = "migrated"
	// DefaultMaxRulesPerNamespace is Gantry's default
	// --metricrule-max-rules-per-namespace.
	DefaultMaxRulesPerNamespace = 20
)

// Options say how to split.
type Options struct {
	// NamespaceLabel is the series label that holds the namespace, as
	// Gantry's --metricrule-namespace-label (default "namespace").
	NamespaceLabel string
	// Name is the name of each namespace's MetricRule (default "migrated").
	Name string
	// AllowedBackends are the backends and sources besides "prometheus"
	// (the default one) a MetricRule may use, as Gantry's
	// --metricrule-allowed-backends lists them; a rule on another one
	// stays central.
	AllowedBackends []string
	// MaxRulesPerNamespace is Gantry's --metricrule-max-rules-per-namespace
	// (default 20): a namespace that would get more is warned about.
	MaxRulesPerNamespace int
	// Mapper resolves the resources rules name; nil: the built-in
	// Kubernetes kinds, a resource of another group taken as written.
	Mapper apimeta.RESTMapper
}

func (o Options) withDefaults() Options {
	if o.NamespaceLabel == "" {
		o.NamespaceLabel = DefaultNamespaceLabel
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.MaxRulesPerNamespace == 0 {
		o.MaxRulesPerNamespace = DefaultMaxRulesPerNamespace
	}
	if o.Mapper == nil {
		o.Mapper = newOfflineMapper()
	}
	return o
}

// Decision is what becomes of one rule of the file.
type Decision struct {
	// Rule names it as errors do: "rules[3] (http_requests)".
	Rule string
	// Namespace is where it moves; "" when it stays central.
	Namespace string
	// Target is where it lands when it moves:
	// "MetricRule shop/migrated spec.rules[0]".
	Target string
	// Reasons say why it stays central; empty when it moves.
	Reasons []string
}

// Moves reports whether the rule moves to a MetricRule.
func (d Decision) Moves() bool { return d.Namespace != "" }

// Plan is the split of one file.
type Plan struct {
	// File is the file's name as the report gives it.
	File string
	// Decisions are in file order: rules, then externalRules.
	Decisions []Decision
	// Resources are the MetricRules, one per namespace, sorted by namespace.
	Resources []*MetricRule
	// Central lists what stays central besides rules: resourceRules,
	// backends.
	Central []string
	// Warnings are about resources that Gantry may not accept as they are
	// (too many rules for one namespace).
	Warnings []string
}

// Split decides, rule by rule, what moves to which namespace. cfg must have
// loaded (config.Load or Parse): Split does not repeat the file's checks.
func Split(cfg *config.Config, file string, opts Options) *Plan {
	opts = opts.withDefaults()
	p := &Plan{File: file}
	byNS := map[string]*MetricRule{}
	add := func(section string, i int, r config.DiscoveryRule, external bool) {
		d := Decision{Rule: fmt.Sprintf("%s[%d] (%s)", section, i, r.DisplayName())}
		ns, reasons := classify(r, external, opts)
		if len(reasons) > 0 {
			d.Reasons = reasons
			p.Decisions = append(p.Decisions, d)
			return
		}
		mr := byNS[ns]
		if mr == nil {
			mr = newMetricRule(ns, opts.Name)
			byNS[ns] = mr
		}
		field := "rules"
		list := &mr.Spec.Rules
		if external {
			field, list = "externalRules", &mr.Spec.ExternalRules
		}
		d.Namespace = ns
		d.Target = fmt.Sprintf("MetricRule %s/%s spec.%s[%d]", ns, opts.Name, field, len(*list))
		*list = append(*list, specRule{From: file + " " + d.Rule, Rule: r})
		p.Decisions = append(p.Decisions, d)
	}
	for i, r := range cfg.Rules {
		add("rules", i, r, false)
	}
	for i, r := range cfg.ExternalRules {
		add("externalRules", i, r, true)
	}
	if cfg.ResourceRules != nil {
		p.Central = append(p.Central, "resourceRules: stays central: metrics.k8s.io (pod and node CPU and memory) is served from the central config only")
	}
	if len(cfg.Backends) > 0 {
		p.Central = append(p.Central, "backends: stays central: backends are defined in the central config only (a MetricRule names one with backend: where the admin allows it)")
	}
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		mr := byNS[ns]
		p.Resources = append(p.Resources, mr)
		if n := len(mr.Spec.Rules) + len(mr.Spec.ExternalRules); n > opts.MaxRulesPerNamespace {
			p.Warnings = append(p.Warnings, fmt.Sprintf("namespace %q gets %d rules; Gantry accepts at most %d per namespace (--metricrule-max-rules-per-namespace) and marks the resource TooManyRules beyond that", ns, n, opts.MaxRulesPerNamespace))
		}
	}
	return p
}

// classify returns the namespace a rule moves to, or why it stays central.
func classify(r config.DiscoveryRule, external bool, opts Options) (string, []string) {
	ns, reason := seriesNamespace(r.SeriesQuery, opts.NamespaceLabel)
	if reason != "" {
		// The rest does not matter: the rule has no namespace to move to.
		return "", []string{reason}
	}
	var reasons []string
	if external && !r.Resources.NamespacedOrDefault() {
		reasons = append(reasons, fmt.Sprintf("resources.namespaced: false: the metric is served to HPAs of every namespace; a MetricRule serves it in %q only", ns))
	}
	if src := r.SourceOrDefault(); src != config.SourcePrometheus && !slices.Contains(opts.AllowedBackends, src) {
		field := "source"
		if r.Backend != "" {
			field = "backend"
		} else if r.Source == "" {
			field = "logqlQuery"
		}
		reasons = append(reasons, fmt.Sprintf("%s: runs on backend %q, which MetricRules may use only where the admin allows it (Gantry's --metricrule-allowed-backends; pass --allowed-backends %s if it does)", field, src, src))
	}
	for _, label := range slices.Sorted(maps.Keys(r.Resources.Overrides)) {
		gr := r.Resources.Overrides[label]
		if clusterScoped(opts.Mapper, gr) {
			reasons = append(reasons, fmt.Sprintf("resources.overrides.%s: maps %q, a cluster-scoped resource; a MetricRule serves only objects in its own namespace", label, gr.Resource))
		}
	}
	if len(reasons) > 0 {
		return "", reasons
	}
	rule, err := rules.Compile("rule", r, external, opts.Mapper)
	if err == nil {
		err = rule.Confine(opts.NamespaceLabel, ns)
	}
	if err != nil {
		return "", []string{fmt.Sprintf("not accepted as a MetricRule in %q: %s", ns, strings.TrimPrefix(err.Error(), "rule: "))}
	}
	return ns, nil
}

// seriesNamespace is the namespace a seriesQuery names with its only matcher
// on label, or why it names none.
func seriesNamespace(seriesQuery, label string) (string, string) {
	matchers, err := selectorParser.ParseMetricSelector(seriesQuery)
	if err != nil {
		return "", fmt.Sprintf("seriesQuery: not a series selector: %v", err)
	}
	var on []*labels.Matcher
	for _, m := range matchers {
		if m.Name == label {
			on = append(on, m)
		}
	}
	switch {
	case len(on) == 0:
		return "", fmt.Sprintf("seriesQuery: no %s matcher: the rule serves every namespace", label)
	case len(on) > 1:
		return "", fmt.Sprintf("seriesQuery: %d matchers on %s (%s); a rule moves only with one %s=\"<namespace>\"", len(on), label, joinMatchers(on), label)
	}
	m := on[0]
	switch m.Type {
	case labels.MatchRegexp, labels.MatchNotRegexp:
		return "", fmt.Sprintf("seriesQuery: %s is a regular expression, which may select several namespaces", m)
	case labels.MatchNotEqual:
		if m.Value == "" {
			return "", fmt.Sprintf("seriesQuery: %s selects every namespace", m)
		}
		return "", fmt.Sprintf("seriesQuery: %s selects every namespace but one", m)
	}
	if m.Value == "" {
		return "", fmt.Sprintf("seriesQuery: %s selects series without a namespace", m)
	}
	if errs := validation.IsDNS1123Label(m.Value); len(errs) > 0 {
		return "", fmt.Sprintf("seriesQuery: %s: %q is not a namespace name: %s", m, m.Value, strings.Join(errs, "; "))
	}
	return m.Value, ""
}

func joinMatchers(ms []*labels.Matcher) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return strings.Join(s, ", ")
}

// clusterScoped reports whether gr is a resource the mapper knows as
// cluster-scoped, other than namespaces (a namespace's own metrics are
// about the MetricRule's namespace).
func clusterScoped(mapper apimeta.RESTMapper, gr config.GroupResource) bool {
	gvr, err := mapper.ResourceFor(schema.GroupVersionResource{Group: gr.Group, Resource: gr.Resource})
	if err != nil {
		return false // rules.Compile reports it
	}
	if gvr.Group == "" && gvr.Resource == "namespaces" {
		return false
	}
	gvk, err := mapper.KindFor(gvr)
	if err != nil {
		return false
	}
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return false
	}
	return mapping.Scope.Name() == apimeta.RESTScopeNameRoot
}

// selectorParser parses seriesQuery as adapter/config does.
var selectorParser = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
