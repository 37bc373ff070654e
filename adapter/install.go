package adapter

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapi "k8s.io/apiserver/pkg/endpoints"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	cmapiserver "sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver/installer"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
	cmstorage "sigs.k8s.io/custom-metrics-apiserver/pkg/registry/custom_metrics"
	emstorage "sigs.k8s.io/custom-metrics-apiserver/pkg/registry/external_metrics"

	"github.com/gantry-dev/gantry/adapter/codec"
)

// metricsProvider serves both metric APIs.
type metricsProvider interface {
	cmprovider.CustomMetricsProvider
	cmprovider.ExternalMetricsProvider
}

// installMetricAPIs serves custom.metrics.k8s.io (every version the scheme
// registers; discovery shows the preferred one) and external.metrics.k8s.io
// from p, with custom-metrics-apiserver's storage and handlers. Gantry
// installs them itself, rather than through AdapterBase, for one reason:
// the groups' serializers are wrapped by adapter/codec, which writes metric
// value lists without reflection.
func installMetricAPIs(server *genericapiserver.GenericAPIServer, p metricsProvider) error {
	groups := []struct {
		name   string
		params runtime.ParameterCodec
		api    func() *installer.MetricsAPIGroupVersion
	}{
		{custom_metrics.GroupName, runtime.NewParameterCodec(cmapiserver.Scheme), func() *installer.MetricsAPIGroupVersion {
			return &installer.MetricsAPIGroupVersion{
				DynamicStorage: cmstorage.NewREST(p),
				ResourceLister: cmprovider.NewCustomMetricResourceLister(p),
				Handlers:       &installer.CMHandlers{},
			}
		}},
		{external_metrics.GroupName, metav1.ParameterCodec, func() *installer.MetricsAPIGroupVersion {
			return &installer.MetricsAPIGroupVersion{
				DynamicStorage: emstorage.NewREST(p),
				ResourceLister: cmprovider.NewExternalMetricResourceLister(p),
				Handlers:       &installer.EMHandlers{},
			}
		}},
	}
	container := server.Handler.GoRestfulContainer
	for _, g := range groups {
		info := genericapiserver.NewDefaultAPIGroupInfo(g.name, cmapiserver.Scheme, g.params, cmapiserver.Codecs)
		serializer := codec.Negotiated(info.NegotiatedSerializer)
		for i, gv := range info.PrioritizedVersions {
			version := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
			api := g.api()
			api.APIGroupVersion = &genericapi.APIGroupVersion{
				Root:             genericapiserver.APIGroupPrefix,
				GroupVersion:     gv,
				MetaGroupVersion: info.MetaGroupVersion,
				ParameterCodec:   g.params,
				Serializer:       serializer,
				Creater:          info.Scheme,
				Convertor:        info.Scheme,
				UnsafeConvertor:  runtime.UnsafeObjectConvertor(info.Scheme),
				Typer:            info.Scheme,
				Namer:            runtime.Namer(meta.NewAccessor()),
			}
			if err := api.InstallREST(container); err != nil {
				return err
			}
			if i == 0 {
				group := metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{version}, PreferredVersion: version}
				server.DiscoveryGroupManager.AddGroup(group)
				container.Add(discovery.NewAPIGroupHandler(server.Serializer, group).WebService())
			}
		}
	}
	return nil
}
