package metricrules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	k8sdiscovery "k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/discovery"
	"github.com/gantry-dev/gantry/adapter/provider"
	"github.com/gantry-dev/gantry/adapter/rules"
)

// ClusterRegistry is the cluster config's discovery: its metrics win a
// name conflict with a MetricRule's.
type ClusterRegistry interface {
	LookupCustom(cmprovider.CustomMetricInfo) (discovery.Entry, bool)
	LookupExternal(name string) (discovery.Entry, bool)
}

// Options configure a Controller.
type Options struct {
	// Client reads MetricRules (and namespaces, for NamespaceSelector)
	// and writes their status.
	Client dynamic.Interface
	// Discovery tells whether the MetricRule CRD is installed; nil
	// assumes it is.
	Discovery k8sdiscovery.DiscoveryInterface
	Env       *Env
	Cluster   ClusterRegistry
	// ListersFor are the series listers of a namespace's rules, by
	// source: a backend with tenants lists that namespace's tenant.
	ListersFor func(namespace string) map[string]discovery.SeriesLister
	// NamespaceSelector selects the namespaces whose MetricRules are
	// served; nil or empty selects every namespace.
	NamespaceSelector labels.Selector
	// MaxRulesPerNamespace bounds the rule entries (rules and
	// externalRules) of all MetricRules of a namespace; 0: no bound.
	MaxRulesPerNamespace int
	// MaxSeries bounds the series one series query of a MetricRule may
	// list; 0: no bound.
	MaxSeries int
	// Interval between relists of each MetricRule, and MaxAge how far
	// back series are looked for, as for the cluster's rules.
	Interval, MaxAge time.Duration
	// Timeout bounds one series listing; default 30s.
	Timeout time.Duration
	// Concurrency is how many MetricRules relist at once, all namespaces
	// together; default 4.
	Concurrency int
	// Workers sync namespaces at once; default 2.
	Workers int
	// CRDCheckInterval is how often a missing CRD is looked for again;
	// default 1m.
	CRDCheckInterval time.Duration
	// StatusRefresh is how stale lastDiscoveryTime may get before it
	// alone is written; default 5m.
	StatusRefresh time.Duration
	Clock         clock.WithTicker
	Registerer    prometheus.Registerer
}

// Controller serves MetricRules: it watches them, compiles each new
// generation, runs a discovery registry per accepted resource, answers the
// provider's namespaced lookups from them, and writes each resource's
// status when it changes.
//
// Serving and status writes have queues and workers of their own: a sync
// that serves a namespace's rules does no I/O, so a new resource is
// served as soon as it is seen, however many status writes wait (the
// client's rate limit, 5 a second by default, makes the first statuses of
// a thousand new resources take minutes).
type Controller struct {
	opts  Options
	queue workqueue.TypedRateLimitingInterface[string] // namespaces to sync
	// statusQueue are the namespaces whose statuses may need writing.
	statusQueue workqueue.TypedRateLimitingInterface[string]
	gate        chan struct{} // relists at once

	// tick is closed at each relist interval, then replaced: every
	// accepted resource relists on it, so the thousand relists of an
	// interval run back to back within the gate, as the cluster
	// registry's do, rather than each on a ticker of its own (spread
	// over the interval, each paid its own wake-ups).
	tickMu sync.Mutex
	tick   chan struct{}

	// decoded are the resources as last read from the cache, by UID, so
	// that a sync of an unchanged resource (the informer resyncs every
	// interval) does not decode it again.
	decodeMu sync.Mutex
	decoded  map[types.UID]decodedRule

	rules      cache.SharedIndexInformer
	namespaces cache.SharedIndexInformer // nil without a selector

	mu          sync.RWMutex
	byNamespace map[string][]*served // accepted, in creation order
	// decided is each namespace's resources as its last sync decided
	// them, for the status writers.
	decided     map[string][]decision
	servedByUID map[types.UID]*served
	compiled    map[types.UID]*compileResult
	firstSeen   map[types.UID]seen
	// known are the names of each namespace's resources at its last sync.
	known    map[string]map[string]bool
	metrics  controllerMetrics
	crdReady bool
}

var _ provider.NamespacedRegistry = (*Controller)(nil)

type decodedRule struct {
	resourceVersion string
	mr              *MetricRule
}

type compileResult struct {
	namespace  string
	generation int64
	compiled   *Compiled
	refusal    *Refusal
}

// seen is when the controller first saw a generation of a resource.
type seen struct {
	generation int64
	at         time.Time
}

// New returns a controller; call Run to start it.
func New(opts Options) *Controller {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.CRDCheckInterval <= 0 {
		opts.CRDCheckInterval = time.Minute
	}
	if opts.StatusRefresh <= 0 {
		opts.StatusRefresh = 5 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.NamespaceSelector != nil && opts.NamespaceSelector.Empty() {
		opts.NamespaceSelector = nil
	}
	return &Controller{
		opts:        opts,
		queue:       workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "metricrules"}),
		statusQueue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "metricrules_status"}),
		gate:        make(chan struct{}, opts.Concurrency),
		tick:        make(chan struct{}),
		decoded:     map[types.UID]decodedRule{},
		byNamespace: map[string][]*served{},
		decided:     map[string][]decision{},
		servedByUID: map[types.UID]*served{},
		compiled:    map[types.UID]*compileResult{},
		firstSeen:   map[types.UID]seen{},
		known:       map[string]map[string]bool{},
		metrics:     newControllerMetrics(opts.Registerer),
	}
}

// Run waits for the CRD (logging once that it is missing and looking
// again every CRDCheckInterval), then watches MetricRules until ctx is
// cancelled. It returns when ctx is done; it never fails Gantry.
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown()
	defer c.statusQueue.ShutDown()
	if !c.waitForCRD(ctx) {
		return
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(c.opts.Client, c.opts.Interval)
	c.rules = factory.ForResource(GVR).Informer()
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			c.queue.Add(u.GetNamespace())
		}
	}
	if _, err := c.rules.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		klog.ErrorS(err, "watching MetricRules")
		return
	}
	synced := []cache.InformerSynced{c.rules.HasSynced}
	if c.opts.NamespaceSelector != nil {
		nsFactory := dynamicinformer.NewDynamicSharedInformerFactory(c.opts.Client, 0)
		c.namespaces = nsFactory.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Informer()
		nsEnqueue := func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				c.queue.Add(u.GetName())
			}
		}
		if _, err := c.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    nsEnqueue,
			UpdateFunc: func(_, obj any) { nsEnqueue(obj) },
		}); err != nil {
			klog.ErrorS(err, "watching namespaces for --metricrule-namespace-selector")
			return
		}
		synced = append(synced, c.namespaces.HasSynced)
		nsFactory.Start(ctx.Done())
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	klog.InfoS("serving MetricRules", "namespaceSelector", c.selectorString(), "maxRulesPerNamespace", c.opts.MaxRulesPerNamespace, "maxSeries", c.opts.MaxSeries)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.runTicks(ctx)
	}()
	for range c.opts.Workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
		go func() {
			defer wg.Done()
			for c.processNextStatus(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	c.statusQueue.ShutDown()
	wg.Wait()
	c.mu.Lock()
	for _, s := range c.servedByUID {
		s.stop()
	}
	c.mu.Unlock()
}

// waitForCRD reports whether the MetricRule resource is served, waiting
// for it until ctx is done.
func (c *Controller) waitForCRD(ctx context.Context) bool {
	if c.opts.Discovery == nil {
		return true
	}
	logged := false
	t := c.opts.Clock.NewTicker(c.opts.CRDCheckInterval)
	defer t.Stop()
	for {
		_, err := c.opts.Discovery.ServerResourcesForGroupVersion(GVR.GroupVersion().String())
		if err == nil {
			if logged {
				klog.InfoS("the MetricRule CRD is installed now", "resource", GVR.String())
			}
			c.mu.Lock()
			c.crdReady = true
			c.mu.Unlock()
			return true
		}
		if !logged {
			klog.InfoS("MetricRules are not served: the CRD is not installed (or not readable); checking again periodically", "resource", GVR.String(), "interval", c.opts.CRDCheckInterval, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C():
		}
	}
}

func (c *Controller) selectorString() string {
	if c.opts.NamespaceSelector == nil {
		return "(every namespace)"
	}
	return c.opts.NamespaceSelector.String()
}

func (c *Controller) processNext(ctx context.Context) bool {
	ns, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(ns)
	retry, err := c.syncNamespace(ctx, ns)
	switch {
	case err != nil:
		klog.ErrorS(err, "syncing MetricRules", "namespace", ns)
		c.queue.AddRateLimited(ns)
	case retry > 0:
		c.queue.Forget(ns)
		c.queue.AddAfter(ns, retry)
	default:
		c.queue.Forget(ns)
	}
	return true
}

func (c *Controller) processNextStatus(ctx context.Context) bool {
	ns, shutdown := c.statusQueue.Get()
	if shutdown {
		return false
	}
	defer c.statusQueue.Done(ns)
	if err := c.writeStatuses(ctx, ns); err != nil {
		klog.ErrorS(err, "writing MetricRule statuses", "namespace", ns)
		c.statusQueue.AddRateLimited(ns)
		return true
	}
	c.statusQueue.Forget(ns)
	return true
}

// LookupCustomIn finds the MetricRule of namespace that serves info: the
// earliest created, when several do.
func (c *Controller) LookupCustomIn(namespace string, info cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	c.mu.RLock()
	list := c.byNamespace[namespace]
	c.mu.RUnlock()
	for _, s := range list {
		if e, ok := s.registry.LookupCustom(info); ok {
			return e, true
		}
	}
	return discovery.Entry{}, false
}

// LookupExternalIn is LookupCustomIn for an external metric.
func (c *Controller) LookupExternalIn(namespace, metric string) (discovery.Entry, bool) {
	c.mu.RLock()
	list := c.byNamespace[namespace]
	c.mu.RUnlock()
	for _, s := range list {
		if e, ok := s.registry.LookupExternal(metric); ok {
			return e, true
		}
	}
	return discovery.Entry{}, false
}

// NotReady names the MetricRules whose Ready condition is not True, with
// its reason, as "team-a/web: NoSeries"; sorted.
func (c *Controller) NotReady() []string {
	if c.rules == nil {
		return nil
	}
	var out []string
	for _, obj := range c.rules.GetStore().List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		mr, err := FromUnstructured(u)
		if err != nil {
			continue
		}
		cond := findCondition(mr.Status.Conditions, ConditionReady)
		if cond == nil {
			out = append(out, mr.String()+": not synced yet")
		} else if cond.Status != metav1.ConditionTrue {
			out = append(out, mr.String()+": "+cond.Reason)
		}
	}
	slices.Sort(out)
	return out
}

// decision is what a namespace's sync decided for one of its resources:
// refused, or served.
type decision struct {
	mr      *MetricRule
	refusal *Refusal
	served  *served
}

// syncNamespace brings the served rules of one namespace's MetricRules in
// line with the objects, then asks the status writers to bring their
// statuses in line too. It does no I/O. retry > 0 asks for another sync
// after it (the namespace is not in the cache yet).
func (c *Controller) syncNamespace(ctx context.Context, namespace string) (retry time.Duration, err error) {
	objs, err := c.rules.GetIndexer().ByIndex(cache.NamespaceIndex, namespace)
	if err != nil {
		return 0, err
	}
	var mrs []*MetricRule
	present := map[types.UID]bool{}
	for _, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		present[u.GetUID()] = true
		mr, err := c.decode(u)
		if err != nil {
			klog.ErrorS(err, "reading a MetricRule")
			continue
		}
		mrs = append(mrs, mr)
	}
	c.forgetDecoded(namespace, present)
	// Creation order decides who keeps working when the namespace has
	// too many rules, and who serves a metric two resources yield.
	slices.SortFunc(mrs, func(a, b *MetricRule) int {
		if c := a.Created.Compare(b.Created.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})

	allowed, known := c.namespaceAllowed(namespace)
	if !known && len(mrs) > 0 {
		return time.Second, nil
	}

	decisions := make([]decision, 0, len(mrs))
	entries := 0
	for _, mr := range mrs {
		d := decision{mr: mr}
		var compiled *Compiled
		switch {
		case !allowed:
			d.refusal = &Refusal{Reason: ReasonNamespaceNotAllowed, Problems: []string{
				fmt.Sprintf("namespace %q may not define MetricRules: it does not match the admin's --metricrule-namespace-selector %q", namespace, c.opts.NamespaceSelector.String()),
			}}
		default:
			compiled, d.refusal = c.compile(mr)
		}
		if d.refusal == nil && c.opts.MaxRulesPerNamespace > 0 && entries+compiled.Entries() > c.opts.MaxRulesPerNamespace {
			d.refusal = &Refusal{Reason: ReasonTooManyRules, Problems: []string{
				fmt.Sprintf("spec: %d rule entries would make %d in namespace %q, counting the MetricRules created before this one; at most %d are allowed (--metricrule-max-rules-per-namespace)", compiled.Entries(), entries+compiled.Entries(), namespace, c.opts.MaxRulesPerNamespace),
			}}
		}
		if d.refusal == nil {
			entries += compiled.Entries()
			d.served = c.serve(ctx, mr, compiled)
		}
		decisions = append(decisions, d)
	}

	// Publish the namespace's served rules, in creation order, and stop
	// the ones that are no longer accepted or no longer exist.
	c.mu.Lock()
	var list []*served
	keep := map[types.UID]bool{}
	for _, d := range decisions {
		if d.served != nil {
			list = append(list, d.served)
			keep[d.mr.UID] = true
		}
	}
	for _, s := range c.byNamespace[namespace] {
		if !keep[s.uid] {
			s.stop()
			delete(c.servedByUID, s.uid)
		}
	}
	if len(list) == 0 {
		delete(c.byNamespace, namespace)
	} else {
		c.byNamespace[namespace] = list
	}
	for uid, cr := range c.compiled {
		if cr.namespace == namespace && !present[uid] {
			delete(c.compiled, uid)
			delete(c.firstSeen, uid)
		}
	}
	names := map[string]bool{}
	for _, mr := range mrs {
		names[mr.Name] = true
	}
	for name := range c.known[namespace] {
		if !names[name] {
			c.metrics.forget(namespace, name)
		}
	}
	if len(names) == 0 {
		delete(c.known, namespace)
		delete(c.decided, namespace)
	} else {
		c.known[namespace] = names
		c.decided[namespace] = decisions
	}
	c.mu.Unlock()
	c.statusQueue.Add(namespace)
	return 0, nil
}

// writeStatuses writes the statuses of a namespace's resources that
// differ from what its last sync decided and their registries found.
// Each status is compared with the object the cache holds now; a resource
// whose generation changed since is left to the sync that change asks for.
func (c *Controller) writeStatuses(ctx context.Context, namespace string) error {
	c.mu.RLock()
	decisions, list := c.decided[namespace], c.byNamespace[namespace]
	c.mu.RUnlock()
	var errs []error
	for _, d := range decisions {
		obj, exists, err := c.rules.GetStore().GetByKey(namespace + "/" + d.mr.Name)
		if err != nil || !exists {
			continue
		}
		u, ok := obj.(*unstructured.Unstructured)
		if !ok || u.GetUID() != d.mr.UID || u.GetGeneration() != d.mr.Generation {
			continue
		}
		mr, err := c.decode(u)
		if err != nil {
			continue
		}
		st, write := c.status(mr, d.refusal, d.served, list)
		if !write {
			continue
		}
		if err := c.writeStatus(ctx, mr, st); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// decode reads a resource from the cache's object, once per
// resourceVersion. The result is shared: nothing may change it.
func (c *Controller) decode(u *unstructured.Unstructured) (*MetricRule, error) {
	uid, rv := u.GetUID(), u.GetResourceVersion()
	c.decodeMu.Lock()
	d, ok := c.decoded[uid]
	c.decodeMu.Unlock()
	if ok && rv != "" && d.resourceVersion == rv {
		return d.mr, nil
	}
	mr, err := FromUnstructured(u)
	if err != nil {
		return nil, err
	}
	c.decodeMu.Lock()
	c.decoded[uid] = decodedRule{resourceVersion: rv, mr: mr}
	c.decodeMu.Unlock()
	return mr, nil
}

// forgetDecoded drops the decoded resources of namespace that are no
// longer in the cache.
func (c *Controller) forgetDecoded(namespace string, present map[types.UID]bool) {
	c.decodeMu.Lock()
	defer c.decodeMu.Unlock()
	for uid, d := range c.decoded {
		if d.mr.Namespace == namespace && !present[uid] {
			delete(c.decoded, uid)
		}
	}
}

// runTicks closes the tick channel every interval until ctx is done.
func (c *Controller) runTicks(ctx context.Context) {
	t := c.opts.Clock.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		c.tickMu.Lock()
		close(c.tick)
		c.tick = make(chan struct{})
		c.tickMu.Unlock()
	}
}

// nextTick is closed at the next relist interval.
func (c *Controller) nextTick() <-chan struct{} {
	c.tickMu.Lock()
	defer c.tickMu.Unlock()
	return c.tick
}

// namespaceAllowed reports whether the admin's selector selects
// namespace, and whether the namespace is known to the cache yet.
func (c *Controller) namespaceAllowed(namespace string) (allowed, known bool) {
	if c.opts.NamespaceSelector == nil {
		return true, true
	}
	obj, exists, err := c.namespaces.GetStore().GetByKey(namespace)
	if err != nil || !exists {
		return false, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return false, false
	}
	return c.opts.NamespaceSelector.Matches(labels.Set(u.GetLabels())), true
}

// compile compiles a generation of a resource once.
func (c *Controller) compile(mr *MetricRule) (*Compiled, *Refusal) {
	c.mu.Lock()
	cr, ok := c.compiled[mr.UID]
	if f, ok := c.firstSeen[mr.UID]; !ok || f.generation != mr.Generation {
		c.firstSeen[mr.UID] = seen{generation: mr.Generation, at: c.opts.Clock.Now()}
	}
	c.mu.Unlock()
	if ok && cr.generation == mr.Generation {
		return cr.compiled, cr.refusal
	}
	compiled, refusal := Compile(mr.Namespace, mr.Name, mr.Spec, c.opts.Env)
	c.mu.Lock()
	c.compiled[mr.UID] = &compileResult{generation: mr.Generation, compiled: compiled, refusal: refusal, namespace: mr.Namespace}
	c.mu.Unlock()
	return compiled, refusal
}

// serve starts or updates the registry of an accepted resource.
func (c *Controller) serve(ctx context.Context, mr *MetricRule, compiled *Compiled) *served {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.servedByUID[mr.UID]
	if s != nil {
		s.update(mr.Generation, compiled)
		return s
	}
	s = c.newServed(mr, compiled)
	c.servedByUID[mr.UID] = s
	var sctx context.Context
	sctx, s.cancel = context.WithCancel(ctx)
	go c.runServed(sctx, s)
	return s
}

// runServed relists a resource's series at once, then every interval and
// right after each new generation, until ctx is cancelled.
func (c *Controller) runServed(ctx context.Context, s *served) {
	for {
		next := c.nextTick()
		c.relist(ctx, s)
		select {
		case <-ctx.Done():
			return
		case <-next:
		case <-s.kick:
		}
	}
}

// relist lists the series of one resource, within the controller's
// concurrency, counts the objects with data, and asks for its
// namespace's status to be synced.
func (c *Controller) relist(ctx context.Context, s *served) {
	select {
	case c.gate <- struct{}{}:
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	gen := s.generation
	s.mu.Unlock()
	before := servedMetrics(s.registry)
	err := s.registry.Relist(ctx)
	<-c.gate
	if ctx.Err() != nil {
		return
	}
	listed := map[string][]model.LabelSet{}
	for source, rec := range s.recorders {
		for q, sets := range rec.take() {
			listed[source+"\x00"+q] = sets
		}
	}
	objects := countObjects(s.registry, listed)
	now := c.opts.Clock.Now()

	after := servedMetrics(s.registry)

	s.mu.Lock()
	current := s.generation == gen
	// The namespace's sync (serving, conflicts, status) needs to run only
	// when the relist changed what it reads; the informer's resync, every
	// interval, runs it anyway. With a thousand MetricRules, a sync after
	// every relist was most of Gantry's idle CPU.
	changed := current && s.relistedGeneration != gen ||
		errText(s.lastErr) != errText(err) ||
		!slices.EqualFunc(before, after, func(a, b metricRef) bool { return a.key == b.key })
	if current {
		s.relistedGeneration = gen
	}
	s.lastRelist, s.lastErr = now, err
	for k, n := range objects {
		if old, ok := s.objects[k]; !ok || old != n {
			changed = true
		}
		s.objects[k] = n
	}
	serving := len(after) > 0
	observe := current && serving && s.servedGeneration != gen
	if observe {
		s.servedGeneration = gen
	}
	s.mu.Unlock()

	if observe {
		c.mu.RLock()
		f, ok := c.firstSeen[s.uid]
		c.mu.RUnlock()
		if ok && f.generation == gen {
			c.metrics.applyToServed.Observe(now.Sub(f.at).Seconds())
		}
	}
	if err != nil {
		klog.V(2).InfoS("MetricRule discovery failed", "metricRule", s.String(), "err", err)
	}
	if changed {
		c.queue.Add(s.namespace)
	}
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// countObjects counts, per metric a registry serves, the objects of its
// resource among the series listed for its rule; external metrics count
// 0. Metrics whose series were not listed this time (their query failed)
// are left out.
func countObjects(reg *discovery.Registry, listed map[string][]model.LabelSet) map[metricKey]int32 {
	out := map[metricKey]int32{}
	for _, info := range reg.CustomMetrics() {
		e, ok := reg.LookupCustom(info)
		if !ok {
			continue
		}
		sets, ok := listed[e.Rule.Source+"\x00"+e.Rule.SeriesQuery]
		if !ok {
			continue
		}
		label, err := e.Rule.Labels.LabelFor(info.GroupResource)
		if err != nil {
			continue
		}
		names := map[model.LabelValue]struct{}{}
		for _, ls := range sets {
			if string(ls[model.MetricNameLabel]) != e.Series {
				continue
			}
			if v := ls[label]; v != "" {
				names[v] = struct{}{}
			}
		}
		out[metricKey{name: info.Metric, resource: info.GroupResource.String()}] = int32(len(names))
	}
	return out
}

// metricKey is a served metric: its name and resource as the status
// lists them.
type metricKey struct{ name, resource string }

// servedMetrics lists what a registry serves, sorted. A metric about a
// cluster-scoped resource other than namespaces is discovered but never
// served: no request in a namespace is about such objects.
func servedMetrics(reg *discovery.Registry) []metricRef {
	var out []metricRef
	for _, info := range reg.CustomMetrics() {
		if !info.Namespaced && info.GroupResource != rules.Namespaces {
			continue
		}
		out = append(out, metricRef{key: metricKey{name: info.Metric, resource: info.GroupResource.String()}, custom: &info})
	}
	for _, info := range reg.ExternalMetrics() {
		out = append(out, metricRef{key: metricKey{name: info.Metric, resource: "external"}})
	}
	slices.SortFunc(out, func(a, b metricRef) int {
		if c := strings.Compare(a.key.name, b.key.name); c != 0 {
			return c
		}
		return strings.Compare(a.key.resource, b.key.resource)
	})
	return out
}

type metricRef struct {
	key    metricKey
	custom *cmprovider.CustomMetricInfo // nil for external
}

// served is an accepted MetricRule: its registry and what its relists
// found.
type served struct {
	namespace, name string
	uid             types.UID
	registry        *discovery.Registry
	// recorders are the registry's listers, by source.
	recorders map[string]*seriesRecorder
	kick      chan struct{}
	cancel    context.CancelFunc

	mu                 sync.Mutex
	generation         int64 // compiled rules in the registry
	relistedGeneration int64 // last generation a relist completed for
	servedGeneration   int64 // last generation observed as served
	lastRelist         time.Time
	lastErr            error
	objects            map[metricKey]int32
}

func (s *served) String() string { return s.namespace + "/" + s.name }

func (c *Controller) newServed(mr *MetricRule, compiled *Compiled) *served {
	s := &served{
		namespace:  mr.Namespace,
		name:       mr.Name,
		uid:        mr.UID,
		recorders:  map[string]*seriesRecorder{},
		kick:       make(chan struct{}, 1),
		generation: mr.Generation,
		objects:    map[metricKey]int32{},
	}
	listers := map[string]discovery.SeriesLister{}
	if c.opts.ListersFor != nil {
		for source, l := range c.opts.ListersFor(mr.Namespace) {
			rec := &seriesRecorder{next: l, namespace: mr.Namespace, maxSeries: c.opts.MaxSeries}
			s.recorders[source] = rec
			listers[source] = rec
		}
	}
	s.registry = discovery.New(discovery.Options{
		Rules:         compiled.Custom,
		ExternalRules: compiled.External,
		Listers:       listers,
		Mapper:        c.opts.Env.Mapper,
		Interval:      c.opts.Interval,
		MaxAge:        c.opts.MaxAge,
		Timeout:       c.opts.Timeout,
		Clock:         c.opts.Clock,
		// No Registerer: a registry per resource would register the same
		// metrics again; the controller's own metrics cover them.
		Concurrency: 1,
	})
	return s
}

// update hands a new generation's rules to the registry and relists at
// once; the previous generation's metrics are served until then.
func (s *served) update(generation int64, compiled *Compiled) {
	s.mu.Lock()
	if s.generation == generation {
		s.mu.Unlock()
		return
	}
	s.generation = generation
	s.registry.SetRules(compiled.Custom, compiled.External)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *served) stop() {
	if s.cancel != nil {
		s.cancel()
	}
}
