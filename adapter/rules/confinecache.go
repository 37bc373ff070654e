package rules

import "sync"

// A confined rule renders the same few query texts request after request
// (an HPA asks about the same metric of the same namespace every 15 s, and
// the namespace query names no object), and each must be checked by the
// PromQL parser and confined by adapter/enforce, which parses it, rewrites
// the tree, prints it and parses the result once more to check it. The
// outcome depends on nothing but the rendered text and the rule's label
// and namespace, so a rule keeps the confined text of the last texts it
// rendered: a request that renders one of them again sends exactly the
// query the enforcement produced for it, without parsing it three times.
// Only successes are kept; a text that failed is checked again each time.

// Bounds of a rule's cache: a rendered text longer than maxCachedQuery
// (an object query naming many objects) is not kept, and at most
// maxCachedQueries texts are, so a rule holds at most a few hundred KiB
// even when every request names other objects.
const (
	maxCachedQueries = 16
	maxCachedQuery   = 8 << 10
)

// confineCache maps a rendered query text to its confined text, for one
// label and namespace.
type confineCache struct {
	label, namespace string

	mu      sync.Mutex
	byQuery map[string]string
}

func newConfineCache(label, namespace string) *confineCache {
	return &confineCache{label: label, namespace: namespace, byQuery: make(map[string]string)}
}

// get returns the confined text of q, if it is kept for label and
// namespace.
func (c *confineCache) get(q, label, namespace string) (string, bool) {
	if c == nil || c.label != label || c.namespace != namespace {
		return "", false
	}
	c.mu.Lock()
	confined, ok := c.byQuery[q]
	c.mu.Unlock()
	return confined, ok
}

// put keeps confined as the confined text of q, making room by dropping
// another text when the cache is full.
func (c *confineCache) put(q, confined, label, namespace string) {
	if c == nil || c.label != label || c.namespace != namespace || len(q) > maxCachedQuery {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byQuery[q]; !ok && len(c.byQuery) >= maxCachedQueries {
		for k := range c.byQuery {
			delete(c.byQuery, k)
			break
		}
	}
	c.byQuery[q] = confined
}
