package discovery

import "github.com/gantry-dev/gantry/adapter/rules"

// Rules are the custom and external rules in use (the last SetRules'),
// in file order. Callers must not modify them.
func (r *Registry) Rules() (custom, external []*rules.Rule) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.rules, r.extRules
}
