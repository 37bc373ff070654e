package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// Duration is a Prometheus-style duration ("30s", "2m", "1h") in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Prometheus duration string.
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	var s string
	if err := node.Decode(&s); err != nil {
		return fmt.Errorf("expected a duration such as \"1m\"")
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("expected a duration such as \"1m\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in Prometheus form.
func (d Duration) MarshalYAML() (any, error) {
	return model.Duration(d).String(), nil
}

// Load reads and validates a rule file. The error, if any, lists every problem
// found, each prefixed with the file name.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a rule file's contents; file names it in errors.
func Parse(data []byte, file string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg := &Config{}
	if root.Kind == 0 { // empty file
		return cfg, nil
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	var errs []error
	for _, e := range strictCheck(doc, reflect.TypeOf(Config{}), "") {
		errs = append(errs, fmt.Errorf("%s:%s", file, e))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := doc.Decode(cfg); err != nil {
		return nil, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cfg.applyDefaults()
	if err := cfg.Validate(file); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.ResourceRules != nil && c.ResourceRules.Window == 0 {
		c.ResourceRules.Window = Duration(DefaultResourceWindow)
	}
}

// strictCheck walks a YAML node against the Go type it will decode into and
// reports unknown fields and wrong kinds with their line and path, which the
// yaml package cannot do for nested nodes.
func strictCheck(n *yaml.Node, t reflect.Type, path string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return nil
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()) {
		var probe = reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := n.Decode(probe); err != nil {
			return []string{fmt.Sprintf("%d: %s: %v", n.Line, path, err)}
		}
		return nil
	}
	where := func() string {
		if path == "" {
			return "top level"
		}
		return path
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []string{fmt.Sprintf("%d: %s: expected a mapping, got %s", n.Line, where(), kindName(n))}
		}
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, key.Value)
			if !ok {
				out = append(out, fmt.Sprintf("%d: %s: unknown field %q (known: %s)", key.Line, where(), key.Value, strings.Join(knownFields(t), ", ")))
				continue
			}
			out = append(out, strictCheck(val, f.Type, joinPath(path, key.Value))...)
		}
		return out
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []string{fmt.Sprintf("%d: %s: expected a list, got %s", n.Line, where(), kindName(n))}
		}
		var out []string
		for i, item := range n.Content {
			out = append(out, strictCheck(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []string{fmt.Sprintf("%d: %s: expected a mapping, got %s", n.Line, where(), kindName(n))}
		}
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, strictCheck(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value))...)
		}
		return out
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return []string{fmt.Sprintf("%d: %s: expected a string, got %s", n.Line, where(), kindName(n))}
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return []string{fmt.Sprintf("%d: %s: expected true or false, got %q", n.Line, where(), n.Value)}
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func knownFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// Validate checks what the schema alone cannot: selectors and queries parse,
// regular expressions compile, templates render. Every problem is reported,
// each as "file: rules[i] (name): field: what is wrong".
func (c *Config) Validate(file string) error {
	var errs []error
	for i, r := range c.Rules {
		for _, e := range r.validate(false) {
			errs = append(errs, fmt.Errorf("%s: rules[%d] (%s): %w", file, i, r.DisplayName(), e))
		}
	}
	for i, r := range c.ExternalRules {
		for _, e := range r.validate(true) {
			errs = append(errs, fmt.Errorf("%s: externalRules[%d] (%s): %w", file, i, r.DisplayName(), e))
		}
	}
	if rr := c.ResourceRules; rr != nil {
		for _, res := range []struct {
			name string
			rule ResourceRule
		}{{"cpu", rr.CPU}, {"memory", rr.Memory}} {
			for _, e := range res.rule.validate() {
				errs = append(errs, fmt.Errorf("%s: resourceRules.%s: %w", file, res.name, e))
			}
		}
		if rr.Window < 0 {
			errs = append(errs, fmt.Errorf("%s: resourceRules: window: must be positive", file))
		}
	}
	return errors.Join(errs...)
}

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
		errs = append(errs, errors.New("seriesQuery: required: a series selector such as 'http_requests_total{namespace!=\"\"}'"))
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
	if strings.TrimSpace(r.MetricsQuery) == "" {
		errs = append(errs, errors.New("metricsQuery: required: a query template such as 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'"))
	} else if err := checkQueryTemplate(r.MetricsQuery, external); err != nil {
		errs = append(errs, fmt.Errorf("metricsQuery: %w", err))
	}
	if r.Window < 0 {
		errs = append(errs, errors.New("window: must be positive"))
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
	for label, gr := range m.Overrides {
		if !model.LabelName(label).IsValidLegacy() {
			errs = append(errs, fmt.Errorf("%s.overrides: %q is not a valid label name", field, label))
		}
		if gr.Resource == "" {
			errs = append(errs, fmt.Errorf("%s.overrides.%s.resource: required, e.g. {resource: \"pod\"}", field, label))
		}
	}
	return errs
}

func (r ResourceRule) validate() []error {
	var errs []error
	for _, q := range []struct{ field, text string }{{"containerQuery", r.ContainerQuery}, {"nodeQuery", r.NodeQuery}} {
		if strings.TrimSpace(q.text) == "" {
			errs = append(errs, fmt.Errorf("%s: required", q.field))
			continue
		}
		if err := checkQueryTemplate(q.text, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q.field, err))
		}
	}
	if r.ContainerLabel == "" {
		errs = append(errs, errors.New("containerLabel: required: the label holding the container name, e.g. \"container\""))
	} else if !model.LabelName(r.ContainerLabel).IsValidLegacy() {
		errs = append(errs, fmt.Errorf("containerLabel: %q is not a valid label name", r.ContainerLabel))
	}
	errs = append(errs, r.Resources.validate("resources")...)
	return errs
}

// promql parses selectors and queries; experimental functions are accepted
// because Prometheus may have them enabled.
var promql = parser.NewParser(parser.Options{EnableExperimentalFunctions: true})

// TemplateDelims are the delimiters of every template in a rule file.
var TemplateDelims = [2]string{"<<", ">>"}

// QueryArgs are the values a metricsQuery template sees.
type QueryArgs struct {
	Series            string
	LabelMatchers     string
	LabelValuesByName map[string]string
	GroupBy           string
	GroupBySlice      []string
}

// ParseQueryTemplate parses a metricsQuery (or containerQuery/nodeQuery).
func ParseQueryTemplate(text string) (*template.Template, error) {
	t, err := template.New("metricsQuery").Delims(TemplateDelims[0], TemplateDelims[1]).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("not a valid template: %v", strings.TrimPrefix(err.Error(), "template: metricsQuery:"))
	}
	return t, nil
}

// checkQueryTemplate renders the template with sample arguments and requires
// the result to parse as PromQL.
func checkQueryTemplate(text string, external bool) error {
	t, err := ParseQueryTemplate(text)
	if err != nil {
		return err
	}
	args := QueryArgs{
		Series:            "sample_metric",
		LabelMatchers:     `namespace="default",pod=~"a|b"`,
		LabelValuesByName: map[string]string{"namespace": "default", "pod": "a|b"},
		GroupBy:           "pod",
		GroupBySlice:      []string{"pod"},
	}
	if external {
		args.LabelMatchers = `namespace="default"`
		args.LabelValuesByName = map[string]string{"namespace": "default"}
		args.GroupBy, args.GroupBySlice = "", nil
	}
	var b strings.Builder
	if err := t.Execute(&b, args); err != nil {
		return fmt.Errorf("template does not render: %v", err)
	}
	if _, err := promql.ParseExpr(b.String()); err != nil {
		return fmt.Errorf("rendered query does not parse: %v (rendered: %s)", firstLine(err.Error()), b.String())
	}
	return nil
}

func checkLabelTemplate(text string) error {
	t, err := template.New("template").Delims(TemplateDelims[0], TemplateDelims[1]).Option("missingkey=error").Parse(text)
	if err != nil {
		return fmt.Errorf("not a valid template: %v", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ Group, Resource string }{"apps", "deployment"}); err != nil {
		return fmt.Errorf("template does not render with .Group and .Resource: %v", err)
	}
	if !strings.Contains(text, ".Resource") {
		return errors.New("must use <<.Resource>>")
	}
	if !model.LabelName(b.String()).IsValidLegacy() {
		return fmt.Errorf("renders %q, not a valid label name", b.String())
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
