package provider

import (
	"context"
	"fmt"
	"sync"

	cmprovider "sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/gantry-dev/gantry/adapter/discovery"
)

// NamespacedRegistry finds the metrics a namespace defines for itself
// (MetricRules, adapter/metricrules). The provider asks it only after the
// cluster registry found nothing (the cluster's rules win a name
// conflict), only for a request made in a namespace, and only about that
// namespace; its metrics never appear in ListAllMetrics or
// ListAllExternalMetrics. Lookups must not block on I/O.
type NamespacedRegistry interface {
	LookupCustomIn(namespace string, info cmprovider.CustomMetricInfo) (discovery.Entry, bool)
	LookupExternalIn(namespace, metric string) (discovery.Entry, bool)
}

// namespaced is what ServeNamespaced installs.
type namespaced struct {
	registry NamespacedRegistry
	slots    *namespaceSlots // nil: no per-namespace bound
}

// ServeNamespaced makes the provider answer, for requests made in a
// namespace, the metrics registry holds for that namespace, with at most
// maxInFlight backend queries of one namespace's rules at once (0: no
// bound). It is called once, before the API serves.
func (p *MetricsProvider) ServeNamespaced(registry NamespacedRegistry, maxInFlight int) {
	n := &namespaced{registry: registry}
	if maxInFlight > 0 {
		n.slots = &namespaceSlots{max: maxInFlight, byNamespace: map[string]*slotGroup{}}
	}
	p.namespaced.Store(n)
}

// lookupCustom finds the rule answering info for a request made in
// requestNamespace ("" for none): the cluster's rule, else one the
// namespace defined. An entry of a namespaced rule is returned only for a
// request in that rule's own namespace.
func (p *MetricsProvider) lookupCustom(requestNamespace string, info cmprovider.CustomMetricInfo) (discovery.Entry, bool) {
	if e, ok := p.opts.Registry.LookupCustom(info); ok {
		return e, true
	}
	n := p.namespaced.Load()
	if n == nil || requestNamespace == "" {
		return discovery.Entry{}, false
	}
	e, ok := n.registry.LookupCustomIn(requestNamespace, info)
	if !ok || e.Rule == nil || e.Rule.Namespace != requestNamespace {
		return discovery.Entry{}, false
	}
	return e, true
}

// lookupExternal is lookupCustom for an external metric.
func (p *MetricsProvider) lookupExternal(requestNamespace, metric string) (discovery.Entry, bool) {
	if e, ok := p.opts.Registry.LookupExternal(metric); ok {
		return e, true
	}
	n := p.namespaced.Load()
	if n == nil || requestNamespace == "" {
		return discovery.Entry{}, false
	}
	e, ok := n.registry.LookupExternalIn(requestNamespace, metric)
	if !ok || e.Rule == nil || e.Rule.Namespace != requestNamespace {
		return discovery.Entry{}, false
	}
	return e, true
}

// acquireNamespaceSlot waits for one of the backend query slots of
// namespace's rules; release gives it back. Without a bound it returns at
// once.
func (p *MetricsProvider) acquireNamespaceSlot(ctx context.Context, namespace string) (release func(), err error) {
	n := p.namespaced.Load()
	if n == nil || n.slots == nil || namespace == "" {
		return func() {}, nil
	}
	return n.slots.acquire(ctx, namespace)
}

// namespaceSlots bounds the backend queries of each namespace's own rules
// in flight at once, so that one team's slow or heavy rules take at most
// its share of the backend's in-flight bound. A namespace's group exists
// while some query holds or waits for a slot.
type namespaceSlots struct {
	max int

	mu          sync.Mutex
	byNamespace map[string]*slotGroup
}

type slotGroup struct {
	slots chan struct{}
	users int // holders and waiters
}

func (s *namespaceSlots) acquire(ctx context.Context, namespace string) (func(), error) {
	s.mu.Lock()
	g := s.byNamespace[namespace]
	if g == nil {
		g = &slotGroup{slots: make(chan struct{}, s.max)}
		s.byNamespace[namespace] = g
	}
	g.users++
	s.mu.Unlock()
	leave := func() {
		s.mu.Lock()
		g.users--
		if g.users == 0 {
			delete(s.byNamespace, namespace)
		}
		s.mu.Unlock()
	}
	select {
	case g.slots <- struct{}{}:
		return func() {
			<-g.slots
			leave()
		}, nil
	case <-ctx.Done():
		leave()
		return nil, fmt.Errorf("namespace %q already has %d backend queries of its MetricRules in flight (--metricrule-namespace-max-in-flight): %w", namespace, s.max, ctx.Err())
	}
}
