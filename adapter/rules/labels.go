package rules

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"text/template"

	"github.com/prometheus/common/model"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/adapter/config"
)

// Well-known group-resources.
var (
	Namespaces        = schema.GroupResource{Resource: "namespaces"}
	Nodes             = schema.GroupResource{Resource: "nodes"}
	Pods              = schema.GroupResource{Resource: "pods"}
	PersistentVolumes = schema.GroupResource{Resource: "persistentvolumes"}
)

// groupSanitizer turns an API group into something usable in a label name,
// as prometheus-adapter does ("apps.example.com" → "apps_example_com").
var groupSanitizer = strings.NewReplacer(".", "_", "-", "_")

// LabelMap associates series labels with Kubernetes group-resources, through
// explicit overrides and a label template (prometheus-adapter's `resources`).
// It is safe for concurrent use.
type LabelMap struct {
	mapper    apimeta.RESTMapper
	template  *template.Template
	extractor *regexp.Regexp // label name → group and resource, from template

	mu         sync.RWMutex
	toResource map[model.LabelName]schema.GroupResource
	toLabel    map[schema.GroupResource]model.LabelName
	unmapped   map[model.LabelName]bool // labels known to name no resource
}

// NewLabelMap compiles a resource mapping. Override resources are resolved
// (singular or plural, group optional) through mapper.
func NewLabelMap(m config.ResourceMapping, mapper apimeta.RESTMapper) (*LabelMap, error) {
	lm := &LabelMap{
		mapper:     mapper,
		toResource: map[model.LabelName]schema.GroupResource{},
		toLabel:    map[schema.GroupResource]model.LabelName{},
		unmapped:   map[model.LabelName]bool{},
	}
	if m.Template != "" {
		t, err := template.New("template").Delims(config.TemplateDelims[0], config.TemplateDelims[1]).Option("missingkey=error").Parse(m.Template)
		if err != nil {
			return nil, fmt.Errorf("template: %v", err)
		}
		lm.template = t
		re, err := templateRegexp(m.Template)
		if err != nil {
			return nil, fmt.Errorf("template: %v", err)
		}
		lm.extractor = re
	}
	for label, gr := range m.Overrides {
		resolved, err := resolve(mapper, schema.GroupResource{Group: gr.Group, Resource: gr.Resource})
		if err != nil {
			return nil, fmt.Errorf("overrides.%s: resource %q not known to the cluster: %v", label, gr.Resource, err)
		}
		lm.toResource[model.LabelName(label)] = resolved
		lm.toLabel[resolved] = model.LabelName(label)
	}
	return lm, nil
}

// templateRegexp turns a label template such as "kube_<<.Group>>_<<.Resource>>"
// into a regexp that extracts group and resource from a label name.
func templateRegexp(text string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	rest := text
	for {
		i := strings.Index(rest, config.TemplateDelims[0])
		if i < 0 {
			b.WriteString(regexp.QuoteMeta(rest))
			break
		}
		b.WriteString(regexp.QuoteMeta(rest[:i]))
		j := strings.Index(rest[i:], config.TemplateDelims[1])
		if j < 0 {
			return nil, fmt.Errorf("unclosed %s", config.TemplateDelims[0])
		}
		switch field := strings.TrimSpace(rest[i+2 : i+j]); field {
		case ".Group":
			b.WriteString("(?P<group>.+?)")
		case ".Resource":
			b.WriteString("(?P<resource>.+?)")
		default:
			return nil, fmt.Errorf("only <<.Group>> and <<.Resource>> may appear in a label template, found <<%s>>", field)
		}
		rest = rest[i+j+2:]
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func resolve(mapper apimeta.RESTMapper, gr schema.GroupResource) (schema.GroupResource, error) {
	gvr, err := mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return gr, err
	}
	return gvr.GroupResource(), nil
}

// LabelFor is the label that names objects of resource gr.
func (lm *LabelMap) LabelFor(gr schema.GroupResource) (model.LabelName, error) {
	lm.mu.RLock()
	l, ok := lm.toLabel[gr]
	lm.mu.RUnlock()
	if ok {
		return l, nil
	}
	if lm.template == nil {
		return "", fmt.Errorf("no label is mapped to resource %q (add it to the rule's resources.overrides or set resources.template)", gr.String())
	}
	singular, err := lm.mapper.ResourceSingularizer(gr.Resource)
	if err != nil {
		return "", fmt.Errorf("resource %q: %v", gr.String(), err)
	}
	var b strings.Builder
	if err := lm.template.Execute(&b, schema.GroupResource{Group: groupSanitizer.Replace(gr.Group), Resource: singular}); err != nil {
		return "", fmt.Errorf("resources.template: %v", err)
	}
	l = model.LabelName(b.String())
	if !l.IsValidLegacy() {
		return "", fmt.Errorf("resources.template renders %q for resource %q, not a valid label name", l, gr.String())
	}
	lm.mu.Lock()
	lm.toLabel[gr] = l
	lm.mu.Unlock()
	return l, nil
}

// ResourceForLabel returns the group-resource a label names, if any.
func (lm *LabelMap) ResourceForLabel(label model.LabelName) (schema.GroupResource, bool) {
	lm.mu.RLock()
	gr, ok := lm.toResource[label]
	miss := lm.unmapped[label]
	lm.mu.RUnlock()
	if ok || miss || lm.extractor == nil {
		return gr, ok
	}
	m := lm.extractor.FindStringSubmatch(string(label))
	if m != nil {
		candidate := schema.GroupResource{}
		for i, name := range lm.extractor.SubexpNames() {
			switch name {
			case "group":
				candidate.Group = m[i]
			case "resource":
				candidate.Resource = m[i]
			}
		}
		// Groups were sanitised into label form; try the group as written and
		// with underscores turned back into dots.
		for _, g := range uniq(candidate.Group, strings.ReplaceAll(candidate.Group, "_", ".")) {
			if resolved, err := resolve(lm.mapper, schema.GroupResource{Group: g, Resource: candidate.Resource}); err == nil {
				gr, ok = resolved, true
				break
			}
		}
	}
	lm.mu.Lock()
	if ok {
		lm.toResource[label] = gr
	} else {
		lm.unmapped[label] = true
	}
	lm.mu.Unlock()
	return gr, ok
}

func uniq(s ...string) []string {
	if len(s) == 2 && s[0] == s[1] {
		return s[:1]
	}
	return s
}

// ResourcesFor lists the group-resources a series' labels name, in label order.
func (lm *LabelMap) ResourcesFor(labelNames []model.LabelName) []schema.GroupResource {
	var out []schema.GroupResource
	for _, l := range labelNames {
		if gr, ok := lm.ResourceForLabel(l); ok {
			out = append(out, gr)
		}
	}
	return out
}

// Namespaced reports whether objects of gr live in a namespace, according to
// the cluster's REST mapping; unknown resources count as namespaced unless they
// are one of the well-known cluster-scoped ones.
func Namespaced(mapper apimeta.RESTMapper, gr schema.GroupResource) bool {
	switch gr {
	case Namespaces, Nodes, PersistentVolumes:
		return false
	}
	gvk, err := mapper.KindFor(gr.WithVersion(""))
	if err != nil {
		return true
	}
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return true
	}
	return m.Scope.Name() == apimeta.RESTScopeNameNamespace
}
