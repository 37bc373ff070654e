package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// standInCRDs returns, for each kind of m whose API group the cluster does
// not serve (cert-manager's Issuer and Certificate, the Prometheus Operator's
// ServiceMonitor and PrometheusRule, ...), a CustomResourceDefinition that
// declares the kind and accepts any content, so the objects of those options
// can be dry-run too. Their own fields go unchecked (the real schemas are
// not vendored here); every built-in object they come with, such as the
// patched Deployment and APIServices and the scraper RBAC, is validated in
// full. builtin are the groups the cluster serves without them; installed
// (plural.group) is updated with the CRDs returned.
func standInCRDs(m manifests, builtin, installed map[string]bool) (crds string, names []string) {
	for _, o := range m.objs {
		gvk := o.GroupVersionKind()
		kind := gvk.Kind
		plural := strings.ToLower(kind) + "s"
		name := plural + "." + gvk.Group
		if gvk.Group == "" || builtin[gvk.Group] || installed[name] || o.GetNamespace() == "" {
			continue
		}
		installed[name] = true
		names = append(names, "crd/"+name)
		crds += `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + name + `
spec:
  group: ` + gvk.Group + `
  scope: Namespaced
  names: {kind: ` + kind + `, listKind: ` + kind + `List, plural: ` + plural + `, singular: ` + strings.ToLower(kind) + `}
  versions:
    - name: ` + gvk.Version + `
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`
	}
	return crds, names
}

// kubectl runs the real kubectl that `make tools` builds against one
// cluster, with its discovery cache in a temporary directory.
type kubectl struct {
	bin, kubeconfig, cacheDir string
}

func newKubectl(t *testing.T, kubeconfig string) kubectl {
	t.Helper()
	dir, err := toolbin.Dir()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := toolbin.Path(dir, "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	return kubectl{bin: bin, kubeconfig: kubeconfig, cacheDir: t.TempDir()}
}

// run runs kubectl with stdin and returns stdout and stderr; err includes
// stderr.
func (k kubectl) run(stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"--kubeconfig=" + k.kubeconfig, "--cache-dir=" + k.cacheDir}, args...)
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.Bytes(), errOut.Bytes(), errors.New("kubectl " + strings.Join(args[2:], " ") + ": " + err.Error() + "\n" + errOut.String())
	}
	return out.Bytes(), errOut.Bytes(), nil
}

// TestServerSideDryRun sends what `kubectl apply -k deploy/manifests` (with
// each component) and `helm install` (with the value combinations of
// TestHelmTemplate) would create to a real kube-apiserver as a server-side
// dry run: every object must pass the API server's schema (strict field
// validation), defaulting and admission. The namespaces carry the
// "restricted" Pod Security warn label, so a pod template that breaks it
// fails too.
func TestServerSideDryRun(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	k := newKubectl(t, c.KubeconfigPath())
	h := newHelm(t)

	groups, err := c.Client().Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	builtin, installed := map[string]bool{}, map[string]bool{}
	for _, g := range groups.Groups {
		builtin[g.Name] = true
	}

	type rendering struct {
		name   string
		render func(t *testing.T) []byte
	}
	var renderings []rendering

	base, err := filepath.Abs("manifests")
	if err != nil {
		t.Fatal(err)
	}
	kustomize := func(dir string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			out, _, err := k.run(nil, "kustomize", dir)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	renderings = append(renderings, rendering{"kustomize base", kustomize(base)})
	comps, err := os.ReadDir(filepath.Join(base, "components"))
	if err != nil {
		t.Fatal(err)
	}
	for _, comp := range comps {
		if _, err := os.Stat(filepath.Join(base, "components", comp.Name(), "kustomization.yaml")); err != nil {
			continue // not a component (yet)
		}
		renderings = append(renderings, rendering{"kustomize base with " + comp.Name(), func(t *testing.T) []byte {
			overlay := t.TempDir()
			// kustomize wants paths relative to the overlay.
			rel, err := filepath.Rel(overlay, base)
			if err != nil {
				t.Fatal(err)
			}
			rel = filepath.ToSlash(rel)
			kust := "resources: [" + rel + "]\ncomponents: [" + rel + "/components/" + comp.Name() + "]\n"
			if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
				t.Fatal(err)
			}
			return kustomize(overlay)(t)
		}})
	}
	for _, tc := range templateCases {
		renderings = append(renderings, rendering{"chart " + tc.name, func(t *testing.T) []byte {
			return h.template(t, tc.release)
		}})
	}

	for _, r := range renderings {
		t.Run(r.name, func(t *testing.T) {
			// A discovery cache of its own: kinds may have been added.
			k := k
			k.cacheDir = t.TempDir()
			stream := r.render(t)
			m := decodeAll(t, stream)
			if len(m.objs) == 0 {
				t.Fatal("nothing rendered")
			}
			if crds, names := standInCRDs(m, builtin, installed); crds != "" {
				if _, _, err := k.run([]byte(crds), "apply", "--server-side", "-f", "-"); err != nil {
					t.Fatal(err)
				}
				args := append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, names...)
				if _, _, err := k.run(nil, args...); err != nil {
					t.Fatal(err)
				}
			}
			// A server-side dry run of a namespaced object needs its
			// namespace to exist: create the rendered Namespaces for real
			// (they are part of what is checked), and any other namespace
			// the objects live in.
			var nsDocs [][]byte
			for _, o := range m.ofKind("Namespace") {
				j, err := o.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				nsDocs = append(nsDocs, j)
			}
			if len(nsDocs) > 0 {
				list := []byte(`{"apiVersion":"v1","kind":"List","items":[` + string(bytes.Join(nsDocs, []byte(","))) + `]}`)
				if _, _, err := k.run(list, "apply", "--server-side", "--validate=strict", "-f", "-"); err != nil {
					t.Fatal(err)
				}
			}
			for _, o := range m.objs {
				if ns := o.GetNamespace(); ns != "" {
					ensureNamespace(t, c, ns)
				}
			}

			out, stderr, err := k.run(stream, "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-")
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(stderr, []byte("would violate PodSecurity")) {
				t.Errorf("the pod template breaks the restricted Pod Security Standard:\n%s", stderr)
			}
			// kubectl names every object it applied.
			if got := bytes.Count(out, []byte("(server dry run)")); got != len(m.objs) {
				t.Errorf("kubectl dry-ran %d objects, %d rendered:\n%s", got, len(m.objs), out)
			}
			if len(stderr) > 0 {
				t.Logf("kubectl stderr:\n%s", stderr)
			}
		})
	}
}

// ensureNamespace creates a namespace, if missing, that warns about pods
// breaking the restricted Pod Security Standard as deploy/manifests'
// namespace does.
func ensureNamespace(t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{"pod-security.kubernetes.io/warn": "restricted"},
	}}
	if _, err := c.Client().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
