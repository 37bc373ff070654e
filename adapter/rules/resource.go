package rules

import (
	"errors"
	"fmt"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	apimeta "k8s.io/apimachinery/pkg/api/meta"

	"github.com/gantry-dev/gantry/adapter/config"
)

// ResourceRules are the compiled resourceRules that serve metrics.k8s.io.
type ResourceRules struct {
	CPU, Memory ResourceQuery
	Window      time.Duration
}

// ResourceQuery answers one resource (cpu or memory) for containers and nodes.
type ResourceQuery struct {
	ID             string
	Labels         *LabelMap
	ContainerLabel model.LabelName
	container      *template.Template
	node           *template.Template
}

// CompileResourceRules compiles a config's resourceRules; nil in, nil out.
func CompileResourceRules(rr *config.ResourceRules, mapper apimeta.RESTMapper) (*ResourceRules, error) {
	if rr == nil {
		return nil, nil
	}
	cpu, errCPU := compileResourceQuery("resourceRules.cpu", rr.CPU, mapper)
	mem, errMem := compileResourceQuery("resourceRules.memory", rr.Memory, mapper)
	if err := errors.Join(errCPU, errMem); err != nil {
		return nil, err
	}
	return &ResourceRules{CPU: cpu, Memory: mem, Window: time.Duration(rr.Window)}, nil
}

func compileResourceQuery(id string, r config.ResourceRule, mapper apimeta.RESTMapper) (ResourceQuery, error) {
	q := ResourceQuery{ID: id, ContainerLabel: model.LabelName(r.ContainerLabel)}
	var errs []error
	var err error
	q.Labels, err = NewLabelMap(r.Resources, mapper)
	errs = append(errs, wrapField("resources", err))
	q.container, err = config.ParseQueryTemplate(r.ContainerQuery)
	errs = append(errs, wrapField("containerQuery", err))
	q.node, err = config.ParseQueryTemplate(r.NodeQuery)
	errs = append(errs, wrapField("nodeQuery", err))
	if err := errors.Join(errs...); err != nil {
		return q, fmt.Errorf("%s: %w", id, err)
	}
	return q, nil
}

// ContainerQuery is the query for the containers of the named pods, grouped
// by namespace, pod and container. namespace "" means all namespaces.
func (q ResourceQuery) ContainerQuery(namespace string, pods []string) (Query, model.LabelName, error) {
	nsLabel, err := q.Labels.LabelFor(Namespaces)
	if err != nil {
		return Query{}, "", fmt.Errorf("%s: %w", q.ID, err)
	}
	podLabel, err := q.Labels.LabelFor(Pods)
	if err != nil {
		return Query{}, "", fmt.Errorf("%s: %w", q.ID, err)
	}
	if err := checkNames(pods); err != nil {
		return Query{}, "", fmt.Errorf("%s: %w", q.ID, err)
	}
	var ms []Matcher
	if namespace != "" {
		ms = append(ms, Matcher{Label: nsLabel, Type: labels.MatchEqual, Values: []string{namespace}})
	}
	ms = append(ms, nameMatcher(podLabel, pods))
	groupBy := []string{string(nsLabel), string(podLabel), string(q.ContainerLabel)}
	text, err := Render(q.container, q.ID+".containerQuery", "", ms, groupBy)
	if err != nil {
		return Query{}, "", err
	}
	return Query{Text: text, ResourceLabel: podLabel, Matchers: ms}, nsLabel, nil
}

// NodeQuery is the query for the named nodes, grouped by node.
func (q ResourceQuery) NodeQuery(nodes []string) (Query, error) {
	nodeLabel, err := q.Labels.LabelFor(Nodes)
	if err != nil {
		return Query{}, fmt.Errorf("%s: %w", q.ID, err)
	}
	if err := checkNames(nodes); err != nil {
		return Query{}, fmt.Errorf("%s: %w", q.ID, err)
	}
	ms := []Matcher{nameMatcher(nodeLabel, nodes)}
	text, err := Render(q.node, q.ID+".nodeQuery", "", ms, []string{string(nodeLabel)})
	if err != nil {
		return Query{}, err
	}
	return Query{Text: text, ResourceLabel: nodeLabel, Matchers: ms}, nil
}

func nameMatcher(label model.LabelName, names []string) Matcher {
	if len(names) == 1 {
		return Matcher{Label: label, Type: labels.MatchEqual, Values: names}
	}
	return Matcher{Label: label, Type: labels.MatchRegexp, Values: names}
}
