package discovery

import "time"

// LastSuccess is when a relist last succeeded for every series query; zero
// before the first. Explanations report it (adapter/explain).
func (r *Registry) LastSuccess() time.Time {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if !r.everOK {
		return time.Time{}
	}
	return r.lastOK
}

// Interval is the relist interval.
func (r *Registry) Interval() time.Duration { return r.opts.Interval }
