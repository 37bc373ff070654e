package migrate

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/adapter/config"
)

// MetricRule is one namespace's resource as the manifests write it.
type MetricRule struct {
	Namespace string
	Name      string
	Spec      Spec
}

// Spec is a MetricRule's spec: the rules that move, in file order.
type Spec struct {
	Rules         []specRule
	ExternalRules []specRule
}

// specRule is a rule that moves, with where it comes from (written as a
// comment above it).
type specRule struct {
	From string
	Rule config.DiscoveryRule
}

func newMetricRule(namespace, name string) *MetricRule {
	return &MetricRule{Namespace: namespace, Name: name}
}

// The manifest's shape. A rule is written with the config file's field
// names, leaving out what is unset, so that it reads as the rule it was;
// resources.namespaced is left out too: the MetricRule schema has no such
// field (a rule that moves is namespaced).
type (
	manifest struct {
		APIVersion string       `yaml:"apiVersion"`
		Kind       string       `yaml:"kind"`
		Metadata   manifestMeta `yaml:"metadata"`
		Spec       manifestSpec `yaml:"spec"`
	}
	manifestMeta struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	}
	manifestSpec struct {
		Rules         []manifestRule `yaml:"rules,omitempty"`
		ExternalRules []manifestRule `yaml:"externalRules,omitempty"`
	}
	manifestRule struct {
		SeriesQuery   string             `yaml:"seriesQuery"`
		SeriesFilters []manifestFilter   `yaml:"seriesFilters,omitempty"`
		Resources     *manifestResources `yaml:"resources,omitempty"`
		Name          *manifestName      `yaml:"name,omitempty"`
		MetricsQuery  string             `yaml:"metricsQuery,omitempty"`
		LogQLQuery    string             `yaml:"logqlQuery,omitempty"`
		Source        string             `yaml:"source,omitempty"`
		Backend       string             `yaml:"backend,omitempty"`
		Window        string             `yaml:"window,omitempty"`
	}
	manifestFilter struct {
		Is    string `yaml:"is,omitempty"`
		IsNot string `yaml:"isNot,omitempty"`
	}
	manifestResources struct {
		Template  string                       `yaml:"template,omitempty"`
		Overrides map[string]manifestGroupRsrc `yaml:"overrides,omitempty"`
	}
	manifestGroupRsrc struct {
		Group    string `yaml:"group,omitempty"`
		Resource string `yaml:"resource"`
	}
	manifestName struct {
		Matches string `yaml:"matches,omitempty"`
		As      string `yaml:"as,omitempty"`
	}
)

func toManifestRule(r config.DiscoveryRule) manifestRule {
	out := manifestRule{
		SeriesQuery:  r.SeriesQuery,
		MetricsQuery: r.MetricsQuery,
		LogQLQuery:   r.LogQLQuery,
		Source:       r.Source,
		Backend:      r.Backend,
	}
	for _, f := range r.SeriesFilters {
		out.SeriesFilters = append(out.SeriesFilters, manifestFilter{Is: f.Is, IsNot: f.IsNot})
	}
	if r.Resources.Template != "" || len(r.Resources.Overrides) > 0 {
		out.Resources = &manifestResources{Template: r.Resources.Template}
		for label, gr := range r.Resources.Overrides {
			if out.Resources.Overrides == nil {
				out.Resources.Overrides = map[string]manifestGroupRsrc{}
			}
			out.Resources.Overrides[label] = manifestGroupRsrc{Group: gr.Group, Resource: gr.Resource}
		}
	}
	if r.Name.Matches != "" || r.Name.As != "" {
		out.Name = &manifestName{Matches: r.Name.Matches, As: r.Name.As}
	}
	if r.Window != 0 {
		out.Window = model.Duration(r.Window).String()
	}
	return out
}

// node is the resource as a YAML document, each rule headed by a comment
// naming where it comes from.
func (mr *MetricRule) node() (*yaml.Node, error) {
	m := manifest{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   manifestMeta{Name: mr.Name, Namespace: mr.Namespace},
	}
	for _, r := range mr.Spec.Rules {
		m.Spec.Rules = append(m.Spec.Rules, toManifestRule(r.Rule))
	}
	for _, r := range mr.Spec.ExternalRules {
		m.Spec.ExternalRules = append(m.Spec.ExternalRules, toManifestRule(r.Rule))
	}
	var doc yaml.Node
	if err := doc.Encode(m); err != nil {
		return nil, fmt.Errorf("MetricRule %s/%s: %w", mr.Namespace, mr.Name, err)
	}
	spec := mapValue(&doc, "spec")
	for key, from := range map[string][]specRule{"rules": mr.Spec.Rules, "externalRules": mr.Spec.ExternalRules} {
		list := mapValue(spec, key)
		if list == nil {
			continue
		}
		for i, item := range list.Content {
			item.HeadComment = "From " + from[i].From + "."
			// {group: apps, resource: deployment}, as configs write it.
			if overrides := mapValue(mapValue(item, "resources"), "overrides"); overrides != nil {
				for j := 1; j < len(overrides.Content); j += 2 {
					overrides.Content[j].Style = yaml.FlowStyle
				}
			}
		}
	}
	return &doc, nil
}

// mapValue is the value of key in mapping node m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// Manifest is the resource as YAML, one document.
func (mr *MetricRule) Manifest() ([]byte, error) {
	doc, err := mr.node()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("MetricRule %s/%s: %w", mr.Namespace, mr.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteManifests writes every resource of p to w as one multi-document YAML
// stream, as kubectl apply -f - takes it.
func (p *Plan) WriteManifests(w io.Writer) error {
	for i, mr := range p.Resources {
		b, err := mr.Manifest()
		if err != nil {
			return err
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// Report writes, for every rule of the file, where it goes or why it stays
// central, then a summary.
func (p *Plan) Report(w io.Writer) {
	moved, central := 0, 0
	for _, d := range p.Decisions {
		if d.Moves() {
			moved++
			fmt.Fprintf(w, "%s: %s: moves to %s\n", p.File, d.Rule, d.Target)
			continue
		}
		central++
		fmt.Fprintf(w, "%s: %s: stays central: %s\n", p.File, d.Rule, strings.Join(d.Reasons, "; "))
	}
	for _, c := range p.Central {
		fmt.Fprintf(w, "%s: %s\n", p.File, c)
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "%s: warning: %s\n", p.File, warn)
	}
	switch {
	case moved == 0:
		fmt.Fprintf(w, "%s: no rule moves; %d stay central\n", p.File, central)
	default:
		fmt.Fprintf(w, "%s: %s to %s, %d stay central; once the MetricRules are Ready, remove the moved rules from the central config (its rules win a name conflict)\n",
			p.File, plural(moved, "rule moves", "rules move"), plural(len(p.Resources), "namespace", "namespaces"), central)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
