package rules

import (
	"errors"
	"fmt"

	apimeta "k8s.io/apimachinery/pkg/api/meta"

	"github.com/gantry-dev/gantry/adapter/config"
)

// CompileConfig compiles every rule of cfg, in file order (custom[i] is
// cfg.Rules[i]), reporting every error at once, each prefixed with the file.
// resource is nil when cfg has no resourceRules.
func CompileConfig(cfg *config.Config, file string, mapper apimeta.RESTMapper) (custom, external []*Rule, resource *ResourceRules, err error) {
	var errs []error
	for i, r := range cfg.Rules {
		rule, err := Compile(fmt.Sprintf("rules[%d] (%s)", i, r.DisplayName()), r, false, mapper)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		custom = append(custom, rule)
	}
	for i, r := range cfg.ExternalRules {
		rule, err := Compile(fmt.Sprintf("externalRules[%d] (%s)", i, r.DisplayName()), r, true, mapper)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		external = append(external, rule)
	}
	resource, rerr := CompileResourceRules(cfg.ResourceRules, mapper)
	if rerr != nil {
		errs = append(errs, fmt.Errorf("%s: %w", file, rerr))
	}
	return custom, external, resource, errors.Join(errs...)
}
