package adapter

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
)

// CheckResult is what `gantry check-config` found.
type CheckResult struct {
	Rules, ExternalRules int
	ResourceRules        bool
	// Unmatched names the rules whose seriesQuery found no series that the
	// rule turns into a metric (only when a backend was given).
	Unmatched []string
	// Metrics counts the metrics each rule would serve now, by rule ID.
	Metrics map[string]int
	// Unchecked names the rules whose backend was not given, with why.
	Unchecked []string
}

// CheckConfig loads and compiles file without a cluster (resources are
// resolved against the built-in Kubernetes kinds) and, for the rules whose
// source has a lister in listers (by config.Source*), lists their series over
// the last maxAge to find rules that match nothing. The error lists every
// problem found.
func CheckConfig(ctx context.Context, file string, listers map[string]discovery.SeriesLister, maxAge time.Duration) (*CheckResult, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	custom, external, resource, err := CompileRules(cfg, file, OfflineMapper())
	if err != nil {
		return nil, err
	}
	res := &CheckResult{Rules: len(custom), ExternalRules: len(external), ResourceRules: resource != nil, Metrics: map[string]int{}}
	if len(listers) == 0 {
		return res, nil
	}
	end := time.Now()
	for _, r := range append(custom, external...) {
		lister := listers[r.Source]
		if lister == nil {
			why := "no --" + r.Source + "-url given"
			if r.Source == config.SourceLocal {
				why = "the local store exists only inside a running Gantry"
			}
			res.Unchecked = append(res.Unchecked, r.ID+": "+why)
			continue
		}
		sets, err := lister.Series(ctx, []string{r.SeriesQuery}, end.Add(-maxAge), end)
		if err != nil {
			return res, fmt.Errorf("%s: %s: listing series %s: %w", file, r.ID, r.SeriesQuery, err)
		}
		names := map[string]bool{}
		for _, s := range sets {
			name, ok := r.MetricName(string(s[model.MetricNameLabel]))
			if !ok {
				continue
			}
			if !r.External {
				labels := make([]model.LabelName, 0, len(s))
				for l := range s {
					labels = append(labels, l)
				}
				if len(r.Labels.ResourcesFor(labels)) == 0 {
					continue
				}
			}
			names[name] = true
		}
		res.Metrics[r.ID] = len(names)
		if len(names) == 0 {
			res.Unmatched = append(res.Unmatched, r.ID)
		}
	}
	return res, nil
}

// Report writes a human summary of a check.
func (c *CheckResult) Report(w io.Writer, file string) {
	fmt.Fprintf(w, "%s: ok: %d rules, %d external rules, resource rules: %v\n", file, c.Rules, c.ExternalRules, c.ResourceRules)
	ids := make([]string, 0, len(c.Metrics))
	for id := range c.Metrics {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "  %s: %d metrics\n", id, c.Metrics[id])
	}
	for _, u := range c.Unchecked {
		fmt.Fprintf(w, "%s: note: not checked against a backend: %s\n", file, u)
	}
	if len(c.Unmatched) > 0 {
		fmt.Fprintf(w, "%s: warning: these rules match no series now: %s\n", file, strings.Join(c.Unmatched, ", "))
	}
}

// clusterScoped are the built-in kinds that are not namespaced.
var clusterScoped = map[string]bool{
	"Node": true, "Namespace": true, "PersistentVolume": true, "ClusterRole": true,
	"ClusterRoleBinding": true, "StorageClass": true, "PriorityClass": true,
	"CSIDriver": true, "CSINode": true, "VolumeAttachment": true, "RuntimeClass": true,
	"IngressClass": true, "MutatingWebhookConfiguration": true,
	"ValidatingWebhookConfiguration": true, "CertificateSigningRequest": true,
	"ComponentStatus": true,
}

// OfflineMapper maps the built-in Kubernetes kinds without a cluster, for
// checking configs.
func OfflineMapper() apimeta.RESTMapper {
	var gvs []schema.GroupVersion
	for _, gv := range scheme.Scheme.PrioritizedVersionsAllGroups() {
		gvs = append(gvs, gv)
	}
	m := apimeta.NewDefaultRESTMapper(gvs)
	for _, gv := range gvs {
		for kind := range scheme.Scheme.KnownTypes(gv) {
			if strings.HasSuffix(kind, "List") || strings.HasSuffix(kind, "Options") || kind == "WatchEvent" || kind == "Status" {
				continue
			}
			scope := apimeta.RESTScopeNamespace
			if clusterScoped[kind] {
				scope = apimeta.RESTScopeRoot
			}
			m.Add(gv.WithKind(kind), scope)
		}
	}
	return m
}
