package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
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
	if node.Kind != yaml.ScalarNode || node.Decode(&s) != nil {
		return fmt.Errorf("expected a duration such as \"1m\", got %s", kindName(node))
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
// Problems found by the strict schema check (unknown fields, wrong kinds,
// duplicate keys, bad durations) carry the line number; every problem in the
// file is reported, each rule once: a rule with schema problems is not
// validated further, so a typo does not also show up as a missing field.
func Parse(data []byte, file string) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, syntaxError(file, data, err)
	}
	cfg := &Config{}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind == 0 || doc.Kind == yaml.DocumentNode || doc.Tag == "!!null" { // empty file, or only comments
		return cfg, nil
	}
	if doc.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: top level: expected a mapping with rules, externalRules or resourceRules, got %s", file, doc.Line, kindName(doc))
	}
	// strictCheck also removes what it reports from the tree, so that the
	// rest decodes and can be validated.
	c := &checker{walking: map[*yaml.Node]bool{}}
	problems, _ := c.strictCheck(doc, reflect.TypeOf(Config{}), nil)
	if c.exceeded != nil {
		// The rest would walk the same expansion again.
		p := c.exceeded
		context, _ := splitSection(p.path)
		if context == "" {
			context = "top level"
		}
		return nil, fmt.Errorf("%s:%d: %s: %s", file, p.line, context, p.msg)
	}
	var errs []error
	schemaProblems := map[string]bool{}
	names := map[string]string{}
	reported := map[string]bool{}
	for _, p := range problems {
		section, field := splitSection(p.path)
		// An anchor merged more than once into a rule repeats its problems.
		key := fmt.Sprintf("%d\x00%q\x00%s", p.line, p.path, p.msg)
		if reported[key] {
			continue
		}
		reported[key] = true
		schemaProblems[section] = true
		context := section
		name, ok := names[section]
		if !ok {
			name = sectionName(doc, section)
			names[section] = name
		}
		if name != "" {
			context += " (" + name + ")"
		}
		if context == "" {
			context = "top level"
		}
		if field != "" {
			context += ": " + field
		}
		errs = append(errs, fmt.Errorf("%s:%d: %s: %s", file, p.line, context, p.msg))
	}
	if err := doc.Decode(cfg); err != nil {
		// Not expected: strictCheck removed whatever does not decode.
		return nil, errors.Join(append(errs, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: ")))...)
	}
	cfg.applyDefaults()
	if err := cfg.validate(file, schemaProblems); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError formats a YAML syntax error of data as "file:line: what",
// with the line at fault. The YAML parser's own line is often another:
// for an error of its parser (rather than its scanner) it names where the
// enclosing mapping or list starts, counted from 0, not the line it could
// not read (go-yaml/yaml#1066), so a double-quoted query holding double
// quotes is reported at the top of its rule, or of the file. The line at
// fault is where the error appears: the parser reads the file from the
// start, so the shortest prefix of whole lines that fails with the same
// error ends on it. A bisection finds one such boundary in a few parses.
func syntaxError(file string, data []byte, err error) error {
	msg := err.Error()
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", file, strings.TrimPrefix(msg, "yaml: "))
	}
	what := msg[len(m[0]):]
	ends := lineEnds(data)
	fails := func(lines int) bool {
		var n yaml.Node
		err := yaml.Unmarshal(data[:ends[lines-1]], &n)
		return err != nil && err.Error() == msg
	}
	// fails(len(ends)) holds: that prefix is data. An empty prefix parses.
	lo, hi := 0, len(ends)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	line := data[0:ends[hi-1]]
	if hi > 1 {
		line = line[ends[hi-2]:]
	}
	return fmt.Errorf("%s:%d: %s%s", file, hi, what, quoteHint(what, string(line)))
}

// lineEnds are the offsets just past each line of data, the last one
// len(data) (with or without a final newline).
func lineEnds(data []byte) []int {
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	return ends
}

// strayQuote finds a quoted value that goes on after its closing quote,
// such as metricsQuery: "sum(x{a!="b"}[2m])", which YAML reads as the value
// "sum(x{a!=" followed by text it cannot place.
var strayQuote = regexp.MustCompile(`:\s+("[^"\\]*"|'[^']*')[^\s#,}\]'"]`)

// quoteHint explains the most common cause of a key YAML does not find, a
// query quoted with the quotes it holds, when the line at fault looks so.
func quoteHint(what, line string) string {
	if what != "did not find expected key" {
		return ""
	}
	m := strayQuote.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	if m[1][0] == '"' {
		return ` (a double-quoted value ends at the next "; single-quote a value that holds ", writing each ' in it as '')`
	}
	return ` (a single-quoted value ends at the next '; write each ' in it as '')`
}

func (c *Config) applyDefaults() {
	if c.ResourceRules != nil && c.ResourceRules.Window == 0 {
		c.ResourceRules.Window = Duration(DefaultResourceWindow)
	}
}

// problem is a schema violation at a YAML path such as
// ["rules", "[3]", "resources", "overrides", "pod", "resource"].
type problem struct {
	line int
	path []string
	msg  string
}

// splitSection splits a path into the part of the file it belongs to
// ("rules[3]", "externalRules[0]", "resourceRules.cpu", "resourceRules", or ""
// for the top level) and the field within it ("seriesFilters[0].is").
func splitSection(path []string) (section, field string) {
	n := 0
	switch {
	case len(path) >= 2 && (path[0] == "rules" || path[0] == "externalRules") && strings.HasPrefix(path[1], "["):
		n = 2
	case len(path) >= 2 && path[0] == "resourceRules" && (path[1] == "cpu" || path[1] == "memory"):
		n = 2
	case len(path) >= 1:
		n = 1
	}
	return joinPath(path[:n]), joinPath(path[n:])
}

func joinPath(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// sectionName is the display name of the rule a section names, decoded
// leniently from the YAML so that a rule with schema problems is still
// called by its name.
func sectionName(doc *yaml.Node, section string) string {
	key, idx, ok := strings.Cut(section, "[")
	if !ok || (key != "rules" && key != "externalRules") {
		return ""
	}
	var i int
	if _, err := fmt.Sscanf(idx, "%d]", &i); err != nil {
		return ""
	}
	for k := 0; k+1 < len(doc.Content); k += 2 {
		if doc.Content[k].Value != key {
			continue
		}
		seq := doc.Content[k+1]
		if seq.Kind != yaml.SequenceNode || i >= len(seq.Content) {
			return ""
		}
		var r DiscoveryRule
		_ = seq.Content[i].Decode(&r) // best effort: fields that do not decode stay empty
		return r.DisplayName()
	}
	return ""
}

// maxCheckedNodes bounds the nodes strictCheck walks. Aliases and merge keys
// let a few hundred bytes of YAML stand for billions of nodes; a real rule
// file has a few thousand.
const maxCheckedNodes = 100_000

// checker is the state of one strictCheck walk.
type checker struct {
	// walking holds the mappings and lists being walked: an alias to one
	// of them (such as a rule merging itself with "<<: *rule") would never
	// end.
	walking map[*yaml.Node]bool
	nodes   int
	// exceeded is set once more than maxCheckedNodes were walked.
	exceeded *problem
}

// strictCheck walks a YAML node against the Go type it will decode into and
// reports unknown fields, duplicate keys and wrong kinds with their line and
// path, which the yaml package cannot do for nested nodes. It removes unknown
// and repeated keys from mappings, and bad reports whether n itself cannot be
// decoded, for the caller to replace it: what is left then decodes.
func (c *checker) strictCheck(n *yaml.Node, t reflect.Type, path []string) (problems []problem, bad bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	line := n.Line // of the use, for an alias
	alias := ""
	if n.Kind == yaml.AliasNode {
		alias = n.Value
		n = n.Alias
	}
	if c.exceeded != nil {
		return nil, true
	}
	if c.nodes++; c.nodes > maxCheckedNodes {
		c.exceeded = &problem{line: line, path: path, msg: fmt.Sprintf("the document expands to more than %d nodes through aliases and merge keys", maxCheckedNodes)}
		return nil, true
	}
	if n.Tag == "!!null" {
		return nil, false
	}
	wrong := func(format string, args ...any) ([]problem, bool) {
		return []problem{{line: line, path: path, msg: fmt.Sprintf(format, args...)}}, true
	}
	if c.walking[n] {
		return wrong("alias *%s refers to a mapping or list that contains it", alias)
	}
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		c.walking[n] = true
		defer delete(c.walking, n)
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()) {
		probe := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := n.Decode(probe); err != nil {
			return wrong("%v", err)
		}
		return nil, false
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if n.Kind != yaml.MappingNode {
			return wrong("expected a mapping, got %s", kindName(n))
		}
		var out []problem
		seen := map[string]int{}
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if first, dup := seen[key.Value]; dup {
				out = append(out, problem{line: key.Line, path: append(clone(path), key.Value), msg: fmt.Sprintf("defined twice (first at line %d)", first)})
				continue
			}
			if key.Tag == "!!merge" {
				ps, bad := c.checkMerge(val, t, path)
				out = append(out, ps...)
				if !bad {
					kept = append(kept, key, val)
				}
				continue
			}
			seen[key.Value] = key.Line
			valType := t
			if t.Kind() == reflect.Map {
				valType = t.Elem()
			} else if f, ok := fieldByTag(t, key.Value); ok {
				valType = f.Type
			} else {
				known := knownFields(t)
				msg := fmt.Sprintf("unknown field %q", key.Value)
				if s := suggest(key.Value, known); s != "" {
					msg += fmt.Sprintf(", did you mean %q?", s)
				}
				out = append(out, problem{line: key.Line, path: path, msg: msg + " (known fields: " + strings.Join(known, ", ") + ")"})
				continue
			}
			ps, bad := c.strictCheck(val, valType, append(clone(path), key.Value))
			out = append(out, ps...)
			if bad {
				val = nullNode(val)
			}
			kept = append(kept, key, val)
		}
		n.Content = kept
		return out, false
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrong("expected a list, got %s", kindName(n))
		}
		var out []problem
		for i, item := range n.Content {
			ps, bad := c.strictCheck(item, t.Elem(), append(clone(path), fmt.Sprintf("[%d]", i)))
			out = append(out, ps...)
			if bad {
				n.Content[i] = nullNode(item)
			}
		}
		return out, false
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return wrong("expected a string, got %s", kindName(n))
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return wrong("expected true or false, got %s", kindName(n))
		}
	}
	return nil, false
}

func nullNode(at *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: at.Line, Column: at.Column}
}

// checkMerge checks the mappings merged into a mapping with "<<: *anchor"
// (or a list of anchors) as part of that mapping; keys written next to the
// merge key override merged ones, so they are not duplicates. bad reports a
// merge value that is not a mapping or a list of them, or that merges a
// mapping into itself.
func (c *checker) checkMerge(n *yaml.Node, t reflect.Type, path []string) ([]problem, bool) {
	line := n.Line
	use := n
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return c.strictCheck(use, t, path)
	case yaml.SequenceNode:
		var out []problem
		anyBad := false
		for _, item := range n.Content {
			target := item
			if target.Kind == yaml.AliasNode {
				target = target.Alias
			}
			if target.Kind != yaml.MappingNode {
				return []problem{{line: line, path: path, msg: fmt.Sprintf("merge key \"<<\": expected a mapping or a list of mappings, got a list holding %s", kindName(target))}}, true
			}
			ps, bad := c.strictCheck(item, t, path)
			out = append(out, ps...)
			anyBad = anyBad || bad
		}
		return out, anyBad
	}
	return []problem{{line: line, path: path, msg: fmt.Sprintf("merge key \"<<\": expected a mapping or a list of mappings, got %s", kindName(n))}}, true
}

func clone(path []string) []string {
	return append([]string(nil), path...)
}

// suggest returns the known field closest to a misspelt one, if any is close.
func suggest(key string, known []string) string {
	best, bestDist := "", 3 // at most two edits away
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
		return nil, fmt.Errorf("not a valid template: %s", templateError(err))
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
	// Which labels LabelValuesByName holds depends on the rule's resources
	// and the request, so a lookup of a label the samples lack is not an
	// error here; fields that do not exist still are.
	t.Option("missingkey=zero")
	var b strings.Builder
	if err := t.Execute(&b, sampleArgs(external)); err != nil {
		return fmt.Errorf("template does not render: %s", templateError(err))
	}
	if strings.TrimSpace(b.String()) == "" {
		return errors.New("renders an empty query")
	}
	if _, err := promql.ParseExpr(b.String()); err != nil {
		return fmt.Errorf("rendered query does not parse: %v (rendered: %s)", firstLine(err.Error()), b.String())
	}
	return nil
}

// sampleArgs are the template values a query template is checked with: a
// request for two pods in a namespace, or an external one.
func sampleArgs(external bool) QueryArgs {
	if external {
		return QueryArgs{
			Series:            "sample_metric",
			LabelMatchers:     `namespace="default"`,
			LabelValuesByName: map[string]string{"namespace": "default"},
		}
	}
	return QueryArgs{
		Series:            "sample_metric",
		LabelMatchers:     `namespace="default",pod=~"a|b"`,
		LabelValuesByName: map[string]string{"namespace": "default", "pod": "a|b"},
		GroupBy:           "pod",
		GroupBySlice:      []string{"pod"},
	}
}

// CheckLogQLTemplate renders a logqlQuery template with sample arguments and
// checks what can be checked without a LogQL parser: the query is not empty,
// its brackets balance outside string literals, and it has a stream
// selector. Loki itself is the final judge (check-config --loki-url).
func CheckLogQLTemplate(text string, external bool) error {
	t, err := ParseQueryTemplate(text)
	if err != nil {
		return err
	}
	t.Option("missingkey=zero")
	var b strings.Builder
	if err := t.Execute(&b, sampleArgs(external)); err != nil {
		return fmt.Errorf("template does not render: %s", templateError(err))
	}
	return CheckLogQL(b.String())
}

// CheckLogQL is the structural check of a rendered LogQL query.
func CheckLogQL(q string) error {
	if strings.TrimSpace(q) == "" {
		return errors.New("renders an empty query")
	}
	var stack []rune
	closing := map[rune]rune{')': '(', ']': '[', '}': '{'}
	selector := false
	for i := 0; i < len(q); i++ {
		c := rune(q[i])
		switch c {
		case '"', '`':
			// Skip a string literal: escapes only in double quotes.
			j := i + 1
			for ; j < len(q) && rune(q[j]) != c; j++ {
				if c == '"' && q[j] == '\\' {
					j++
				}
			}
			if j >= len(q) {
				return fmt.Errorf("unterminated string literal at offset %d (rendered: %s)", i, q)
			}
			i = j
		case '(', '[', '{':
			if c == '{' {
				selector = true
			}
			stack = append(stack, c)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != closing[c] {
				return fmt.Errorf("unbalanced %q at offset %d (rendered: %s)", c, i, q)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q (rendered: %s)", stack[len(stack)-1], q)
	}
	if !selector {
		return fmt.Errorf("no stream selector such as {app=\"web\"} (rendered: %s)", q)
	}
	return nil
}

func checkLabelTemplate(text string) error {
	t, err := template.New("template").Delims(TemplateDelims[0], TemplateDelims[1]).Option("missingkey=error").Parse(text)
	if err != nil {
		return fmt.Errorf("not a valid template: %s", templateError(err))
	}
	// The template is also read backwards, to find the resource a label
	// names, so it may hold only text, one <<.Resource>> and at most one
	// <<.Group>>.
	count := map[string]int{}
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			field := n.Pipe.String()
			if field != ".Group" && field != ".Resource" {
				return fmt.Errorf("only <<.Group>> and <<.Resource>> may appear in a label template, found <<%s>>", field)
			}
			count[field]++
		default:
			return fmt.Errorf("only <<.Group>> and <<.Resource>> may appear in a label template, found %s", n)
		}
	}
	if count[".Resource"] != 1 || count[".Group"] > 1 {
		return errors.New("must use <<.Resource>> once, and <<.Group>> at most once")
	}
	var b strings.Builder
	if err := t.Execute(&b, struct{ Group, Resource string }{"apps", "deployment"}); err != nil {
		return fmt.Errorf("template does not render with .Group and .Resource: %s", templateError(err))
	}
	if !model.LabelName(b.String()).IsValidLegacy() {
		return fmt.Errorf("renders %q, not a valid label name", b.String())
	}
	return nil
}

var (
	templateParseError = regexp.MustCompile(`^template: [^:]*:(\d+): `)
	templateExecError  = regexp.MustCompile(`^template: [^:]*:(\d+):(\d+): executing "[^"]*" at `)
	templateFieldError = regexp.MustCompile(`can't evaluate field \w+ in type \S+$`)
)

// templateError rewrites a text/template error without the template's
// internal name: "line 1: unclosed action", "line 1, column 18: <.Labels>:
// can't evaluate field Labels".
func templateError(err error) string {
	msg := err.Error()
	if m := templateExecError.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("line %s, column %s: %s", m[1], m[2], msg[len(m[0]):])
	} else if m := templateParseError.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("line %s: %s", m[1], msg[len(m[0]):])
	}
	if templateFieldError.MatchString(msg) {
		if strings.Contains(msg, "config.QueryArgs") {
			msg += " (fields: Series, LabelMatchers, LabelValuesByName, GroupBy, GroupBySlice)"
		} else {
			msg += " (fields: Group, Resource)"
		}
	}
	return msg
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
