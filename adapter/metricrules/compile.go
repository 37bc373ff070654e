package metricrules

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	apimeta "k8s.io/apimachinery/pkg/api/meta"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// Env is what compiling a MetricRule needs from Gantry: the cluster's
// resources, the backends Gantry has, and the admin's choices. The
// webhook and the controller compile with the same Env, so that a
// resource the webhook admits is one the controller accepts.
type Env struct {
	Mapper apimeta.RESTMapper
	// Sources are the backends a rule may run on, by the name a rule's
	// source or backend gives (prometheus, loki, local, and the config
	// file's named backends): those Gantry has.
	Sources []string
	// Backends are the config file's named backends; only their names and
	// types are read, so that a rule's backend: is checked with the config
	// file's messages.
	Backends []config.Backend
	// AllowedBackends are the sources MetricRules may use; nil allows
	// every one of Sources.
	AllowedBackends []string
	// NamespaceLabel is the label every selector of a rule is confined
	// with (--metricrule-namespace-label).
	NamespaceLabel string
}

// Compiled is a MetricRule ready to discover and serve.
type Compiled struct {
	Custom, External []*rules.Rule
}

// Entries counts the rule entries, as the per-namespace bound does.
func (c *Compiled) Entries() int { return len(c.Custom) + len(c.External) }

// Refusal says why a MetricRule is not served: a condition reason and
// every problem, each naming the field ("spec.rules[0].metricsQuery: ...").
type Refusal struct {
	Reason   string
	Problems []string
}

// Message is the first problem: the status' short message.
func (r *Refusal) Message() string {
	if len(r.Problems) == 0 {
		return r.Reason
	}
	return r.Problems[0]
}

// Full is every problem, one after the other: the Accepted condition's
// message and the webhook's denial.
func (r *Refusal) Full() string { return strings.Join(r.Problems, "; ") }

// fileName is what the config parser calls a MetricRule in its messages;
// Compile takes it off again.
func fileName(namespace, name string) string {
	return fmt.Sprintf("MetricRule %s/%s", namespace, name)
}

// invalidBackendURL stands for a named backend's URL when its entry is
// handed to the config parser: a MetricRule's rules are checked against
// the backends' names and types, never their addresses.
const invalidBackendURL = "http://backend.invalid"

// Compile checks and compiles a MetricRule's spec for namespace: the
// config file's checks and messages, then Gantry's backends and the
// admin's choice of them, then rules.Compile, and last the confinement of
// every selector to the namespace. It reports every problem at once.
func Compile(namespace, name string, spec map[string]any, env *Env) (*Compiled, *Refusal) {
	invalid := &Refusal{Reason: ReasonInvalid}
	notAllowed := &Refusal{Reason: ReasonBackendNotAllowed}
	// The config parser reads what is left; the admin's parts of the file
	// are refused here, with the reason.
	parsed := map[string]any{}
	keys := make([]string, 0, len(spec))
	for k := range spec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "resourceRules":
			invalid.add("spec.resourceRules: not allowed in a MetricRule: metrics.k8s.io is served from Gantry's cluster config only")
		case "backends":
			invalid.add("spec.backends: not allowed in a MetricRule: backends are defined in Gantry's cluster config; name one with backend:")
		default:
			parsed[k] = spec[k]
		}
	}
	if len(env.Backends) > 0 {
		bs := make([]map[string]any, 0, len(env.Backends))
		for _, b := range env.Backends {
			bs = append(bs, map[string]any{"name": b.Name, "type": b.Type, "url": invalidBackendURL})
		}
		parsed["backends"] = bs
	}
	data, err := marshalSpec(parsed)
	if err != nil {
		invalid.add(fmt.Sprintf("spec: %v", err))
		return nil, invalid
	}
	file := fileName(namespace, name)
	cfg, err := config.Parse(data, file)
	if err != nil {
		names := displayNames(data)
		for _, e := range flatten(err) {
			invalid.add(sampleNamespace(specMessage(e.Error(), file, names), namespace))
		}
		return nil, invalid
	}
	if len(cfg.Rules) == 0 && len(cfg.ExternalRules) == 0 {
		invalid.add("spec: no rules or externalRules: a MetricRule needs at least one rule")
		return nil, invalid
	}

	out := &Compiled{}
	compile := func(section string, r config.DiscoveryRule, external bool) *rules.Rule {
		src := r.SourceOrDefault()
		field := "metricsQuery"
		switch {
		case r.Backend != "":
			field = "backend"
		case r.Source != "":
			field = "source"
		case r.LogQLQuery != "":
			field = "logqlQuery"
		}
		if !slices.Contains(env.Sources, src) {
			invalid.add(fmt.Sprintf("%s.%s: Gantry has no %s backend to run it on (backends: %s)", section, field, src, strings.Join(env.Sources, ", ")))
			return nil
		}
		if env.AllowedBackends != nil && !slices.Contains(env.AllowedBackends, src) {
			notAllowed.add(fmt.Sprintf("%s.%s: MetricRules may not use the %s backend (allowed: %s)", section, field, src, strings.Join(env.AllowedBackends, ", ")))
			return nil
		}
		rule, err := rules.Compile(section, r, external, env.Mapper)
		if err != nil {
			for _, e := range flatten(err) {
				invalid.add(joinField(section, strings.TrimPrefix(e.Error(), section+": ")))
			}
			return nil
		}
		rule.ID = fmt.Sprintf("%s %s (%s)", file, section, r.DisplayName())
		if err := rule.Confine(env.NamespaceLabel, namespace); err != nil {
			invalid.add(joinField(section, strings.TrimPrefix(err.Error(), rule.ID+": ")))
			return nil
		}
		return rule
	}
	for i, r := range cfg.Rules {
		if rule := compile(fmt.Sprintf("spec.rules[%d]", i), r, false); rule != nil {
			out.Custom = append(out.Custom, rule)
		}
	}
	for i, r := range cfg.ExternalRules {
		if rule := compile(fmt.Sprintf("spec.externalRules[%d]", i), r, true); rule != nil {
			out.External = append(out.External, rule)
		}
	}
	switch {
	case len(invalid.Problems) > 0:
		invalid.Problems = append(invalid.Problems, notAllowed.Problems...)
		return nil, invalid
	case len(notAllowed.Problems) > 0:
		return nil, notAllowed
	}
	return out, nil
}

func (r *Refusal) add(problem string) { r.Problems = append(r.Problems, problem) }

// marshalSpec writes the spec as the config parser reads it, with rules
// before externalRules (as a config file has them, so that problems come
// in that order) and any other key after them.
func marshalSpec(spec map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(spec))
	for k := range spec {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		switch k {
		case "rules":
			return 0
		case "externalRules":
			return 1
		}
		return 2
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := rank(a) - rank(b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vj, err := json.Marshal(spec[k])
		if err != nil {
			return nil, err
		}
		b.Write(kj)
		b.WriteByte(':')
		b.Write(vj)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// flatten lists the errors errors.Join joined, each once.
func flatten(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		out = append(out, e)
	}
	walk(err)
	return out
}

// displayNames are the names the config parser gives each rule in its
// messages ("rules[0] (http_requests)"), by section, read the same way.
func displayNames(data []byte) map[string]string {
	var c struct {
		Rules         []config.DiscoveryRule `yaml:"rules"`
		ExternalRules []config.DiscoveryRule `yaml:"externalRules"`
	}
	_ = yaml.Unmarshal(data, &c) // best effort, as the parser's own names are
	names := map[string]string{}
	for i, r := range c.Rules {
		names[fmt.Sprintf("rules[%d]", i)] = r.DisplayName()
	}
	for i, r := range c.ExternalRules {
		names[fmt.Sprintf("externalRules[%d]", i)] = r.DisplayName()
	}
	return names
}

var (
	// fileLine is the file name's line number (the JSON has one line).
	fileLine = regexp.MustCompile(`^:[0-9]+`)
	// section is a rule section with the name the parser gave it, when
	// displayNames could not tell it.
	section = regexp.MustCompile(`^((?:rules|externalRules|backends)\[[0-9]+\]) \(.*?\)(?:: |$)`)
	// fieldPath is a field path at the start of a message.
	fieldPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\]|\.[A-Za-z_][A-Za-z0-9_]*)*: `)
)

// specMessage turns a config parser message about a MetricRule,
// "MetricRule a/b:1: rules[0] (x): metricsQuery: what", into one about the
// object's field: "spec.rules[0].metricsQuery: what".
func specMessage(msg, file string, names map[string]string) string {
	msg = strings.TrimPrefix(msg, file)
	msg = fileLine.ReplaceAllString(msg, "")
	msg = strings.TrimPrefix(msg, ": ")
	if rest, ok := strings.CutPrefix(msg, "top level: "); ok {
		return joinField("spec", rest)
	}
	for sec, name := range names {
		if rest, ok := strings.CutPrefix(msg, sec+" ("+name+")"); ok {
			return joinField("spec."+sec, strings.TrimPrefix(rest, ": "))
		}
	}
	if m := section.FindStringSubmatch(msg); m != nil {
		return joinField("spec."+m[1], msg[len(m[0]):])
	}
	return joinField("spec", msg)
}

// sampleNamespace writes the MetricRule's namespace into the sample
// request a rendered query is shown with ("(rendered: ...)"): the config
// parser renders templates for a request in namespace "default", which in
// a team's MetricRule would read as if its query named that namespace.
func sampleNamespace(msg, namespace string) string {
	before, rendered, ok := strings.Cut(msg, "(rendered: ")
	if !ok {
		return msg
	}
	return before + "(rendered: " + strings.ReplaceAll(rendered, `namespace="default"`, "namespace="+strconv.Quote(namespace))
}

// joinField puts a message about a field of section under section:
// ("spec.rules[0]", "metricsQuery: what") is
// "spec.rules[0].metricsQuery: what".
func joinField(section, msg string) string {
	if msg == "" {
		return section
	}
	if fieldPath.MatchString(msg) {
		if strings.HasPrefix(msg, "[") {
			return section + msg
		}
		return section + "." + msg
	}
	return section + ": " + msg
}

// errNotCompiled is the webhook's error for an object it cannot read.
var errNotCompiled = errors.New("not a MetricRule")
