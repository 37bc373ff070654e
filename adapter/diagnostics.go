package adapter

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/klog/v2"

	"github.com/gantry-dev/gantry/adapter/explain"
	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// diagnosticsResources are the resources of diagnostics.gantry.dev/v1alpha1,
// each read-only (verb get).
var diagnosticsResources = []metav1.APIResource{
	{Name: v1alpha1.ResourceHPAExplanations, Namespaced: true, Kind: v1alpha1.KindHPAExplanation, Verbs: metav1.Verbs{"get"}},
	{Name: v1alpha1.ResourceMetricExplanations, Namespaced: true, Kind: v1alpha1.KindMetricExplanation, Verbs: metav1.Verbs{"get"}},
	{Name: v1alpha1.ResourceStatuses, Namespaced: false, Kind: v1alpha1.KindGantryStatus, Verbs: metav1.Verbs{"get"}},
}

// installDiagnostics serves diagnostics.gantry.dev/v1alpha1 (issue 17) on
// the generic server's non-go-restful mux: its handler chain authenticates
// and authorizes every request first, so a GET of
// .../namespaces/shop/hpaexplanations/web is allowed only to a user the
// kube-apiserver's SubjectAccessReview lets get hpaexplanations in shop.
// Diagnostics are not what Gantry is for: when they cannot be served, the
// metrics APIs still are, and the log says why.
func (s *Server) installDiagnostics(generic *genericapiserver.GenericAPIServer, p *pipeline) {
	cluster, err := explain.NewCluster(s.busyClientConfig(p.clientConfig), p.mapper)
	if err != nil {
		klog.ErrorS(err, "not serving diagnostics.gantry.dev")
		return
	}
	h := &diagnosticsHandler{
		explainer: explain.New(explain.Options{
			Provider:   p.provider,
			Discovery:  p.discovery,
			Listers:    p.back.listers(),
			Objects:    p.objects,
			Mapper:     p.mapper,
			Cluster:    cluster,
			ConfigFile: s.Options.ConfigFile,
			History:    max(time.Hour, s.Options.MaxAge),
		}),
		status: explain.StatusSource{
			Config: func() v1alpha1.ConfigStatus {
				st := p.config.Load()
				loaded := metav1.NewTime(st.loaded)
				return v1alpha1.ConfigStatus{File: s.Options.ConfigFile, Rules: st.custom, ExternalRules: st.external, LastReload: &loaded, LastReloadError: st.rejected}
			},
			DiscoveryReady: func() error { return p.discovery.Ready(3*s.Options.RelistInterval + time.Minute) },
			Backends:       p.provider.Backends(),
		},
	}
	gv := v1alpha1.SchemeGroupVersion
	version := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
	group := metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{version}, PreferredVersion: version}
	generic.DiscoveryGroupManager.AddGroup(group)
	if generic.AggregatedDiscoveryGroupManager != nil {
		resources := make([]apidiscoveryv2.APIResourceDiscovery, 0, len(diagnosticsResources))
		for _, r := range diagnosticsResources {
			scope := apidiscoveryv2.ScopeCluster
			if r.Namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			resources = append(resources, apidiscoveryv2.APIResourceDiscovery{
				Resource: r.Name, ResponseKind: &metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: r.Kind},
				Scope: scope, Verbs: r.Verbs,
			})
		}
		generic.AggregatedDiscoveryGroupManager.AddGroupVersion(gv.Group, apidiscoveryv2.APIVersionDiscovery{
			Version: gv.Version, Resources: resources, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
		})
	}
	groupHandler := discovery.NewAPIGroupHandler(generic.Serializer, group)
	versionHandler := discovery.NewAPIVersionHandler(generic.Serializer, gv, discovery.APIResourceListerFunc(func() []metav1.APIResource { return diagnosticsResources }))
	mux := generic.Handler.NonGoRestfulMux
	groupPath := "/apis/" + gv.Group
	versionPath := groupPath + "/" + gv.Version
	mux.Handle(groupPath, groupHandler)
	mux.Handle(groupPath+"/", groupHandler)
	mux.Handle(versionPath, versionHandler)
	mux.HandlePrefix(versionPath+"/", http.StripPrefix(versionPath, h))
}

type diagnosticsHandler struct {
	explainer *explain.Explainer
	status    explain.StatusSource
}

// ServeHTTP answers a path below /apis/diagnostics.gantry.dev/v1alpha1.
func (h *diagnosticsHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		writeStatus(w, apierrors.NewMethodNotSupported(v1alpha1.SchemeGroupVersion.WithResource("").GroupResource(), req.Method))
		return
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	namespace := ""
	if len(parts) == 4 && parts[0] == "namespaces" {
		namespace, parts = parts[1], parts[2:]
	}
	if len(parts) != 2 || parts[1] == "" {
		writeStatus(w, apierrors.NewNotFound(v1alpha1.SchemeGroupVersion.WithResource(parts[0]).GroupResource(), ""))
		return
	}
	resource, name := parts[0], parts[1]
	gr := schema.GroupResource{Group: v1alpha1.GroupName, Resource: resource}
	ctx := req.Context()
	switch {
	case resource == v1alpha1.ResourceHPAExplanations && namespace != "":
		out, err := h.explainer.HPA(ctx, namespace, name)
		if err != nil {
			if apierrors.IsNotFound(err) {
				err = apierrors.NewNotFound(schema.GroupResource{Group: "autoscaling", Resource: "horizontalpodautoscalers"}, name)
			} else if !apierrors.IsForbidden(err) {
				klog.ErrorS(err, "explaining an HPA", "namespace", namespace, "name", name)
				err = apierrors.NewServiceUnavailable(fmt.Sprintf("reading HorizontalPodAutoscaler %s/%s: %v", namespace, name, err))
			}
			writeStatus(w, err)
			return
		}
		writeJSON(w, out)
	case resource == v1alpha1.ResourceMetricExplanations:
		ask, err := parseAsk(namespace, name, req)
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		writeJSON(w, h.explainer.Metric(ctx, ask))
	case resource == v1alpha1.ResourceStatuses && namespace == "":
		if name != v1alpha1.StatusName {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		writeJSON(w, h.explainer.Status(ctx, h.status))
	default:
		writeStatus(w, apierrors.NewNotFound(gr, name))
	}
}

// parseAsk reads a metricexplanations request: the metric is the name, the
// rest query parameters.
func parseAsk(namespace, metric string, req *http.Request) (explain.Ask, error) {
	q := req.URL.Query()
	ask := explain.Ask{Metric: metric, Namespace: namespace}
	switch strings.ToLower(q.Get(v1alpha1.ParamType)) {
	case "pods", "":
		ask.Type, ask.Resource = v1alpha1.MetricTypePods, rules.Pods
		if namespace == "" {
			return ask, fmt.Errorf("a Pods metric is asked in a namespace")
		}
	case "object":
		ask.Type = v1alpha1.MetricTypeObject
		if ask.Object = q.Get(v1alpha1.ParamName); ask.Object == "" {
			return ask, fmt.Errorf("type=object needs name=<object>")
		}
		res := q.Get(v1alpha1.ParamResource)
		if res == "" {
			return ask, fmt.Errorf("type=object needs resource=<group-resource>, e.g. deployments.apps")
		}
		ask.Resource = schema.ParseGroupResource(res)
	case "external":
		ask.Type = v1alpha1.MetricTypeExternal
	default:
		return ask, fmt.Errorf("type %q is not one of pods, object, external", q.Get(v1alpha1.ParamType))
	}
	if ask.Type == v1alpha1.MetricTypePods {
		if res := q.Get(v1alpha1.ParamResource); res != "" && schema.ParseGroupResource(res) != rules.Pods {
			return ask, fmt.Errorf("type=pods is about pods, not %q (use type=object)", res)
		}
	}
	var err error
	ask.Selector = labels.Everything()
	if s := q.Get(v1alpha1.ParamLabelSelector); s != "" {
		if ask.Selector, err = labels.Parse(s); err != nil {
			return ask, fmt.Errorf("labelSelector: %v", err)
		}
	}
	ask.MetricSelector = labels.Everything()
	if s := q.Get(v1alpha1.ParamMetricSelector); s != "" {
		if ask.MetricSelector, err = labels.Parse(s); err != nil {
			return ask, fmt.Errorf("metricSelector: %v", err)
		}
	}
	return ask, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.V(2).InfoS("writing a diagnostics response", "err", err)
	}
}

func writeStatus(w http.ResponseWriter, err error) {
	status := apierrors.APIStatus(apierrors.NewInternalError(err))
	if s, ok := err.(apierrors.APIStatus); ok {
		status = s
	}
	st := status.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}
