package migrate

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gantry-dev/gantry/adapter/config"
)

// Load reads a rule file, or a ConfigMap manifest holding one (as
// deploy/manifests/configmap.yaml, or `kubectl get configmap -o yaml`
// writes it): its data key config.yaml, or its only key. name is how the
// report calls the rules' file: path, or "path data.<key>".
func Load(path string) (cfg *config.Config, name string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading config: %w", err)
	}
	key, inner, err := configMapData(data, path)
	if err != nil {
		return nil, "", err
	}
	if key == "" {
		cfg, err := config.Parse(data, path)
		return cfg, path, err
	}
	name = path + " data." + key
	cfg, err = config.Parse([]byte(inner), name)
	return cfg, name, err
}

// configMapData returns the rule file a ConfigMap manifest holds, with its
// key; key is "" when data is not a ConfigMap (then it is a rule file, or
// config.Parse says what is wrong with it).
func configMapData(data []byte, path string) (key, inner string, err error) {
	var cm struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Data       map[string]string `yaml:"data"`
	}
	if yaml.Unmarshal(data, &cm) != nil || cm.Kind != "ConfigMap" || cm.APIVersion != "v1" {
		return "", "", nil
	}
	if _, ok := cm.Data["config.yaml"]; ok {
		return "config.yaml", cm.Data["config.yaml"], nil
	}
	if len(cm.Data) == 1 {
		for k, v := range cm.Data {
			return k, v, nil
		}
	}
	return "", "", fmt.Errorf("%s: a ConfigMap without a data key config.yaml, and %d other keys (%s): which one is the rule file?",
		path, len(cm.Data), strings.Join(slices.Sorted(maps.Keys(cm.Data)), ", "))
}
