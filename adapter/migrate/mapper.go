package migrate

import (
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/gantry-dev/gantry/adapter/checkconfig"
)

// offlineMapper knows the built-in Kubernetes kinds (checkconfig's
// OfflineMapper) and takes a resource of any other API group (a CRD's) as
// written: without a cluster it cannot be checked, and a rule naming one
// may well move to a namespace.
type offlineMapper struct {
	apimeta.RESTMapper
	builtinGroups map[string]bool
}

func newOfflineMapper() *offlineMapper {
	m := &offlineMapper{RESTMapper: checkconfig.OfflineMapper(), builtinGroups: map[string]bool{}}
	for _, gv := range scheme.Scheme.PrioritizedVersionsAllGroups() {
		m.builtinGroups[gv.Group] = true
	}
	return m
}

func (m *offlineMapper) ResourceFor(in schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	out, err := m.RESTMapper.ResourceFor(in)
	if err != nil && in.Group != "" && !m.builtinGroups[in.Group] && in.Resource != "" {
		r := strings.ToLower(in.Resource)
		if !strings.HasSuffix(r, "s") {
			plural, _ := apimeta.UnsafeGuessKindToResource(schema.GroupVersionKind{Kind: r})
			r = plural.Resource
		}
		return schema.GroupVersionResource{Group: in.Group, Version: in.Version, Resource: r}, nil
	}
	return out, err
}
