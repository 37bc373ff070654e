package adapter

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/metricsapi"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/kubelet"
)

// resourceMode resolves --resource-metrics=auto for cfg.
func resourceMode(flag string, cfg *config.Config) string {
	if flag == "" || flag == ResourceMetricsAuto {
		if cfg.ResourceRules != nil {
			return ResourceMetricsRules
		}
		return ResourceMetricsKubelet
	}
	return flag
}

// installResourceMetrics serves metrics.k8s.io as p.resourceMode says: from
// the config's resourceRules over Prometheus (through p.resourceSource,
// which it sets), from the kubelets' /metrics/resource, or not at all. The
// kubelet collector also runs, feeding the local store, when
// --kubelet-cadvisor is set.
func (s *Server) installResourceMetrics(ctx context.Context, generic *genericapiserver.GenericAPIServer, p *pipeline, reg prometheus.Registerer) error {
	var kubeletCollector *kubelet.Collector
	if p.resourceMode == ResourceMetricsKubelet || s.Options.Kubelet.Cadvisor {
		var ing kubelet.Ingester
		if p.back.local != nil {
			ing = p.back.local
		}
		var err error
		if kubeletCollector, err = kubelet.New(s.Options.Kubelet, p.clientConfig, ing, reg); err != nil {
			return fmt.Errorf("kubelet collector: %w", err)
		}
		go kubeletCollector.Run(ctx)
	}
	switch p.resourceMode {
	case ResourceMetricsRules:
		p.resourceSource = &resourceSource{}
		p.resourceSource.p.Store(provider.NewResourceProvider(p.rules.resource, p.back.prom, s.Options.BackendTimeout))
		if err := metricsapi.Install(generic, p.resourceSource, p.objects); err != nil {
			return err
		}
		p.objects.Warm(rules.Pods, rules.Nodes)
		klog.InfoS("metrics.k8s.io served from the config's resourceRules", "config", s.Options.ConfigFile)
	case ResourceMetricsKubelet:
		if err := metricsapi.Install(generic, kubeletCollector, p.objects); err != nil {
			return err
		}
		p.objects.Warm(rules.Pods, rules.Nodes)
		if err := generic.AddReadyzChecks(healthz.NamedCheck("kubelet-scrape", func(*http.Request) error {
			return kubeletCollector.Ready()
		})); err != nil {
			return err
		}
		klog.InfoS("metrics.k8s.io served from the kubelets' /metrics/resource")
	default:
		klog.InfoS("metrics.k8s.io not served (--resource-metrics=none)")
	}
	return nil
}

// resourceSource serves metrics.k8s.io from the resource rules in use; a
// config reload swaps them. metrics.k8s.io itself is installed at start, so
// a reload can change the resource rules but not add or remove the API.
type resourceSource struct {
	p atomic.Pointer[provider.ResourceProvider]
}

var _ metricsapi.Source = (*resourceSource)(nil)

func (s *resourceSource) PodMetrics(ctx context.Context, pods []*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	return s.p.Load().PodMetrics(ctx, pods)
}

func (s *resourceSource) NodeMetrics(ctx context.Context, nodes []*metav1.PartialObjectMetadata) ([]metrics.NodeMetrics, error) {
	return s.p.Load().NodeMetrics(ctx, nodes)
}
