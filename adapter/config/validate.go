package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// Validate checks what the schema alone cannot: selectors and queries parse,
// regular expressions compile, templates render. Every problem is reported,
// each as "file: rules[i] (name): field: what is wrong".
func (c *Config) Validate(file string) error {
	return c.validate(file, nil)
}

// validate is Validate. In the sections (as named by splitSection) that
// have schema problems, a missing required field is not reported: the schema
// problem (a misspelt or malformed field) already explains it.
func (c *Config) validate(file string, schemaProblems map[string]bool) error {
	var errs []error
	keep := func(section string, e error) bool {
		var m *missingError
		return !schemaProblems[section] || !errors.As(e, &m)
	}
	for i, r := range c.Rules {
		for _, e := range r.validate(false) {
			if keep(fmt.Sprintf("rules[%d]", i), e) {
				errs = append(errs, fmt.Errorf("%s: rules[%d] (%s): %w", file, i, r.DisplayName(), e))
			}
		}
	}
	for i, r := range c.ExternalRules {
		for _, e := range r.validate(true) {
			if keep(fmt.Sprintf("externalRules[%d]", i), e) {
				errs = append(errs, fmt.Errorf("%s: externalRules[%d] (%s): %w", file, i, r.DisplayName(), e))
			}
		}
	}
	errs = append(errs, c.validateBackends(file)...)
	if rr := c.ResourceRules; rr != nil {
		for _, res := range []struct {
			name string
			rule ResourceRule
		}{{"cpu", rr.CPU}, {"memory", rr.Memory}} {
			for _, e := range res.rule.validate() {
				if keep("resourceRules."+res.name, e) {
					errs = append(errs, fmt.Errorf("%s: resourceRules.%s: %w", file, res.name, e))
				}
			}
		}
		if rr.Window < 0 {
			errs = append(errs, fmt.Errorf("%s: resourceRules: window: must be positive", file))
		}
	}
	return errors.Join(errs...)
}

// missingError is a required field left empty.
type missingError struct{ field, example string }

func (e *missingError) Error() string { return e.field + ": required: " + e.example }

func missing(field, example string) error { return &missingError{field, example} }

// DisplayName is how errors and logs refer to a rule: the metric name it
// exposes when that is fixed, else the series it selects.
func (r DiscoveryRule) DisplayName() string {
	if r.Name.As != "" && !strings.Contains(r.Name.As, "$") {
		return r.Name.As
	}
	if sel, err := promql.ParseMetricSelector(r.SeriesQuery); err == nil {
		for _, m := range sel {
			if m.Name == model.MetricNameLabel && m.Type.String() == "=" {
				return m.Value
			}
		}
	}
	if r.Name.Matches != "" {
		return r.Name.Matches
	}
	if r.SeriesQuery != "" {
		return r.SeriesQuery
	}
	return "unnamed"
}

func (r DiscoveryRule) validate(external bool) []error {
	var errs []error
	if strings.TrimSpace(r.SeriesQuery) == "" {
		errs = append(errs, missing("seriesQuery", `a series selector such as 'http_requests_total{namespace!=""}'`))
	} else if _, err := promql.ParseMetricSelector(r.SeriesQuery); err != nil {
		errs = append(errs, fmt.Errorf("seriesQuery: not a series selector: %v", err))
	}
	for i, f := range r.SeriesFilters {
		switch {
		case f.Is != "" && f.IsNot != "":
			errs = append(errs, fmt.Errorf("seriesFilters[%d]: set either is or isNot, not both", i))
		case f.Is == "" && f.IsNot == "":
			errs = append(errs, fmt.Errorf("seriesFilters[%d]: expected is or isNot", i))
		default:
			expr, field := f.Is, "is"
			if f.IsNot != "" {
				expr, field = f.IsNot, "isNot"
			}
			if _, err := regexp.Compile(expr); err != nil {
				errs = append(errs, fmt.Errorf("seriesFilters[%d].%s: not a regular expression: %v", i, field, err))
			}
		}
	}
	if _, _, err := r.Name.Compile(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, r.Resources.validate("resources")...)
	switch {
	case r.LogQLQuery != "" && r.MetricsQuery != "":
		errs = append(errs, errors.New("metricsQuery, logqlQuery: set one of them, not both"))
	case r.LogQLQuery != "":
		errs = append(errs, r.validateLogQL(external)...)
	case strings.TrimSpace(r.MetricsQuery) == "":
		errs = append(errs, missing("metricsQuery", "a query template such as 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'"))
	default:
		if err := checkQueryTemplate(r.MetricsQuery, external); err != nil {
			errs = append(errs, fmt.Errorf("metricsQuery: %w", err))
		}
		if r.Source != "" && r.Source != SourcePrometheus && r.Source != SourceLocal {
			if r.Source == SourceLoki {
				errs = append(errs, fmt.Errorf("source: %q runs a logqlQuery; a metricsQuery (PromQL) runs on %q or %q", r.Source, SourcePrometheus, SourceLocal))
			} else {
				errs = append(errs, fmt.Errorf("source: unknown backend %q: expected %q, %q or %q", r.Source, SourcePrometheus, SourceLocal, SourceLoki))
			}
		}
	}
	if r.Window < 0 {
		errs = append(errs, errors.New("window: must be positive"))
	}
	return errs
}

// validateLogQL checks the fields of a rule whose query is LogQL.
func (r DiscoveryRule) validateLogQL(external bool) []error {
	var errs []error
	if r.Source != "" && r.Source != SourceLoki {
		errs = append(errs, fmt.Errorf("source: logqlQuery rules run on %q, not %q", SourceLoki, r.Source))
	}
	// Log streams have no metric name to rewrite: the rule names its metric.
	if r.Name.As == "" || strings.Contains(r.Name.As, "$") {
		errs = append(errs, missing("name.as", "the metric's fixed name, such as 'web_errors_per_second' (log streams have no series name to derive one from)"))
	}
	if r.Name.Matches != "" {
		errs = append(errs, errors.New("name.matches: not used by logqlQuery rules (log streams have no series name); remove it"))
	}
	if len(r.SeriesFilters) > 0 {
		errs = append(errs, errors.New("seriesFilters: not used by logqlQuery rules (log streams have no series name); remove them"))
	}
	if err := CheckLogQLTemplate(r.LogQLQuery, external); err != nil {
		errs = append(errs, fmt.Errorf("logqlQuery: %w", err))
	}
	return errs
}

// Compile returns the name regexp and the replacement, with
// prometheus-adapter's defaults.
func (n NameMapping) Compile() (*regexp.Regexp, string, error) {
	expr := n.Matches
	if expr == "" {
		expr = ".*"
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, "", fmt.Errorf("name.matches: not a regular expression: %v", err)
	}
	as := n.As
	if as == "" {
		switch re.NumSubexp() {
		case 0:
			as = "$0"
		case 1:
			as = "$1"
		default:
			return nil, "", fmt.Errorf("name.as: required when name.matches %q has %d capture groups", n.Matches, re.NumSubexp())
		}
	}
	return re, as, nil
}

func (m ResourceMapping) validate(field string) []error {
	var errs []error
	if m.Template != "" {
		if err := checkLabelTemplate(m.Template); err != nil {
			errs = append(errs, fmt.Errorf("%s.template: %w", field, err))
		}
	}
	for _, label := range slices.Sorted(maps.Keys(m.Overrides)) {
		gr := m.Overrides[label]
		if !model.LabelName(label).IsValidLegacy() {
			errs = append(errs, fmt.Errorf("%s.overrides: %q is not a valid label name", field, label))
		}
		if gr.Resource == "" {
			errs = append(errs, missing(field+".overrides."+label+".resource", `a resource such as {resource: "pod"}`))
		}
	}
	return errs
}

func (r ResourceRule) validate() []error {
	var errs []error
	for _, q := range []struct{ field, text string }{{"containerQuery", r.ContainerQuery}, {"nodeQuery", r.NodeQuery}} {
		if strings.TrimSpace(q.text) == "" {
			errs = append(errs, missing(q.field, "a query template such as 'sum by (<<.GroupBy>>) (...{<<.LabelMatchers>>})'"))
			continue
		}
		if err := checkQueryTemplate(q.text, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q.field, err))
		}
	}
	if r.ContainerLabel == "" {
		errs = append(errs, missing("containerLabel", `the label holding the container name, such as "container"`))
	} else if !model.LabelName(r.ContainerLabel).IsValidLegacy() {
		errs = append(errs, fmt.Errorf("containerLabel: %q is not a valid label name", r.ContainerLabel))
	}
	errs = append(errs, r.Resources.validate("resources")...)
	return errs
}

// promql parses selectors and queries; experimental functions are accepted
// because Prometheus may have them enabled.
var promql = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
