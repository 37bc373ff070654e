package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
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
