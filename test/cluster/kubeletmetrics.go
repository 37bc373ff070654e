package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Pod annotations kwok's usage-from-annotation ClusterResourceUsage reads
// (values are quantities: "250m", "64Mi"). Without them a container uses
// 1m CPU and 1Mi memory.
const (
	UsageCPUAnnotation    = "kwok.x-k8s.io/usage-cpu"
	UsageMemoryAnnotation = "kwok.x-k8s.io/usage-memory"
)

const (
	kwokModule  = "sigs.k8s.io/kwok"
	kwokVersion = "v0.8.0"

	// kwokMetricsCRDs are the kwok resources watched instead of read from
	// --config, so a test can add a Metric or a per-pod ResourceUsage while
	// the cluster runs. Stages stay in --config (bin/kwok-stages), as
	// without KubeletMetrics.
	kwokMetricsCRDs = "Metric,ClusterResourceUsage,ResourceUsage"

	// kwokMetricsReadyPath is served once kwok has picked up the Metric
	// applied at start (its routes follow the Metric objects); any node name
	// will do.
	kwokMetricsReadyPath = "/metrics/nodes/gantry-probe/metrics/resource"
)

// kwokMetricsFiles are what KubeletMetrics applies before kwok starts:
// kwok's CRDs, then the objects that make it serve kubelet-style metrics.
type kwokMetricsFiles struct {
	crds    []string // kustomize/crd/bases/*.yaml
	objects []string // metrics-resource.yaml, usage-from-annotation.yaml
}

// findKwokMetricsFiles returns the files install-metrics-server.sh copied
// into <bin>/kwok-metrics or, before that has run, the same files in the
// Go module cache (kwok is in it: `make tools` built kwok from it).
func findKwokMetricsFiles(binDir string) (kwokMetricsFiles, error) {
	dir := filepath.Join(binDir, "kwok-metrics")
	f := kwokMetricsFiles{
		objects: []string{filepath.Join(dir, "metrics-resource.yaml"), filepath.Join(dir, "usage-from-annotation.yaml")},
	}
	f.crds, _ = filepath.Glob(filepath.Join(dir, "crd", "*.yaml"))
	if len(f.crds) > 0 && allExist(f.objects) {
		return f, nil
	}

	modDir, err := kwokModuleDir()
	if err != nil {
		return kwokMetricsFiles{}, fmt.Errorf("no kwok metrics configuration in %s (run `make tools`), and %w", dir, err)
	}
	f.crds, _ = filepath.Glob(filepath.Join(modDir, "kustomize", "crd", "bases", "*.yaml"))
	f.objects = []string{
		filepath.Join(modDir, "kustomize", "metrics", "resource", "metrics-resource.yaml"),
		filepath.Join(modDir, "kustomize", "metrics", "usage", "usage-from-annotation.yaml"),
	}
	if len(f.crds) == 0 || !allExist(f.objects) {
		return kwokMetricsFiles{}, fmt.Errorf("kwok metrics configuration missing from %s", modDir)
	}
	return f, nil
}

// kwokModuleDir asks the go command where kwok's module sits in the module
// cache; it is there already, so this needs no network.
func kwokModuleDir() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", kwokModule+"@"+kwokVersion)
	// Outside any module, with no -mod flag the command would reject.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jsonErr := json.Unmarshal(out, &info); jsonErr != nil || info.Dir == "" {
		return "", fmt.Errorf("locating %s@%s in the module cache: %v %s", kwokModule, kwokVersion, err, strings.TrimSpace(info.Error))
	}
	return info.Dir, nil
}

func allExist(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// installKwokMetrics creates kwok's CRDs, waits until the API server serves
// them, and creates the Metric and ClusterResourceUsage objects. It runs
// before kwok starts: kwok lists and watches the CRDs it is told to at start.
func (c *Cluster) installKwokMetrics(ctx context.Context, files kwokMetricsFiles) error {
	begin := time.Now()
	dyn, err := dynamic.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("kwok metrics: %w", err)
	}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	var crdNames []string
	for _, path := range files.crds {
		objs, err := readObjects(path)
		if err != nil {
			return fmt.Errorf("kwok metrics: %w", err)
		}
		for _, o := range objs {
			if err := createOrUpdate(ctx, dyn.Resource(crdGVR), o); err != nil {
				return fmt.Errorf("kwok metrics: %s: %w", path, err)
			}
			crdNames = append(crdNames, o.GetName())
		}
	}
	if err := waitCRDsEstablished(ctx, dyn.Resource(crdGVR), crdNames); err != nil {
		return fmt.Errorf("kwok metrics: %w", err)
	}

	disc, err := discovery.NewDiscoveryClientForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("kwok metrics: %w", err)
	}
	for _, path := range files.objects {
		objs, err := readObjects(path)
		if err != nil {
			return fmt.Errorf("kwok metrics: %w", err)
		}
		for _, o := range objs {
			ri, err := resourceFor(ctx, disc, dyn, o)
			if err != nil {
				return fmt.Errorf("kwok metrics: %s: %w", path, err)
			}
			if err := createOrUpdate(ctx, ri, o); err != nil {
				return fmt.Errorf("kwok metrics: %s: %w", path, err)
			}
		}
	}
	c.logf("cluster: kwok metrics CRDs (%d) and objects applied in %s", len(crdNames), time.Since(begin).Round(10*time.Millisecond))
	return nil
}

// readObjects decodes every YAML document of a file.
func readObjects(path string) ([]*unstructured.Unstructured, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(o.Object) > 0 {
			objs = append(objs, &o)
		}
	}
}

func createOrUpdate(ctx context.Context, ri dynamic.ResourceInterface, o *unstructured.Unstructured) error {
	_, err := ri.Create(ctx, o, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	o.SetResourceVersion(cur.GetResourceVersion())
	_, err = ri.Update(ctx, o, metav1.UpdateOptions{})
	return err
}

// resourceFor maps an object's kind to its resource with fresh discovery
// (the CRDs were created a moment ago), retrying until the API server
// serves the kind or ctx ends.
func resourceFor(ctx context.Context, disc discovery.DiscoveryInterface, dyn dynamic.Interface, o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	for {
		groups, err := restmapper.GetAPIGroupResources(disc)
		if err == nil {
			var m *meta.RESTMapping
			m, err = restmapper.NewDiscoveryRESTMapper(groups).RESTMapping(gvk.GroupKind(), gvk.Version)
			if err == nil {
				if m.Scope.Name() == meta.RESTScopeNameNamespace {
					ns := o.GetNamespace()
					if ns == "" {
						ns = metav1.NamespaceDefault
					}
					return dyn.Resource(m.Resource).Namespace(ns), nil
				}
				return dyn.Resource(m.Resource), nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no resource for %s: %w (last: %v)", gvk, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitCRDsEstablished(ctx context.Context, ri dynamic.ResourceInterface, names []string) error {
	for _, name := range names {
		for {
			o, err := ri.Get(ctx, name, metav1.GetOptions{})
			if err == nil && crdEstablished(o) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established: %w (last get: %v)", name, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func crdEstablished(o *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// kwokMetricsReady checks that kwok's server answers and serves the
// Metric's path.
func (c *Cluster) kwokMetricsReady(ctx context.Context) error {
	_, err := httpGet(ctx, http.DefaultClient, c.kwokServerURL+kwokMetricsReadyPath)
	return err
}

// SetPodUsage sets the CPU and memory a pod's containers use in kwok's
// simulated kubelet metrics (each container of the pod uses this much), as
// quantities such as "250m" and "64Mi". An empty value removes the
// annotation, so the container falls back to kwok's default (1m, 1Mi). The
// next scrape of /metrics/resource shows the new memory value, and CPU time
// grows at the new rate from the previous scrape on (kwok integrates the
// current rate over the time between two scrapes).
func (c *Cluster) SetPodUsage(ctx context.Context, namespace, pod, cpu, memory string) error {
	value := func(v string) any {
		if v == "" {
			return nil // JSON null: a merge patch removes the key
		}
		return v
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{
			UsageCPUAnnotation:    value(cpu),
			UsageMemoryAnnotation: value(memory),
		}},
	})
	if err != nil {
		return err
	}
	if _, err := c.client.CoreV1().Pods(namespace).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cluster: setting usage of pod %s/%s: %w", namespace, pod, err)
	}
	return nil
}

// KubeletPort is the port every fake node's kubelet endpoint listens on
// (status.daemonEndpoints.kubeletEndpoint.port), 0 without
// Options.KubeletMetrics.
func (c *Cluster) KubeletPort() int {
	if c.kubeletProxy == nil {
		return 0
	}
	return c.kubeletProxy.port
}

// KubeletProxy is the TLS front of the fake nodes' kubelets, nil without
// Options.KubeletMetrics.
func (c *Cluster) KubeletProxy() *KubeletProxy { return c.kubeletProxy }

// KwokServerURL is kwok's own HTTP server (http://127.0.0.1:port), which
// serves each node's metrics under /metrics/nodes/<node>/..., empty without
// Options.KubeletMetrics. Scrape nodes through their kubelet address
// instead; this is for checks of the harness itself.
func (c *Cluster) KwokServerURL() string { return c.kwokServerURL }

func kwokMetricsArgs(serverPort, kubeletPort int) []string {
	return []string{
		"--enable-crds=" + kwokMetricsCRDs,
		// The port kwok writes into every node's status as its kubelet
		// port, where the KubeletProxy listens on the node's address.
		"--node-port=" + strconv.Itoa(kubeletPort),
		// kwok's own server, serving /metrics/nodes/<node>/metrics/resource
		// (plain HTTP and TLS on one port); only the proxy dials it.
		"--server-address=127.0.0.1:" + strconv.Itoa(serverPort),
	}
}
