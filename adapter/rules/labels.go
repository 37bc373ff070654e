package rules

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
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

// builtinNamespaced are the namespaced built-in resources HPAs most often
// scale on or describe. Their groups ("" and apps) cannot be served by a
// CustomResourceDefinition, whose group must contain a dot.
var builtinNamespaced = map[schema.GroupResource]bool{
	Pods:                                     true,
	{Resource: "services"}:                   true,
	{Group: "apps", Resource: "deployments"}: true,
	{Group: "apps", Resource: "statefulsets"}: true,
	{Group: "apps", Resource: "replicasets"}:  true,
	{Group: "apps", Resource: "daemonsets"}:   true,
}

// groupSanitizer turns an API group into something usable in a label name,
// as prometheus-adapter does ("apps.example.com" → "apps_example_com").
var groupSanitizer = strings.NewReplacer(".", "_", "-", "_")

// LabelMap associates series labels with Kubernetes group-resources, through
// explicit overrides and a label template (prometheus-adapter's `resources`).
// It is safe for concurrent use.
type LabelMap struct {
	mapper   apimeta.RESTMapper
	template *template.Template
	// extractors read group and resource from a label name, per the
	// template: the first takes the shortest group, the second the longest,
	// so that both "kube_apps_deployment" and "kube_example_com_widget" are
	// read back.
	extractors []*regexp.Regexp

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
		t, err := config.ParseLabelTemplate(m.Template)
		if err != nil {
			return nil, fmt.Errorf("template: %v", err)
		}
		lm.template = t
		for _, lazy := range []bool{true, false} {
			re, err := templateRegexp(m.Template, lazy)
			if err != nil {
				return nil, fmt.Errorf("template: %v", err)
			}
			lm.extractors = append(lm.extractors, re)
		}
	}
	// Overrides are read in label order so that, when two labels name the
	// same resource, the same one (the first) is used in queries every time.
	for _, label := range slices.Sorted(maps.Keys(m.Overrides)) {
		gr := m.Overrides[label]
		resolved, err := resolve(mapper, schema.GroupResource{Group: gr.Group, Resource: gr.Resource})
		if err != nil {
			return nil, fmt.Errorf("overrides.%s: resource %q not known to the cluster: %v", label, gr.Resource, err)
		}
		lm.toResource[model.LabelName(label)] = resolved
		if _, taken := lm.toLabel[resolved]; !taken {
			lm.toLabel[resolved] = model.LabelName(label)
		}
	}
	return lm, nil
}

// templateRegexp turns a label template such as "kube_<<.Group>>_<<.Resource>>"
// into a regexp that extracts group and resource from a label name. The group
// may be empty (the core group renders as ""); lazy says whether it is the
// shortest or the longest that fits.
func templateRegexp(text string, lazy bool) (*regexp.Regexp, error) {
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
			if lazy {
				b.WriteString("(?P<group>.*?)")
			} else {
				b.WriteString("(?P<group>.*)")
			}
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
	l, err := lm.templateLabel(gr)
	if err != nil {
		return "", err
	}
	lm.mu.Lock()
	lm.toLabel[gr] = l
	lm.mu.Unlock()
	return l, nil
}

// templateLabel renders the label template for gr: the singular resource,
// and the group in label form.
func (lm *LabelMap) templateLabel(gr schema.GroupResource) (model.LabelName, error) {
	singular, err := lm.mapper.ResourceSingularizer(gr.Resource)
	if err != nil {
		return "", fmt.Errorf("resource %q: %v", gr.String(), err)
	}
	var b strings.Builder
	if err := lm.template.Execute(&b, schema.GroupResource{Group: groupSanitizer.Replace(gr.Group), Resource: singular}); err != nil {
		return "", fmt.Errorf("resources.template: %v", err)
	}
	l := model.LabelName(b.String())
	if !l.IsValidLegacy() {
		return "", fmt.Errorf("resources.template renders %q for resource %q, not a valid label name", l, gr.String())
	}
	return l, nil
}

// ResourceForLabel returns the group-resource a label names, if any.
func (lm *LabelMap) ResourceForLabel(label model.LabelName) (schema.GroupResource, bool) {
	lm.mu.RLock()
	gr, ok := lm.toResource[label]
	miss := lm.unmapped[label]
	lm.mu.RUnlock()
	if ok || miss || len(lm.extractors) == 0 {
		return gr, ok
	}
	for _, re := range lm.extractors {
		m := re.FindStringSubmatch(string(label))
		if m == nil {
			continue
		}
		candidate, hasGroup := schema.GroupResource{}, false
		for i, name := range re.SubexpNames() {
			switch name {
			case "group":
				candidate.Group, hasGroup = m[i], true
			case "resource":
				candidate.Resource = m[i]
			}
		}
		// The label must be the one the template renders for the resource
		// ("pod", not "pods"): queries select objects by that label.
		if found, resolved := lm.resolveFromLabel(candidate, hasGroup); resolved {
			if l, err := lm.templateLabel(found); err == nil && l == label {
				gr, ok = found, true
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

// resolveFromLabel resolves a group and resource read from a label. Without
// <<.Group>> in the template the cluster decides the group, as kubectl does.
// With it, the group was sanitised (dots and dashes turned into
// underscores) when the label was rendered, so it is compared in that form
// with the groups that serve the resource, and must name exactly one.
func (lm *LabelMap) resolveFromLabel(c schema.GroupResource, hasGroup bool) (schema.GroupResource, bool) {
	if c.Resource == "" {
		return schema.GroupResource{}, false
	}
	if !hasGroup {
		gr, err := resolve(lm.mapper, c)
		return gr, err == nil
	}
	gvrs, err := lm.mapper.ResourcesFor(schema.GroupVersionResource{Resource: c.Resource})
	if err != nil {
		return schema.GroupResource{}, false
	}
	var found []schema.GroupResource
	for _, gvr := range gvrs {
		if gr := gvr.GroupResource(); groupSanitizer.Replace(gr.Group) == c.Group && !slices.Contains(found, gr) {
			found = append(found, gr)
		}
	}
	if len(found) != 1 {
		return schema.GroupResource{}, false
	}
	return found[0], true
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
// are one of the well-known cluster-scoped ones. Built-in resources, whose
// scope no cluster can change, are answered without the mapping, which
// walks every API group's mapper: it is asked on each request.
func Namespaced(mapper apimeta.RESTMapper, gr schema.GroupResource) bool {
	switch gr {
	case Namespaces, Nodes, PersistentVolumes:
		return false
	}
	if builtinNamespaced[gr] {
		return true
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
