// Package stack runs the whole of Gantry's world on one machine, on
// loopback: a local control plane with kwok (test/cluster), a real
// Prometheus fed by remote write (test/prom), and Gantry itself as a child
// process, registered with the aggregation layer through the manifests in
// deploy/ and authenticating as its own ServiceAccount. The e2e tests and
// `make demo` both start it.
//
// Every stack's cluster has the MetricRule CRD of deploy/ and the RBAC that
// comes with it. The MetricRule validating webhook is registered only on
// request (Options.MetricRuleWebhook, Stack.RegisterWebhook). The
// diagnostics APIService (DiagnosticsAPIService) is registered with the
// metrics ones.
package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/test/cluster"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// Namespace and Service are where the deploy/ manifests put Gantry; the
// aggregator dials <Service>.<Namespace>.svc.
const (
	Namespace      = "gantry"
	ServiceAccount = "gantry"
	Service        = "gantry"
)

// APIServices are the API versions Gantry registers: the four of the
// metrics APIs and its diagnostics API.
var APIServices = []string{
	"v1beta1.custom.metrics.k8s.io",
	"v1beta2.custom.metrics.k8s.io",
	"v1beta1.external.metrics.k8s.io",
	"v1beta1.metrics.k8s.io",
	DiagnosticsAPIService,
}

// Options configure Start.
type Options struct {
	// BinDir holds gantry and the tools; default as toolbin.Dir.
	BinDir string
	// WorkDir holds every component's files and logs; required.
	WorkDir string
	Logf    func(format string, args ...any)
	// Rules is Gantry's config file content; default DefaultRules.
	Rules string
	// RelistInterval is Gantry's --metrics-relist-interval (default 5s).
	RelistInterval time.Duration
	// Cluster options (kwok is always on).
	Cluster cluster.Options
	// GantryArgs are appended to Gantry's command line.
	GantryArgs []string
	// Replicas is how many Gantry processes run (default 1). With more
	// than one, a Balancer stands in for the Service and kube-proxy, and
	// the APIServices point at it.
	Replicas int
	// BackendProxy puts a DelayProxy between Gantry and Prometheus
	// (Stack.BackendProxy), so that a test can make the backend slow.
	BackendProxy bool
	// GantryCommand, when set, runs each replica instead of
	// BinDir/gantry (which is then not needed): given the replica's index
	// and Gantry's arguments (the files they name are host paths, written
	// before the call), it returns the command line to run, e.g. a
	// `podman run ... <image> <args...>` (test/e2e/image_test.go). Stop
	// signals that command.
	GantryCommand func(replica int, args []string) ([]string, error)
	// MetricRuleWebhook registers the MetricRule validating webhook once
	// Gantry is Available (see Stack.RegisterWebhook).
	MetricRuleWebhook bool
}

// Stack is a running cluster, Prometheus and Gantry.
type Stack struct {
	Cluster *cluster.Cluster
	Prom    *prom.Server
	// GantryURL is Gantry's own address, https://127.0.0.1:<port> (the
	// first replica's).
	GantryURL string
	// GantryLog is the path of Gantry's log (the first replica's).
	GantryLog string
	// Balancer is in front of the replicas when Options.Replicas > 1.
	Balancer *Balancer
	// BackendProxy is between Gantry and Prometheus when
	// Options.BackendProxy is set.
	BackendProxy *DelayProxy

	opts       Options
	replicas   []*Replica
	caPEM      []byte
	configFile string
	// servedPort is where the APIServices (and the webhook) reach Gantry:
	// the one replica's port, or the balancer's.
	servedPort int
}

// Start brings everything up and returns once Gantry's APIServices are
// Available. On error, what was started is stopped.
func Start(ctx context.Context, opts Options) (st *Stack, err error) {
	if opts.WorkDir == "" {
		return nil, errors.New("stack: WorkDir is required")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Rules == "" {
		opts.Rules = DefaultRules
	}
	if opts.RelistInterval <= 0 {
		opts.RelistInterval = 5 * time.Second
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = toolbin.Dir(); err != nil {
			return nil, err
		}
	}
	var gantryBin string
	if opts.GantryCommand == nil {
		if gantryBin, err = toolbin.Path(opts.BinDir, "gantry"); err != nil {
			return nil, err
		}
	}
	st = &Stack{opts: opts}
	defer func() {
		if err != nil {
			st.Stop()
			st = nil
		}
	}()

	st.Prom, err = prom.StartProcess(ctx, opts.BinDir, filepath.Join(opts.WorkDir, "prometheus"), opts.Logf)
	if err != nil {
		return st, err
	}
	if opts.BackendProxy {
		if st.BackendProxy, err = NewDelayProxy(st.Prom.URL()); err != nil {
			return st, err
		}
	}
	copts := opts.Cluster
	copts.Kwok = true
	copts.BinDir = opts.BinDir
	copts.WorkDir = filepath.Join(opts.WorkDir, "cluster")
	copts.Logf = opts.Logf
	if err := os.MkdirAll(copts.WorkDir, 0o755); err != nil {
		return st, err
	}
	st.Cluster, err = cluster.Start(ctx, copts)
	if err != nil {
		return st, err
	}
	begin := time.Now()
	if err := st.applyManifests(ctx); err != nil {
		return st, err
	}
	if err := st.startGantry(ctx, gantryBin); err != nil {
		return st, err
	}
	if err := st.waitAvailable(ctx); err != nil {
		return st, err
	}
	opts.Logf("stack: gantry registered and Available in %s", time.Since(begin).Round(10*time.Millisecond))
	if opts.MetricRuleWebhook {
		if err := st.RegisterWebhook(ctx); err != nil {
			return st, err
		}
	}
	return st, nil
}

// StartT starts a stack for the duration of a test, printing the logs of
// every component if the test fails.
func StartT(t testing.TB, opts Options) *Stack {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = toolbin.Require(t, "gantry", "prometheus", "etcd", "kube-apiserver", "kube-controller-manager", "kwok")
	}
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		failed := t.Failed()
		if failed {
			for _, r := range st.replicas {
				t.Logf("stack: gantry log (%s):\n%s", r.Log, tail(r.Log, 48<<10))
			}
		}
		if err := st.Stop(); err != nil {
			t.Error(err)
		}
		if failed {
			for _, c := range []cluster.Component{cluster.APIServer, cluster.ControllerManager, cluster.Kwok} {
				t.Logf("stack: %s log:\n%s", c, st.Cluster.LogTail(c))
			}
		}
	})
	return st
}

// Stop stops Gantry, then the cluster and Prometheus. It is safe to call
// more than once.
func (st *Stack) Stop() error {
	var errs []error
	for _, r := range st.replicas {
		if err := r.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if st.Balancer != nil {
		errs = append(errs, st.Balancer.Close())
	}
	if st.BackendProxy != nil {
		errs = append(errs, st.BackendProxy.Close())
	}
	if st.Cluster != nil {
		errs = append(errs, st.Cluster.Stop())
	}
	if st.Prom != nil {
		errs = append(errs, st.Prom.Stop())
	}
	return errors.Join(errs...)
}

// StopGantry stops the (first) Gantry process (SIGTERM, then SIGKILL after
// 10s).
func (st *Stack) StopGantry() error {
	if len(st.replicas) == 0 {
		return nil
	}
	return st.replicas[0].Stop()
}

// GantryPID is the pid of the (first) Gantry process, 0 if none.
func (st *Stack) GantryPID() int {
	if len(st.replicas) == 0 {
		return 0
	}
	return st.replicas[0].PID()
}

// Replicas are the Gantry processes, Options.Replicas of them.
func (st *Stack) Replicas() []*Replica { return st.replicas }

// ConfigPath is the config file every replica is given as --config.
func (st *Stack) ConfigPath() string { return st.configFile }

// WriteConfig replaces the config file's content atomically (a new file
// renamed over it), as an editor or a ConfigMap update does, so a replica
// never reads half a file.
func (st *Stack) WriteConfig(content string) error {
	tmp := st.configFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, st.configFile)
}

// applyManifests applies deploy/manifests as a cluster admin would, except
// what needs a kubelet: the Deployment and its PodDisruptionBudget. The
// Service becomes an ExternalName to localhost and the APIServices get the
// serving CA, so the aggregator reaches the Gantry process on loopback.
// The MetricRule webhook is left out (see the package comment), and the
// APIServices wait for Gantry's port. It returns once the MetricRule CRD is Established,
// so that Gantry finds it at start.
func (st *Stack) applyManifests(ctx context.Context) error {
	objs, err := deploy.Objects()
	if err != nil {
		return err
	}
	cfg := st.Cluster.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(st.Cluster.Client().Discovery()))
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Deployment", "PodDisruptionBudget", "ValidatingWebhookConfiguration":
			continue
		case "ConfigMap":
			if obj.GetName() == "gantry-config" {
				if err := unstructured.SetNestedField(obj.Object, st.opts.Rules, "data", "config.yaml"); err != nil {
					return err
				}
			}
		case "Service":
			if obj.GetName() == Service {
				unstructured.RemoveNestedField(obj.Object, "spec")
				obj.Object["spec"] = map[string]any{"type": "ExternalName", "externalName": "localhost"}
			}
		}
		gvk := obj.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("stack: applying %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		if obj.GetKind() == "APIService" {
			continue // after Gantry's port is known
		}
		data, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		force := true
		if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "gantry-stack", Force: &force}); err != nil {
			return fmt.Errorf("stack: applying %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return st.waitCRDEstablished(ctx, dyn, deploy.MetricRuleCRD)
}

// waitCRDEstablished waits until a CustomResourceDefinition's
// Established condition is True: its resource is then served.
func (st *Stack) waitCRDEstablished(ctx context.Context, dyn dynamic.Interface, name string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		obj, err := dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stack: CustomResourceDefinition %s not Established: %w (last error: %v)", name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// startGantry runs the Gantry binary with the ServiceAccount's token, so
// the RBAC of deploy/ is what lets it work.
func (st *Stack) startGantry(ctx context.Context, bin string) error {
	dir := filepath.Join(st.opts.WorkDir, "gantry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kubeconfig, err := st.serviceAccountKubeconfig(ctx, dir)
	if err != nil {
		return err
	}
	certFile, keyFile, caPEM, err := st.Cluster.ServingCert(Service + "." + Namespace + ".svc")
	if err != nil {
		return err
	}
	st.caPEM = caPEM
	st.configFile = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(st.configFile, []byte(st.opts.Rules), 0o644); err != nil {
		return err
	}
	promURL := st.Prom.URL()
	if st.BackendProxy != nil {
		promURL = st.BackendProxy.URL()
	}
	common := []string{
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--lister-kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--config=" + st.configFile,
		"--prometheus-url=" + promURL,
		"--metrics-relist-interval=" + st.opts.RelistInterval.String(),
		"--metrics-max-age=30m",
		"--v=2",
	}
	var addrs []string
	var ports []int
	for i := range st.opts.Replicas {
		port, err := freePort()
		if err != nil {
			return err
		}
		r := &Replica{
			URL:  "https://127.0.0.1:" + strconv.Itoa(port),
			Log:  filepath.Join(dir, "gantry.log"),
			bin:  bin,
			args: append(append([]string{"--secure-port=" + strconv.Itoa(port)}, common...), st.opts.GantryArgs...),
			logf: st.opts.Logf,
		}
		if st.opts.GantryCommand != nil {
			argv, err := st.opts.GantryCommand(i, r.args)
			if err != nil {
				return err
			}
			if len(argv) == 0 {
				return errors.New("stack: GantryCommand returned an empty command line")
			}
			r.bin, r.args = argv[0], argv[1:]
		}
		if i > 0 {
			r.Log = filepath.Join(dir, fmt.Sprintf("gantry-%d.log", i))
		}
		if err := r.start(os.O_TRUNC); err != nil {
			return err
		}
		st.replicas = append(st.replicas, r)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
		ports = append(ports, port)
	}
	st.GantryURL, st.GantryLog = st.replicas[0].URL, st.replicas[0].Log
	// The APIServices point at the one replica, or at the balancer in
	// front of them all.
	port := ports[0]
	if len(addrs) > 1 {
		if st.Balancer, err = NewBalancer(addrs...); err != nil {
			return err
		}
		port = st.Balancer.Port()
		st.opts.Logf("stack: %d gantry replicas behind a round-robin balancer on port %d", len(addrs), port)
	}
	st.servedPort = port

	// Now the APIServices can point at Gantry's port.
	objs, err := deploy.Objects()
	if err != nil {
		return err
	}
	diagnostics, err := diagnosticsObjects()
	if err != nil {
		return err
	}
	objs = append(objs, diagnostics...)
	dyn, err := dynamic.NewForConfig(st.Cluster.RESTConfig())
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	for _, obj := range objs {
		if obj.GetKind() != "APIService" || !slices.Contains(APIServices, obj.GetName()) {
			continue
		}
		_ = unstructured.SetNestedField(obj.Object, int64(port), "spec", "service", "port")
		unstructured.RemoveNestedField(obj.Object, "spec", "insecureSkipTLSVerify")
		_ = unstructured.SetNestedField(obj.Object, base64.StdEncoding.EncodeToString(caPEM), "spec", "caBundle")
		data, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		force := true
		if _, err := dyn.Resource(gvr).Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "gantry-stack", Force: &force}); err != nil {
			return fmt.Errorf("stack: applying APIService %s: %w", obj.GetName(), err)
		}
	}
	return nil
}

// RestartGantry starts Gantry again after StopGantry (or a crash), with the
// same command line: the same port, serving certificate, credentials and
// rules, so the APIServices and any scraper find it where it was. Its log
// goes on in GantryLog. It returns once the APIServices are Available again.
func (st *Stack) RestartGantry(ctx context.Context) error {
	if len(st.replicas) == 0 {
		return errors.New("stack: gantry was never started")
	}
	begin := time.Now()
	if err := st.replicas[0].start(os.O_APPEND); err != nil {
		return err
	}
	if err := st.waitAvailable(ctx); err != nil {
		return err
	}
	st.opts.Logf("stack: gantry restarted and Available in %s", time.Since(begin).Round(10*time.Millisecond))
	return nil
}

// serviceAccountKubeconfig writes a kubeconfig holding a token of Gantry's
// ServiceAccount.
func (st *Stack) serviceAccountKubeconfig(ctx context.Context, dir string) (string, error) {
	expiry := int64(24 * 3600)
	tr, err := st.Cluster.Client().CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("stack: token for ServiceAccount %s/%s: %w", Namespace, ServiceAccount, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: st.Cluster.URL(), CertificateAuthorityData: st.Cluster.CAPEM()}
	kc.AuthInfos["gantry"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["gantry"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "gantry"}
	kc.CurrentContext = "gantry"
	path := filepath.Join(dir, "kubeconfig")
	return path, clientcmd.WriteToFile(*kc, path)
}

// waitAvailable waits until every APIService reports Available=True.
func (st *Stack) waitAvailable(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(st.Cluster.RESTConfig())
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := map[string]string{}
	for {
		pending := 0
		for _, name := range APIServices {
			obj, err := dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last[name] = err.Error()
				pending++
				continue
			}
			status, msg := availability(obj)
			last[name] = status + ": " + msg
			if status != "True" {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-st.replicas[0].Exited():
			return fmt.Errorf("stack: gantry exited before its APIServices became Available; log %s:\n%s", st.GantryLog, tail(st.GantryLog, 8<<10))
		case <-ctx.Done():
			return fmt.Errorf("stack: APIServices not Available: %v: %v", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func availability(obj *unstructured.Unstructured) (status, message string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			s, _ := m["status"].(string)
			msg, _ := m["message"].(string)
			return s, msg
		}
	}
	return "Unknown", "no Available condition yet"
}

// GantryClient is an HTTPS client for Gantry's own port that trusts its
// serving CA and presents no credentials.
func (st *Stack) GantryClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(st.caPEM)
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: Service + "." + Namespace + ".svc"}},
	}
}

// EnsureNamespace creates a namespace if it does not exist.
func (st *Stack) EnsureNamespace(ctx context.Context, name string) error {
	_, err := st.Cluster.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(0, fi.Size()-limit)
	buf := make([]byte, fi.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return strings.TrimSpace(string(buf))
}
