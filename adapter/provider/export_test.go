package provider

import "time"

// SetResourceClock fixes the evaluation time of a ResourceProvider's queries.
func SetResourceClock(p *ResourceProvider, now func() time.Time) { p.now = now }
