package explain

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/adapter/explain/v1alpha1"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// StatusSource is what the server knows of itself for GantryStatus.
type StatusSource struct {
	// Config reports the config in use and the last reload.
	Config func() v1alpha1.ConfigStatus
	// DiscoveryReady is discovery's readiness (nil error: ready).
	DiscoveryReady func() error
	// Backends are the backends by name; each is probed with a trivial
	// query.
	Backends map[string]provider.Querier
}

// Status describes Gantry: config, discovery, backends (by name), its
// APIServices and the MetricRules that are not Ready.
func (e *Explainer) Status(ctx context.Context, src StatusSource) *v1alpha1.GantryStatus {
	out := &v1alpha1.GantryStatus{}
	out.Kind, out.APIVersion = v1alpha1.KindGantryStatus, v1alpha1.SchemeGroupVersion.String()
	out.Name = v1alpha1.StatusName
	out.Diagnosis = ok("Gantry serves its APIs, discovery is current and every backend answers")
	var problems []string
	if src.Config != nil {
		out.Config = src.Config()
		if out.Config.LastReloadError != "" {
			problems = append(problems, "the last config reload failed: "+out.Config.LastReloadError)
		}
	}
	if e.opts.Discovery != nil {
		out.Discovery.CustomMetrics = len(e.opts.Discovery.CustomMetrics())
		out.Discovery.ExternalMetrics = len(e.opts.Discovery.ExternalMetrics())
		if t := e.opts.Discovery.LastSuccess(); !t.IsZero() {
			mt := metav1.NewTime(t)
			out.Discovery.LastSuccess = &mt
		}
		out.Discovery.Interval = &metav1.Duration{Duration: e.opts.Discovery.Interval()}
	}
	out.Discovery.Ready = true
	if src.DiscoveryReady != nil {
		if err := src.DiscoveryReady(); err != nil {
			out.Discovery.Ready, out.Discovery.Message = false, err.Error()
			problems = append(problems, "discovery: "+err.Error())
		}
	}
	names := make([]string, 0, len(src.Backends))
	for n := range src.Backends {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		st := v1alpha1.BackendStatus{Name: n, Up: true}
		qctx, cancel := context.WithTimeout(backend.WithNamespace(ctx, ""), 5*time.Second)
		_, err := src.Backends[n].Query(qctx, "vector(1)", time.Now())
		cancel()
		if err != nil {
			msg, _ := SafeError(err)
			st.Up, st.Message = false, msg
			problems = append(problems, fmt.Sprintf("backend %s is down: %s", n, msg))
		}
		out.Backends = append(out.Backends, st)
	}
	for _, name := range []string{APIServiceCustom, APIServiceExternal, APIServiceResource, APIServiceDiagnostics} {
		info := e.APIService(ctx, name)
		out.APIs = append(out.APIs, info)
		if info.Found && !info.Available {
			problems = append(problems, fmt.Sprintf("APIService %s is not Available (%s)", name, info.Reason))
		}
	}
	if e.opts.Cluster != nil {
		if mr, err := e.opts.Cluster.MetricRules(ctx); err == nil {
			out.MetricRules = mr
			if len(mr.NotReady) > 0 {
				problems = append(problems, fmt.Sprintf("%d MetricRules are not Ready", len(mr.NotReady)))
			}
		}
	}
	if len(problems) > 0 {
		out.Diagnosis = fail(problems[0], "")
		if len(problems) > 1 {
			out.Diagnosis.Reason += fmt.Sprintf(" (and %d more: %s)", len(problems)-1, strings.Join(problems[1:], "; "))
		}
	}
	return out
}
