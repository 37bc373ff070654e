package metricsapi

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/metrics/pkg/apis/metrics"
	"k8s.io/metrics/pkg/apis/metrics/install"
	"k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Scheme holds the metrics.k8s.io types, internal and v1beta1.
var (
	Scheme = runtime.NewScheme()
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

// Install serves metrics.k8s.io/v1beta1 pods and nodes on server.
func Install(server *genericapiserver.GenericAPIServer, src Source, objs Objects) error {
	info := genericapiserver.NewDefaultAPIGroupInfo(metrics.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	info.VersionedResourcesStorageMap[v1beta1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"pods":  NewPodStorage(src, objs),
		"nodes": NewNodeStorage(src, objs),
	}
	if err := server.InstallAPIGroup(&info); err != nil {
		return fmt.Errorf("installing %s: %w", metrics.GroupName, err)
	}
	return nil
}

// OpenAPIDefinitions describes the v1beta1 metrics types. They reference the
// core definitions (ObjectMeta, ListMeta, Time, Duration, Quantity) that
// custom-metrics-apiserver's generated definitions already carry.
func OpenAPIDefinitions(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	str := func(desc string) spec.Schema {
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"string"}, Description: desc}}
	}
	refTo := func(name, desc string) spec.Schema {
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: ref(name), Description: desc}}
	}
	quantities := func(desc string) spec.Schema {
		q := refTo(resource.Quantity{}.OpenAPIModelName(), "")
		return spec.Schema{SchemaProps: spec.SchemaProps{
			Type:                 []string{"object"},
			Description:          desc,
			AdditionalProperties: &spec.SchemaOrBool{Allows: true, Schema: &q},
		}}
	}
	arrayOf := func(name, desc string) spec.Schema {
		item := refTo(name, "")
		return spec.Schema{SchemaProps: spec.SchemaProps{
			Type:        []string{"array"},
			Description: desc,
			Items:       &spec.SchemaOrArray{Schema: &item},
		}}
	}
	typeMeta := map[string]spec.Schema{
		"kind":       str("Kind of the object."),
		"apiVersion": str("Versioned schema of the object."),
	}
	object := func(desc string, required []string, props map[string]spec.Schema, deps ...string) common.OpenAPIDefinition {
		all := map[string]spec.Schema{}
		for k, v := range typeMeta {
			all[k] = v
		}
		for k, v := range props {
			all[k] = v
		}
		return common.OpenAPIDefinition{
			Schema: spec.Schema{SchemaProps: spec.SchemaProps{
				Description: desc, Type: []string{"object"}, Required: required, Properties: all,
			}},
			Dependencies: deps,
		}
	}
	objectMeta := metav1.ObjectMeta{}.OpenAPIModelName()
	listMeta := metav1.ListMeta{}.OpenAPIModelName()
	timeName := metav1.Time{}.OpenAPIModelName()
	duration := metav1.Duration{}.OpenAPIModelName()
	quantity := resource.Quantity{}.OpenAPIModelName()
	container := v1beta1.ContainerMetrics{}.OpenAPIModelName()
	pod := v1beta1.PodMetrics{}.OpenAPIModelName()
	node := v1beta1.NodeMetrics{}.OpenAPIModelName()

	return map[string]common.OpenAPIDefinition{
		container: {
			Schema: spec.Schema{SchemaProps: spec.SchemaProps{
				Description: "ContainerMetrics sets resource usage metrics of a container.",
				Type:        []string{"object"},
				Required:    []string{"name", "usage"},
				Properties: map[string]spec.Schema{
					"name":  str("Container name corresponding to the one from pod.spec.containers."),
					"usage": quantities("The memory usage is the memory working set."),
				},
			}},
			Dependencies: []string{quantity},
		},
		pod: object("PodMetrics sets resource usage metrics of a pod.", []string{"timestamp", "window", "containers"}, map[string]spec.Schema{
			"metadata":   refTo(objectMeta, "Standard object's metadata."),
			"timestamp":  refTo(timeName, "End of the interval the values were collected over."),
			"window":     refTo(duration, "Length of the interval the values were collected over."),
			"containers": arrayOf(container, "Metrics for all containers, collected within the same window."),
		}, objectMeta, timeName, duration, container),
		v1beta1.PodMetricsList{}.OpenAPIModelName(): object("PodMetricsList is a list of PodMetrics.", []string{"items"}, map[string]spec.Schema{
			"metadata": refTo(listMeta, "Standard list metadata."),
			"items":    arrayOf(pod, "List of pod metrics."),
		}, listMeta, pod),
		node: object("NodeMetrics sets resource usage metrics of a node.", []string{"timestamp", "window", "usage"}, map[string]spec.Schema{
			"metadata":  refTo(objectMeta, "Standard object's metadata."),
			"timestamp": refTo(timeName, "End of the interval the values were collected over."),
			"window":    refTo(duration, "Length of the interval the values were collected over."),
			"usage":     quantities("The memory usage is the memory working set."),
		}, objectMeta, timeName, duration, quantity),
		v1beta1.NodeMetricsList{}.OpenAPIModelName(): object("NodeMetricsList is a list of NodeMetrics.", []string{"items"}, map[string]spec.Schema{
			"metadata": refTo(listMeta, "Standard list metadata."),
			"items":    arrayOf(node, "List of node metrics."),
		}, listMeta, node),
	}
}
