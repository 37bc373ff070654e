package explain

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
)

// DefaultAPIServiceTTL is how long an APIService read serves explanations.
const DefaultAPIServiceTTL = 5 * time.Second

// apiServiceCache keeps each APIService read for ttl, and lets concurrent
// explanations share one read. An explanation needs two APIServices (the
// metric's and the diagnostics one) and a status four, each a GET through
// Gantry's client, whose rate limiter (--client-qps, 5 a second by
// default) made every explanation wait 400 ms once a few had been asked;
// the kube-apiserver's own view of an APIService's availability is
// checked only every few tens of seconds, so a few seconds more change
// nothing. A failed read is not kept.
type apiServiceCache struct {
	ttl   time.Duration
	clock clock.PassiveClock
	reads singleflight.Group

	mu     sync.Mutex
	byName map[string]apiServiceRead
}

type apiServiceRead struct {
	svc APIService
	at  time.Time
}

func newAPIServiceCache(ttl time.Duration, clk clock.PassiveClock) *apiServiceCache {
	return &apiServiceCache{ttl: ttl, clock: clk, byName: map[string]apiServiceRead{}}
}

// get reads the named APIService through cluster, or returns the read
// made less than ttl ago.
func (c *apiServiceCache) get(ctx context.Context, cluster Cluster, name string) (APIService, error) {
	c.mu.Lock()
	r, ok := c.byName[name]
	c.mu.Unlock()
	if ok && c.clock.Since(r.at) < c.ttl {
		return r.svc, nil
	}
	v, err, _ := c.reads.Do(name, func() (any, error) {
		at := c.clock.Now()
		svc, err := cluster.APIService(ctx, name)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.byName[name] = apiServiceRead{svc: svc, at: at}
		c.mu.Unlock()
		return svc, nil
	})
	if err != nil {
		return APIService{}, err
	}
	return v.(APIService), nil
}
