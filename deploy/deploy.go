// Package deploy holds Gantry's Kubernetes manifests (the kustomize base in
// manifests/) and gives Go code, such as the e2e tests, the very objects a
// `kubectl apply -k deploy/manifests` would create.
//
// The components in manifests/components are not embedded: they patch the
// base for a real cluster (certificates, monitoring).
package deploy

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The names the manifests use.
const (
	// Namespace holds every namespaced object except the RoleBinding in
	// kube-system.
	Namespace = "gantry"
	// ServiceAccount is the identity Gantry runs as; the RBAC binds it.
	ServiceAccount = "gantry"
	// Service is what the APIServices point at, on ServicePort.
	Service     = "gantry"
	ServicePort = 443
	// Deployment runs Gantry; its container is named Container and serves
	// HTTPS on ContainerPort.
	Deployment    = "gantry"
	Container     = "gantry"
	ContainerPort = 6443
	// ConfigMap holds the rules file under ConfigKey, mounted at ConfigPath.
	ConfigMap  = "gantry-config"
	ConfigKey  = "config.yaml"
	ConfigPath = "/etc/gantry/config.yaml"
)

// APIServices are the names of the APIService objects of the metrics APIs,
// one per served group-version.
var APIServices = []string{
	"v1beta1.custom.metrics.k8s.io",
	"v1beta2.custom.metrics.k8s.io",
	"v1beta1.external.metrics.k8s.io",
	"v1beta1.metrics.k8s.io",
}

// DiagnosticsAPIService registers Gantry's diagnostics API (kubectl gantry
// explain and doctor), in a file of its own, apiservice-diagnostics.yaml.
const DiagnosticsAPIService = "v1alpha1.diagnostics.gantry.dev"

// The MetricRule resource: its CustomResourceDefinition (in
// metricrules-crd.yaml) and the ValidatingWebhookConfiguration (in
// metricrules-webhook.yaml) through which Gantry checks MetricRules at
// apply time, at WebhookPath on its serving port.
const (
	MetricRuleCRD  = "metricrules.gantry.dev"
	MetricRuleFile = "metricrules-crd.yaml"
	Webhook        = "gantry-metricrules"
	WebhookPath    = "/validate-metricrules"
)

//go:embed manifests/*.yaml
var manifests embed.FS

// kustomizationFile lists the manifests, in order, as "resources".
const kustomizationFile = "kustomization.yaml"

// Files returns the manifest file names (relative to manifests/) in the order
// kustomization.yaml lists them.
func Files() ([]string, error) {
	data, err := manifests.ReadFile(path.Join("manifests", kustomizationFile))
	if err != nil {
		return nil, err
	}
	j, err := utilyaml.ToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kustomizationFile, err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := json.Unmarshal(j, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", kustomizationFile, err)
	}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("%s: no resources", kustomizationFile)
	}
	return k.Resources, nil
}

// Objects decodes every document of every manifest, in kustomization order
// (the namespace first). Each call returns fresh objects the caller may
// modify.
func Objects() ([]*unstructured.Unstructured, error) {
	files, err := Files()
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := manifests.ReadFile(path.Join("manifests", f))
		if err != nil {
			return nil, fmt.Errorf("%s is listed in %s: %w", f, kustomizationFile, err)
		}
		objs, err := decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// decode splits a multi-document YAML file into objects, skipping empty
// documents (only comments). Integers stay int64, as the dynamic client and
// the unstructured helpers expect.
func decode(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if u.GetName() == "" {
			return nil, fmt.Errorf("document %d: %s without metadata.name", i, u.GetKind())
		}
		out = append(out, u)
	}
}

var defaultConfig = sync.OnceValues(func() ([]byte, error) {
	objs, err := Objects()
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != ConfigMap || o.GetNamespace() != Namespace {
			continue
		}
		cfg, ok, err := unstructured.NestedString(o.Object, "data", ConfigKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("configmap %s/%s has no data %q", Namespace, ConfigMap, ConfigKey)
		}
		return []byte(cfg), nil
	}
	return nil, fmt.Errorf("no configmap %s/%s in the manifests", Namespace, ConfigMap)
})

// File returns the content of a manifest file of the base, such as
// MetricRuleFile.
func File(name string) ([]byte, error) {
	return manifests.ReadFile(path.Join("manifests", name))
}

// Config returns the default rules file, the ConfigMap's config.yaml. It
// panics if the embedded manifests lack it, which the package's tests rule
// out.
func Config() []byte {
	cfg, err := defaultConfig()
	if err != nil {
		panic("deploy: " + err.Error())
	}
	return bytes.Clone(cfg)
}
