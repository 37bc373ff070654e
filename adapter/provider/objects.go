package provider

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// ObjectLister resolves label selectors to object names without asking the
// kube-apiserver per request.
type ObjectLister interface {
	// Names lists the objects of gr in namespace ("" = all or cluster-scoped)
	// matching sel, sorted.
	Names(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]string, error)
	// Objects is Names with each object's namespace, for all-namespace lists.
	Objects(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]*metav1.PartialObjectMetadata, error)
}

// ObjectCache is a shared, metadata-only informer cache. Informers start on
// first use of a resource (or by Warm) and live until the cache's context ends.
type ObjectCache struct {
	ctx     context.Context
	mapper  apimeta.RESTMapper
	factory metadatainformer.SharedInformerFactory
	// maxBytes bounds each resource's kept selector answers.
	maxBytes int64

	mu        sync.Mutex
	informers map[schema.GroupVersionResource]*resourceCache
}

// resourceCache is one resource's informer and the selector answers
// computed from it. An answer is kept with the generation of its namespace
// when it was computed and served again until an object of that namespace
// is added, deleted or relabelled: an HPA polling every 15 s resolves its
// selector once, not on every poll, and status updates (the bulk of pod
// events) do not count as changes.
type resourceCache struct {
	inf cache.SharedIndexInformer

	mu       sync.Mutex
	counter  uint64            // counts changes; never goes back
	gens     map[string]uint64 // namespace → counter at its last change; "" → at any change
	base     uint64            // the generation of namespaces not in gens
	answers  map[answerKey]answer
	bytes    int64 // the answers' size, as answer.size counts it
	maxBytes int64
	hits     uint64 // for tests
}

type answerKey struct{ namespace, selector string }

type answer struct {
	gen   uint64
	objs  []*metav1.PartialObjectMetadata
	names []string
}

// size is the memory an answer kept under key holds beyond the objects
// themselves (which the informer holds anyway): the two slices, the key's
// strings and the map entry. A selector matching 5,000 pods costs 120 KB.
func (a answer) size(key answerKey) int64 {
	return int64(cap(a.objs))*8 + int64(cap(a.names))*16 + int64(len(key.namespace)+len(key.selector)) + 160
}

// maxAnswers bounds the kept answers; when it is reached they are dropped
// together with the generations (see forget).
const maxAnswers = 16384

// DefaultSelectorCacheBytes is the default bound of one resource's kept
// selector answers. Requests with ever new label selectors (each answer
// about a large namespace holds a slice of its objects) cannot make the
// cache hold more; the answers of the few selectors HPAs poll fit many
// times over.
const DefaultSelectorCacheBytes = 16 << 20

func newResourceCache(inf cache.SharedIndexInformer, maxBytes int64) (*resourceCache, error) {
	rc := &resourceCache{inf: inf, gens: map[string]uint64{}, answers: map[answerKey]answer{}, maxBytes: maxBytes}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: rc.changed,
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*metav1.PartialObjectMetadata)
			c, ok2 := cur.(*metav1.PartialObjectMetadata)
			if ok1 && ok2 && maps.Equal(o.Labels, c.Labels) {
				return
			}
			rc.changed(cur)
		},
		DeleteFunc: rc.changed,
	})
	return rc, err
}

func (rc *resourceCache) changed(obj any) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.counter++
	rc.gens[""] = rc.counter
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		rc.gens[m.Namespace] = rc.counter
		return
	}
	// A tombstone: its namespace is in its key, but forgetting everything
	// is as correct and too rare to be worth parsing it.
	rc.forget()
}

// forget drops every answer and generation. Namespaces then read as a base
// generation newer than any handed out before, so an answer computed
// earlier and stored later can never pass for a current one.
func (rc *resourceCache) forget() {
	rc.counter++
	rc.base = rc.counter
	clear(rc.answers)
	clear(rc.gens)
	rc.bytes = 0
}

// lookup returns a current answer for key, or the generation a fresh
// answer must be stored with.
func (rc *resourceCache) lookup(key answerKey) (answer, uint64, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	gen, ok := rc.gens[key.namespace]
	if !ok {
		gen = rc.base
	}
	a, ok := rc.answers[key]
	if ok && a.gen == gen {
		rc.hits++
		return a, gen, true
	}
	return answer{}, gen, false
}

// store keeps a, within the cache's byte bound: answers of an older
// generation of their namespace go first, then others at random (a map's
// order), and an answer larger than the whole bound is not kept.
func (rc *resourceCache) store(key answerKey, a answer) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.answers) >= maxAnswers || len(rc.gens) >= 4*maxAnswers {
		rc.forget()
		return // a is older than the base now
	}
	size := a.size(key)
	if size > rc.maxBytes {
		return
	}
	if old, ok := rc.answers[key]; ok {
		rc.bytes -= old.size(key)
		delete(rc.answers, key)
	}
	if rc.bytes+size > rc.maxBytes {
		for k, old := range rc.answers {
			gen, ok := rc.gens[k.namespace]
			if !ok {
				gen = rc.base
			}
			if old.gen != gen {
				rc.bytes -= old.size(k)
				delete(rc.answers, k)
			}
		}
		for k, old := range rc.answers {
			if rc.bytes+size <= rc.maxBytes {
				break
			}
			rc.bytes -= old.size(k)
			delete(rc.answers, k)
		}
	}
	rc.answers[key] = a
	rc.bytes += size
}

var _ ObjectLister = (*ObjectCache)(nil)

// NewObjectCache returns a cache whose informers stop when ctx ends. Each
// resource keeps at most maxAnswerBytes of selector answers (0: the
// default, DefaultSelectorCacheBytes).
func NewObjectCache(ctx context.Context, client metadata.Interface, mapper apimeta.RESTMapper, resync time.Duration, maxAnswerBytes int64) *ObjectCache {
	if maxAnswerBytes <= 0 {
		maxAnswerBytes = DefaultSelectorCacheBytes
	}
	return &ObjectCache{
		ctx:       ctx,
		maxBytes:  maxAnswerBytes,
		mapper:    mapper,
		factory:   metadatainformer.NewSharedInformerFactoryWithOptions(client, resync, metadatainformer.WithTransform(trimMetadata)),
		informers: map[schema.GroupVersionResource]*resourceCache{},
	}
}

// trimMetadata keeps what selectors and answers read — name, namespace,
// labels, UID, resource version, creation time — and drops the rest
// (managed fields, annotations, owner references, finalizers), which at
// 1,000 nodes × 10 pods was a third of Gantry's live heap.
func trimMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone
	}
	m.ManagedFields = nil
	m.Annotations = nil
	m.OwnerReferences = nil
	m.Finalizers = nil
	return m, nil
}

// Warm starts the informers of the given resources without waiting for them.
func (c *ObjectCache) Warm(grs ...schema.GroupResource) {
	for _, gr := range grs {
		if _, _, err := c.informer(gr); err != nil {
			klog.V(2).InfoS("not caching resource", "resource", gr.String(), "err", err)
		}
	}
}

func (c *ObjectCache) informer(gr schema.GroupResource) (*resourceCache, schema.GroupVersionResource, error) {
	gvr, err := c.mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return nil, gvr, fmt.Errorf("resource %q is not served by the cluster: %w", gr.String(), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rc, ok := c.informers[gvr]
	if !ok {
		if rc, err = newResourceCache(c.factory.ForResource(gvr).Informer(), c.maxBytes); err != nil {
			return nil, gvr, fmt.Errorf("watching %q: %w", gr.String(), err)
		}
		c.informers[gvr] = rc
		c.factory.Start(c.ctx.Done())
	}
	return rc, gvr, nil
}

// Objects lists cached objects of gr matching sel, sorted by namespace and
// name, waiting (within ctx) for the resource's first sync. The slice may be
// shared with other callers: it must not be modified.
func (c *ObjectCache) Objects(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]*metav1.PartialObjectMetadata, error) {
	a, err := c.answer(ctx, gr, namespace, sel)
	return a.objs, err
}

// Names lists the names of cached objects of gr matching sel, in the order
// of Objects. The slice may be shared: it must not be modified.
func (c *ObjectCache) Names(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) ([]string, error) {
	a, err := c.answer(ctx, gr, namespace, sel)
	return a.names, err
}

func (c *ObjectCache) answer(ctx context.Context, gr schema.GroupResource, namespace string, sel labels.Selector) (answer, error) {
	rc, _, err := c.informer(gr)
	if err != nil {
		return answer{}, err
	}
	inf := rc.inf
	if !inf.HasSynced() && !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return answer{}, fmt.Errorf("the object cache for %q has not synced yet", gr.String())
	}
	if sel == nil {
		sel = labels.Everything()
	}
	if _, selectable := sel.Requirements(); !selectable {
		return answer{}, nil // labels.Nothing(), whose String() is Everything's
	}
	key := answerKey{namespace: namespace, selector: sel.String()}
	a, gen, ok := rc.lookup(key)
	if ok {
		return a, nil
	}
	var objs []any
	if namespace != "" {
		if objs, err = inf.GetIndexer().ByIndex(cache.NamespaceIndex, namespace); err != nil {
			return answer{}, err
		}
	} else {
		objs = inf.GetStore().List()
	}
	a = answer{gen: gen}
	for _, o := range objs {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok && sel.Matches(labels.Set(m.Labels)) {
			a.objs = append(a.objs, m)
		}
	}
	slices.SortFunc(a.objs, func(x, y *metav1.PartialObjectMetadata) int {
		if c := strings.Compare(x.Namespace, y.Namespace); c != 0 {
			return c
		}
		return strings.Compare(x.Name, y.Name)
	})
	a.names = make([]string, len(a.objs))
	for i, o := range a.objs {
		a.names[i] = o.Name
	}
	rc.store(key, a)
	return a, nil
}
