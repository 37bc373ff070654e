package deploy_test

import (
	"encoding/json"
	"maps"
	"os"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/gantry-dev/gantry/adapter/config"
	"github.com/gantry-dev/gantry/deploy"
)

// backendsDir is where the chart's backendSecrets and
// components/backend-secrets mount Secrets, one directory per Secret.
const backendsDir = "/etc/gantry/backends"

// backendFiles lists the files the backends of cfg read their credentials
// and certificates from.
func backendFiles(cfg *config.Config) []string {
	var out []string
	add := func(fs ...string) {
		for _, f := range fs {
			if f != "" {
				out = append(out, f)
			}
		}
	}
	for _, b := range cfg.Backends {
		if b.HTTP == nil {
			continue
		}
		h := b.HTTP.HTTPClientConfig
		if a := h.Authorization; a != nil {
			add(a.CredentialsFile)
		}
		if a := h.BasicAuth; a != nil {
			add(a.UsernameFile, a.PasswordFile)
		}
		if o := h.OAuth2; o != nil {
			add(o.ClientSecretFile, o.TLSConfig.CAFile, o.TLSConfig.CertFile, o.TLSConfig.KeyFile)
		}
		add(h.TLSConfig.CAFile, h.TLSConfig.CertFile, h.TLSConfig.KeyFile)
		if hs := h.HTTPHeaders; hs != nil {
			for _, v := range hs.Headers {
				add(v.Files...)
			}
		}
	}
	return out
}

// renderedConfig is the config file the rendering's Deployment mounts:
// the ConfigMap behind its "config" volume, parsed as Gantry would.
func renderedConfig(t *testing.T, m manifests, d *appsv1.Deployment) *config.Config {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != "config" || v.ConfigMap == nil {
			continue
		}
		o := m.find("ConfigMap", d.Namespace, v.ConfigMap.Name)
		if o == nil {
			t.Fatalf("the config volume's ConfigMap %s is not rendered", v.ConfigMap.Name)
		}
		cm := typed[corev1.ConfigMap](t, o)
		cfg, err := config.Parse([]byte(cm.Data[deploy.ConfigKey]), cm.Name+" "+deploy.ConfigKey)
		if err != nil {
			t.Fatalf("the rendered config does not load: %v", err)
		}
		return cfg
	}
	t.Fatal("the Deployment has no config volume")
	return nil
}

// checkBackendFiles checks every file cfg's backends name is a key of a
// Secret mounted read-only in the container, and returns where each comes
// from ("secret name/key").
func checkBackendFiles(t *testing.T, d *appsv1.Deployment, c *corev1.Container, cfg *config.Config) []string {
	t.Helper()
	var got []string
	for _, f := range backendFiles(cfg) {
		src := fileSource(t, d, c, f)
		if !strings.HasPrefix(src, "secret ") {
			t.Errorf("backend file %s is not in a mounted Secret (%q)", f, src)
			continue
		}
		got = append(got, src)
		for _, vm := range c.VolumeMounts {
			if vm.MountPath == path.Dir(f) && !vm.ReadOnly {
				t.Errorf("backend Secret mounted writable at %s", vm.MountPath)
			}
		}
	}
	return got
}

// commentedBlock is the YAML commented out in text from the line "# key:"
// (comment mark and key at any indentation) up to the first line that does
// not start as that line does: the example without its comment marks.
func commentedBlock(t *testing.T, text, key string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		marks, ok := strings.CutSuffix(l, key+":")
		if !ok || !strings.HasPrefix(strings.TrimSpace(marks), "#") || strings.Trim(marks, " #") != "" {
			continue
		}
		var b strings.Builder
		b.WriteString(key + ":\n")
		for _, l := range lines[i+1:] {
			rest, ok := strings.CutPrefix(l, marks)
			if !ok {
				break
			}
			b.WriteString(rest + "\n")
		}
		return b.String()
	}
	t.Fatalf("no commented %q example", key)
	return ""
}

// readmeBlock is the first fenced yaml block of the README section named
// heading.
func readmeBlock(t *testing.T, readme, heading string) string {
	t.Helper()
	_, sec, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	_, block, ok := strings.Cut(sec, "```yaml\n")
	if !ok {
		t.Fatalf("README section %q has no yaml block", heading)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// TestBackendExamples: the backends examples shipped in the README, the
// chart's values.yaml and the kustomize ConfigMap load as Gantry loads a
// config, and name their credential files where the chart and the
// component mount Secrets.
func TestBackendExamples(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	values := read("helm/gantry/values.yaml")
	// The Secrets values.yaml's backendSecrets example lists.
	var listed []string
	for _, l := range strings.Split(commentedBlock(t, values, "backendSecrets"), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "- name: "); ok {
			name, _, _ = strings.Cut(name, " ")
			listed = append(listed, name)
		}
	}
	for _, tc := range []struct {
		name, yaml string
		// secrets are the Secrets whose directories the files must be in.
		secrets  []string
		backends []string
	}{{
		name:     "README",
		yaml:     readmeBlock(t, read("../README.md"), "### Backends: several engines, tenants and HA sets"),
		secrets:  []string{"thanos-auth", "loki-auth"},
		backends: []string{"thanos", "cortex", "app-logs"},
	}, {
		name:     "chart values.yaml",
		yaml:     commentedBlock(t, values, "backends"),
		secrets:  listed,
		backends: []string{"thanos", "cortex", "app-logs"},
	}, {
		name:     "kustomize configmap.yaml",
		yaml:     commentedBlock(t, string(deploy.Config()), "backends"),
		secrets:  []string{"gantry-backends"},
		backends: []string{"thanos", "cortex", "app-logs"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(tc.yaml), tc.name)
			if err != nil {
				t.Fatalf("the example does not load: %v\n%s", err, tc.yaml)
			}
			var names []string
			for _, b := range cfg.Backends {
				names = append(names, b.Name)
			}
			if diff := cmp.Diff(tc.backends, names); diff != "" {
				t.Errorf("backends (-want +got):\n%s", diff)
			}
			files := backendFiles(cfg)
			if len(files) == 0 {
				t.Error("the example reads no credentials from files")
			}
			for _, f := range files {
				dir, _ := path.Split(f)
				if !slices.Contains(tc.secrets, path.Base(dir)) || path.Dir(path.Dir(f)) != backendsDir {
					t.Errorf("%s is not in %s/<one of %v>/", f, backendsDir, tc.secrets)
				}
			}
		})
	}
}

// TestHelmSchemaBackends: values.schema.json describes config.backends
// with the fields Gantry reads, so that the chart neither refuses a field
// Gantry takes nor lets a misspelt one through to a Gantry that refuses it.
func TestHelmSchemaBackends(t *testing.T) {
	data, err := os.ReadFile("helm/gantry/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type node struct {
		Properties           map[string]*node `json:"properties"`
		Items                *node            `json:"items"`
		OneOf                []*node          `json:"oneOf"`
		AdditionalProperties any              `json:"additionalProperties"`
	}
	var schema node
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var cfg *node
	for _, alt := range schema.Properties["config"].OneOf {
		if alt.Properties != nil {
			cfg = alt
		}
	}
	if cfg == nil {
		t.Fatal("no config object in values.schema.json")
	}
	backends := cfg.Properties["backends"]
	if backends == nil || backends.Items == nil {
		t.Fatal("no config.backends items in values.schema.json")
	}
	yamlFields := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
				out = append(out, tag)
			}
		}
		slices.Sort(out)
		return out
	}
	keys := func(n *node) []string {
		if n == nil {
			return nil
		}
		if n.AdditionalProperties != false {
			t.Errorf("schema object with %v allows other fields", slices.Sorted(maps.Keys(n.Properties)))
		}
		return slices.Sorted(maps.Keys(n.Properties))
	}
	if diff := cmp.Diff(yamlFields(config.Config{}), keys(cfg)); diff != "" {
		t.Errorf("config sections (-Gantry +schema):\n%s", diff)
	}
	if diff := cmp.Diff(yamlFields(config.Backend{}), keys(backends.Items)); diff != "" {
		t.Errorf("config.backends[] fields (-Gantry +schema):\n%s", diff)
	}
	if diff := cmp.Diff(yamlFields(config.Tenant{}), keys(backends.Items.Properties["tenant"])); diff != "" {
		t.Errorf("config.backends[].tenant fields (-Gantry +schema):\n%s", diff)
	}
}
