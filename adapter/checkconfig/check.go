// Package checkconfig is `gantry check-config`: it loads and compiles a
// config file as a running Gantry would, without serving it, and lists the
// rules' series on the backends given to find rules that match nothing and
// metrics that more than one rule yields. It sits beside the server: it
// reads config, rules and discovery, and the server does not import it.
package checkconfig

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/explain/probe"
	"github.com/gantry-dev/gantry/adapter/rules"
	"github.com/gantry-dev/gantry/collectors/backend"
)

// Result is what `gantry check-config` found.
type Result struct {
	Rules, ExternalRules int
	ResourceRules        bool
	// Unmatched names the rules whose seriesQuery found no series that the
	// rule turns into a metric (only when a backend was given).
	Unmatched []string
	// Metrics counts the metrics each rule would serve now, by rule ID.
	Metrics map[string]int
	// TenantMetrics counts them per tenant, for the rules whose backend
	// sends tenants: rule ID → tenant → metrics.
	TenantMetrics map[string]map[string]int
	// Unchecked names the rules whose backend was not given, with why.
	Unchecked []string
	// Unverified names the resources of API groups that are not built into
	// Kubernetes (a CRD's, an aggregated API's), which a check without a
	// cluster takes as written: "rules[3] (x): resources.overrides.brand:
	// ...". Empty when the check had a cluster to ask.
	Unverified []string
	// Conflicts describe the metrics that more than one rule, or series of
	// a rule, yields, and which one answers for each (the last, as in
	// prometheus-adapter). Between rules whose series were listed they are
	// what the series show; otherwise they follow from the file, for rules
	// whose metric name and resources it fixes.
	Conflicts []string
}

// CheckFile checks file without a cluster (see Check), listing the
// series of the rules whose source has a lister in listers (by
// config.Source*) over the last maxAge.
func CheckFile(ctx context.Context, file string, listers map[string]discovery.SeriesLister, maxAge time.Duration) (*Result, error) {
	return Check{Listers: listers, MaxAge: maxAge}.Run(ctx, file)
}

// Check is what `gantry check-config` consults besides the file.
type Check struct {
	// Mapper resolves the resources the rules name, as the cluster's API
	// discovery does for a running Gantry (see ClusterMapper). Nil: the
	// built-in Kubernetes kinds (OfflineMapper); a resource of another API
	// group, such as a CRD's, is then taken as written and reported in
	// Result.Unverified instead of failing the check.
	Mapper apimeta.RESTMapper
	// Listers list the series of the rules of each source (config.Source*);
	// rules of other sources are not checked against a backend.
	Listers map[string]discovery.SeriesLister
	// MaxAge is how far back series are listed.
	MaxAge time.Duration
}

// Run loads and compiles file and, for the rules whose source has a lister,
// lists their series to find rules that match nothing and metrics that
// more than one rule yields. The error lists every problem found; what
// only deserves a warning is in the result.
func (c Check) Run(ctx context.Context, file string) (*Result, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	mapper := c.Mapper
	var offline *offlineMapper
	if mapper == nil {
		offline = newOfflineMapper()
		mapper = offline
	}
	custom, external, resource, err := rules.CompileConfig(cfg, file, mapper)
	if err != nil {
		return nil, err
	}
	res := &Result{Rules: len(custom), ExternalRules: len(external), ResourceRules: resource != nil, Metrics: map[string]int{}}
	if offline != nil {
		res.Unverified = offline.unverified(cfg)
	}
	series, err := c.listSeries(ctx, file, cfg, slices.Concat(custom, external), res)
	if err != nil {
		return res, err
	}
	for _, cf := range discovery.Conflicts(custom, external, mapper, series) {
		entries := make([]string, len(cf.Entries))
		for i, e := range cf.Entries {
			entries[i] = e.String()
		}
		res.Conflicts = append(res.Conflicts, fmt.Sprintf("%s is yielded by %s: the last answers for it, as in prometheus-adapter",
			describeMetric(cf.Metric, cf.Resource, cf.External), strings.Join(entries, ", then ")))
	}
	// rules.CompileConfig returns the rules in file order: custom[i] is
	// cfg.Rules[i].
	res.Conflicts = append(res.Conflicts, fileConflicts(cfg.Rules, custom, series)...)
	res.Conflicts = append(res.Conflicts, fileConflicts(cfg.ExternalRules, external, series)...)
	return res, nil
}

// listSeries lists the series of each rule whose source has a lister,
// reduced to their shapes, and records in res how many metrics each
// yields, which match nothing and which could not be listed. A rule is in
// the map when its series were listed, even if there were none.
func (c Check) listSeries(ctx context.Context, file string, cfg *config.Config, all []*rules.Rule, res *Result) (map[*rules.Rule][]model.LabelSet, error) {
	series := map[*rules.Rule][]model.LabelSet{}
	if len(c.Listers) == 0 {
		return series, nil
	}
	end := time.Now()
	for _, r := range all {
		lister := c.Listers[r.Source]
		if lister == nil {
			why := "no --" + r.Source + "-url given"
			if r.Source == config.SourceLocal {
				why = "the local store exists only inside a running Gantry"
			}
			res.Unchecked = append(res.Unchecked, r.ID+": "+why)
			continue
		}
		list := func(ctx context.Context) ([]model.LabelSet, error) {
			sets, err := probe.ListSeries(ctx, r, lister, end.Add(-c.MaxAge), end)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", file, r.ID, err)
			}
			return distinctShapes(sets), nil
		}
		var sets []model.LabelSet
		if tenants := tenantsOf(cfg, r.Source); tenants != nil {
			// Each tenant on its own, so that the report says what each
			// namespace's tenant yields.
			byTenant := map[string]int{}
			for _, tenant := range tenants {
				ts, err := list(backend.WithTenant(ctx, tenant))
				if err != nil {
					return nil, fmt.Errorf("%w (tenant %s)", err, tenant)
				}
				byTenant[tenant] = len(probe.Metrics(r, ts))
				sets = append(sets, ts...)
			}
			sets = distinctShapes(sets)
			if res.TenantMetrics == nil {
				res.TenantMetrics = map[string]map[string]int{}
			}
			res.TenantMetrics[r.ID] = byTenant
		} else {
			var err error
			if sets, err = list(ctx); err != nil {
				return nil, err
			}
		}
		series[r] = sets
		names := probe.Metrics(r, sets)
		res.Metrics[r.ID] = len(names)
		if len(names) == 0 {
			res.Unmatched = append(res.Unmatched, r.ID)
		}
	}
	return series, nil
}

// tenantsOf are the tenants check-config lists for the named backend of
// cfg, nil when it sends none. A template's tenants need the cluster's
// namespaces: only those byNamespace and cluster name are listed.
func tenantsOf(cfg *config.Config, name string) []string {
	b := cfg.Lookup(name)
	if b == nil || b.Tenancy() == nil {
		return nil
	}
	return b.Tenancy().All()
}

// describeMetric names a metric in a warning: `custom metric "x" of pods`.
func describeMetric(metric string, gr schema.GroupResource, external bool) string {
	if external {
		return fmt.Sprintf("external metric %q", metric)
	}
	return fmt.Sprintf("custom metric %q of %s", metric, gr.String())
}

// distinctShapes keeps one label set per metric name and set of label
// names: all that decides which metrics a rule yields, and far fewer than
// the series of a broad seriesQuery.
func distinctShapes(sets []model.LabelSet) []model.LabelSet {
	seen := map[string]bool{}
	var out []model.LabelSet
	for _, ls := range sets {
		names := make([]string, 0, len(ls))
		for l := range ls {
			if l != model.MetricNameLabel {
				names = append(names, string(l))
			}
		}
		slices.Sort(names)
		key := string(ls[model.MetricNameLabel]) + "\x00" + strings.Join(names, "\x00")
		if !seen[key] {
			seen[key] = true
			out = append(out, ls)
		}
	}
	return out
}

// fileConflicts finds, without series, the rules (one kind of them, in file
// order: cfg[i] compiled into compiled[i]) that name the same metric of the
// same resource whatever series they find, leaving out the groups whose
// series were all listed (in listed): the series tell about those. A rule's
// metric name is fixed by a name.as without references, or by a seriesQuery
// that selects one metric name; a custom rule's resources by its overrides
// (a template may add more, which this does not see).
func fileConflicts(cfg []config.DiscoveryRule, compiled []*rules.Rule, listed map[*rules.Rule][]model.LabelSet) []string {
	type key struct {
		metric   string
		resource schema.GroupResource
	}
	var order []key
	claims := map[key][]*rules.Rule{}
	for i, r := range compiled {
		name, ok := fixedMetricName(cfg[i], r)
		if !ok {
			continue
		}
		var resources []schema.GroupResource
		if r.External {
			resources = []schema.GroupResource{{}}
		}
		for _, label := range slices.Sorted(maps.Keys(cfg[i].Resources.Overrides)) {
			if gr, ok := r.Labels.ResourceForLabel(model.LabelName(label)); ok && !slices.Contains(resources, gr) {
				resources = append(resources, gr)
			}
		}
		for _, gr := range resources {
			k := key{name, gr}
			if claims[k] == nil {
				order = append(order, k)
			}
			claims[k] = append(claims[k], r)
		}
	}
	var out []string
	for _, k := range order {
		rs := claims[k]
		unlisted := slices.ContainsFunc(rs, func(r *rules.Rule) bool {
			_, ok := listed[r]
			return !ok
		})
		if len(rs) < 2 || !unlisted {
			continue
		}
		ids := make([]string, len(rs))
		for i, r := range rs {
			ids[i] = r.ID
		}
		out = append(out, fmt.Sprintf("%s is named by %s: whenever they find series, the last answers for it, as in prometheus-adapter",
			describeMetric(k.metric, k.resource, rs[0].External), strings.Join(ids, ", then ")))
	}
	return out
}

// fixedMetricName is the metric a rule yields whatever series it finds,
// when the file says: a name.as without references to the series name, or
// the one series name its seriesQuery selects, named by the rule.
func fixedMetricName(c config.DiscoveryRule, r *rules.Rule) (string, bool) {
	if c.Name.As != "" && !strings.Contains(c.Name.As, "$") {
		return c.Name.As, true
	}
	sel, err := parser.NewParser(parser.Options{}).ParseMetricSelector(c.SeriesQuery)
	if err != nil {
		return "", false
	}
	for _, m := range sel {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return r.MetricName(m.Value)
		}
	}
	return "", false
}

// Report writes a human summary of a check.
func (c *Result) Report(w io.Writer, file string) {
	fmt.Fprintf(w, "%s: ok: %d rules, %d external rules, resource rules: %v\n", file, c.Rules, c.ExternalRules, c.ResourceRules)
	ids := make([]string, 0, len(c.Metrics))
	for id := range c.Metrics {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "  %s: %d metrics", id, c.Metrics[id])
		if byTenant := c.TenantMetrics[id]; byTenant != nil {
			tenants := make([]string, 0, len(byTenant))
			for t := range byTenant {
				tenants = append(tenants, t)
			}
			sort.Strings(tenants)
			for i, t := range tenants {
				sep := ", "
				if i == 0 {
					sep = " ("
				}
				fmt.Fprintf(w, "%stenant %s: %d", sep, t, byTenant[t])
			}
			if len(tenants) > 0 {
				fmt.Fprint(w, ")")
			} else {
				fmt.Fprint(w, " (no tenant to list: tenant.template needs the cluster's namespaces)")
			}
		}
		fmt.Fprintln(w)
	}
	for _, u := range c.Unchecked {
		fmt.Fprintf(w, "%s: note: not checked against a backend: %s\n", file, u)
	}
	for _, u := range c.Unverified {
		fmt.Fprintf(w, "%s: warning: %s\n", file, u)
	}
	for _, cf := range c.Conflicts {
		fmt.Fprintf(w, "%s: warning: conflict: %s\n", file, cf)
	}
	if len(c.Unmatched) > 0 {
		fmt.Fprintf(w, "%s: warning: these rules match no series now: %s\n", file, strings.Join(c.Unmatched, ", "))
	}
}

// ClusterMapper resolves resources through the API discovery of the
// cluster kubeconfig names, as a running Gantry does, so that a check can
// verify the resources of CRDs too. Groups whose discovery fails (an
// aggregated API that is down) are left out, as kubectl does.
func ClusterMapper(ctx context.Context, kubeconfig string) (apimeta.RESTMapper, error) {
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		restConfig.Timeout = time.Until(deadline)
	} else if restConfig.Timeout == 0 {
		restConfig.Timeout = 30 * time.Second
	}
	client, err := kdiscovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	groups, err := restmapper.GetAPIGroupResourcesWithContext(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's API resources (kubeconfig %s): %w", kubeconfig, err)
	}
	return restmapper.NewDiscoveryRESTMapper(groups), nil
}

// offlineMapper is OfflineMapper, except that a resource of an API group
// Kubernetes does not build in (a CRD's, an aggregated API's) is taken as
// written, its name made plural as kubectl guesses it: without a cluster
// it cannot be known, and a config naming one is prometheus-adapter's own
// example. A resource of a built-in group that the group lacks is still an
// error: that is a typo.
type offlineMapper struct {
	apimeta.RESTMapper
	builtinGroups map[string]bool
}

func newOfflineMapper() *offlineMapper {
	m := &offlineMapper{RESTMapper: OfflineMapper(), builtinGroups: map[string]bool{}}
	for _, gv := range scheme.Scheme.PrioritizedVersionsAllGroups() {
		m.builtinGroups[gv.Group] = true
	}
	return m
}

// ResourceFor resolves a resource, taking one of a group that is not built
// in as written.
func (m *offlineMapper) ResourceFor(in schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	out, err := m.RESTMapper.ResourceFor(in)
	if err != nil && m.unknownGroup(in.Group) && in.Resource != "" {
		return schema.GroupVersionResource{Group: in.Group, Version: in.Version, Resource: guessPlural(in.Resource)}, nil
	}
	return out, err
}

func (m *offlineMapper) unknownGroup(group string) bool {
	return group != "" && !m.builtinGroups[group]
}

// guessPlural makes a resource name plural as kubectl guesses a kind's:
// "brand" → "brands"; a name ending in s is taken as plural already.
func guessPlural(resource string) string {
	resource = strings.ToLower(resource)
	if strings.HasSuffix(resource, "s") {
		return resource
	}
	plural, _ := apimeta.UnsafeGuessKindToResource(schema.GroupVersionKind{Kind: resource})
	return plural.Resource
}

// unverified lists the overrides of cfg that name a resource of a group
// that is not built in, each as "rules[3] (x): resources.overrides.brand:
// ...".
func (m *offlineMapper) unverified(cfg *config.Config) []string {
	var out []string
	check := func(section string, res config.ResourceMapping) {
		for _, label := range slices.Sorted(maps.Keys(res.Overrides)) {
			gr := res.Overrides[label]
			if !m.unknownGroup(gr.Group) {
				continue
			}
			if _, err := m.RESTMapper.ResourceFor(schema.GroupVersionResource{Group: gr.Group, Resource: gr.Resource}); err == nil {
				continue
			}
			out = append(out, fmt.Sprintf("%s: resources.overrides.%s: resource %q of group %q is not built into Kubernetes (a custom resource?) and was not checked; pass --kubeconfig to check it against a cluster",
				section, label, gr.Resource, gr.Group))
		}
	}
	for i, r := range cfg.Rules {
		check(fmt.Sprintf("rules[%d] (%s)", i, r.DisplayName()), r.Resources)
	}
	for i, r := range cfg.ExternalRules {
		check(fmt.Sprintf("externalRules[%d] (%s)", i, r.DisplayName()), r.Resources)
	}
	if rr := cfg.ResourceRules; rr != nil {
		check("resourceRules.cpu", rr.CPU.Resources)
		check("resourceRules.memory", rr.Memory.Resources)
	}
	return out
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
// checking configs. As with a cluster's discovery, a resource served in
// several versions (apps/v1 and apps/v1beta2 deployments) resolves to the
// preferred one instead of being ambiguous.
func OfflineMapper() apimeta.RESTMapper {
	gvs := scheme.Scheme.PrioritizedVersionsAllGroups()
	m := apimeta.NewDefaultRESTMapper(gvs)
	priority := apimeta.PriorityRESTMapper{Delegate: m}
	for _, gv := range gvs {
		priority.ResourcePriority = append(priority.ResourcePriority, gv.WithResource(apimeta.AnyResource))
		priority.KindPriority = append(priority.KindPriority, gv.WithKind(apimeta.AnyKind))
	}
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
	return priority
}
