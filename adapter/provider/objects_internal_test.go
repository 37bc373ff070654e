package provider

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/tools/cache"
)

// TestTrimMetadata: the object cache keeps what selectors and answers read
// and drops the rest.
func TestTrimMetadata(t *testing.T) {
	in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "7",
		Labels:          map[string]string{"app": "web"},
		Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "web-rs"}},
		Finalizers:      []string{"x"},
	}}
	want := metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"app": "web"}}
	out, err := trimMetadata(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, out.(*metav1.PartialObjectMetadata).ObjectMeta); diff != "" {
		t.Errorf("trimmed metadata (-want +got):\n%s", diff)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web-1"}
	if got, err := trimMetadata(tomb); err != nil || got != tomb {
		t.Errorf("tombstone: %v, %v; want it unchanged", got, err)
	}
}

// TestObjectCacheAnswers: selector answers are kept until an object of
// their namespace is added, deleted or relabelled, and are right after each.
func TestObjectCacheAnswers(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pod := func(ns, name, app string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
		}
	}
	client := metadatafake.NewSimpleMetadataClient(scheme, pod("a", "web-1", "web"), pod("a", "web-2", "web"), pod("a", "db-1", "db"), pod("b", "web-9", "web"))
	mapper := apimeta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Pod"), apimeta.RESTScopeNamespace)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewObjectCache(ctx, client, mapper, 0, 0)
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	tracker := client.Tracker()
	gr := schema.GroupResource{Resource: "pods"}
	web := labels.SelectorFromSet(labels.Set{"app": "web"})

	names := func(ns string) []string {
		t.Helper()
		n, err := c.Names(ctx, gr, ns, web)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// eventually waits (bounded) for the informer to deliver a change.
	eventually := func(ns string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := names(ns)
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespace %q app=web: %v, want %v", ns, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	hits := func() uint64 {
		rc, _, err := c.informer(gr)
		if err != nil {
			t.Fatal(err)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rc.hits
	}

	eventually("a", "web-1", "web-2")
	h := hits()
	if got := names("a"); !slices.Equal(got, []string{"web-1", "web-2"}) || hits() != h+1 {
		t.Fatalf("repeated request: %v, hits %d → %d; want the kept answer", got, h, hits())
	}
	eventually("", "web-1", "web-2", "web-9")
	if n, err := c.Names(ctx, gr, "a", labels.Nothing()); err != nil || len(n) != 0 {
		t.Errorf("labels.Nothing(): %v, %v; want no objects", n, err)
	}
	if n, err := c.Names(ctx, gr, "a", labels.Everything()); err != nil || len(n) != 3 {
		t.Errorf("labels.Everything() after labels.Nothing(): %v, %v; want all three pods", n, err)
	}

	// An update that keeps the labels (a status change, for a pod) keeps
	// the answer. Events arrive in order: once a later change in another
	// namespace shows, the first one has been handled.
	p := pod("a", "web-1", "web")
	p.Annotations = map[string]string{"status": "changed"}
	if err := tracker.Update(gvr, p, "a"); err != nil {
		t.Fatal(err)
	}
	if err := tracker.Update(gvr, pod("b", "web-9", "db"), "b"); err != nil {
		t.Fatal(err)
	}
	eventually("b")
	h = hits()
	if got := names("a"); !slices.Equal(got, []string{"web-1", "web-2"}) || hits() != h+1 {
		t.Errorf("after an update that kept the labels: %v, hits %d → %d; want the kept answer", got, h, hits())
	}
	eventually("", "web-1", "web-2")

	// Relabel, delete, add: each shows.
	if err := tracker.Update(gvr, pod("a", "web-2", "db"), "a"); err != nil {
		t.Fatal(err)
	}
	eventually("a", "web-1")
	if err := tracker.Delete(gvr, "a", "web-1"); err != nil {
		t.Fatal(err)
	}
	eventually("a")
	if err := tracker.Create(gvr, pod("a", "web-3", "web"), "a"); err != nil {
		t.Fatal(err)
	}
	eventually("a", "web-3")

	// More distinct selectors than the cache keeps: it forgets and stays right.
	for i := range maxAnswers + 10 {
		sel := labels.SelectorFromSet(labels.Set{"app": "web", "n": strconv.Itoa(i)})
		if n, err := c.Names(ctx, gr, "a", sel); err != nil || len(n) != 0 {
			t.Fatalf("selector %d: %v, %v", i, n, err)
		}
	}
	if err := tracker.Create(gvr, pod("a", "web-4", "web"), "a"); err != nil {
		t.Fatal(err)
	}
	eventually("a", "web-3", "web-4")
	eventually("", "web-3", "web-4")
}

// TestResourceCacheForgetting: an answer computed before the cache forgot
// its generations, and stored after, is never served.
func TestResourceCacheForgetting(t *testing.T) {
	rc := &resourceCache{gens: map[string]uint64{}, answers: map[answerKey]answer{}, maxBytes: DefaultSelectorCacheBytes}
	key := answerKey{namespace: "a", selector: "app=web"}
	_, gen, _ := rc.lookup(key) // a request starts computing its answer
	rc.changed(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web-1"}})
	rc.forget()
	rc.store(key, answer{gen: gen, names: []string{"stale"}})
	if a, _, ok := rc.lookup(key); ok {
		t.Errorf("served %v, computed before a change the cache has since forgotten", a.names)
	}
	_, gen, _ = rc.lookup(key)
	rc.store(key, answer{gen: gen, names: []string{"fresh"}})
	if a, _, ok := rc.lookup(key); !ok || a.names[0] != "fresh" {
		t.Errorf("an answer computed after forgetting: %v, %v; want it kept", a.names, ok)
	}
}

// TestResourceCacheTombstone: a deletion the informer saw only as a
// tombstone (DeletedFinalStateUnknown) invalidates the answers of the
// namespace it was in.
func TestResourceCacheTombstone(t *testing.T) {
	rc := &resourceCache{gens: map[string]uint64{}, answers: map[answerKey]answer{}, maxBytes: DefaultSelectorCacheBytes}
	key := answerKey{namespace: "a", selector: "app=web"}
	_, gen, _ := rc.lookup(key)
	rc.store(key, answer{gen: gen, names: []string{"web-1", "web-2"}})
	if _, _, ok := rc.lookup(key); !ok {
		t.Fatal("a fresh answer is not served")
	}
	rc.changed(cache.DeletedFinalStateUnknown{Key: "a/web-1", Obj: nil})
	if a, _, ok := rc.lookup(key); ok {
		t.Errorf("served %v after web-1 of namespace a was deleted (seen as a tombstone)", a.names)
	}
}

// TestResourceCacheBytes: answers to ever new selectors about a large
// namespace stay within the byte bound, and the answer a poller keeps
// asking for is still served from the cache between the others.
func TestResourceCacheBytes(t *testing.T) {
	const maxBytes = 1 << 20
	rc := &resourceCache{gens: map[string]uint64{}, answers: map[answerKey]answer{}, maxBytes: maxBytes}
	objs := make([]*metav1.PartialObjectMetadata, 5000)
	names := make([]string, len(objs))
	for i := range objs {
		names[i] = "web-" + strconv.Itoa(i)
		objs[i] = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: names[i]}}
	}
	store := func(sel string) {
		key := answerKey{namespace: "a", selector: sel}
		_, gen, _ := rc.lookup(key)
		rc.store(key, answer{gen: gen, objs: slices.Clone(objs), names: slices.Clone(names)})
	}
	poller := "app=web"
	hits := 0
	for i := range 2000 {
		store("!rtk" + strconv.Itoa(i))
		if _, _, ok := rc.lookup(answerKey{namespace: "a", selector: poller}); ok {
			hits++
		} else {
			store(poller)
		}
		if rc.bytes > maxBytes {
			t.Fatalf("after %d selectors the answers hold %d bytes, over the bound of %d", i+1, rc.bytes, maxBytes)
		}
	}
	var sum int64
	for k, a := range rc.answers {
		sum += a.size(k)
	}
	if sum != rc.bytes {
		t.Errorf("the answers hold %d bytes, the cache counts %d", sum, rc.bytes)
	}
	if len(rc.answers) == 0 || hits == 0 {
		t.Errorf("%d answers kept, %d poller hits: the bound keeps nothing", len(rc.answers), hits)
	}
	// An answer bigger than the whole bound is not kept.
	big := answer{names: make([]string, maxBytes/16+1)}
	rc.store(answerKey{namespace: "a", selector: "huge"}, big)
	if _, ok := rc.answers[answerKey{namespace: "a", selector: "huge"}]; ok || rc.bytes > maxBytes {
		t.Errorf("an answer over the bound was kept (%d bytes held)", rc.bytes)
	}
}
