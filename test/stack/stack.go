// Package stack runs the whole of Gantry's world on one machine, on
// loopback: a local control plane with kwok (test/cluster), a real
// Prometheus fed by remote write (test/prom), and Gantry itself as a child
// process, registered with the aggregation layer through the manifests in
// deploy/ and authenticating as its own ServiceAccount. The e2e tests and
// `make demo` both start it.
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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// APIServices are the four API versions Gantry registers.
var APIServices = []string{
	"v1beta1.custom.metrics.k8s.io",
	"v1beta2.custom.metrics.k8s.io",
	"v1beta1.external.metrics.k8s.io",
	"v1beta1.metrics.k8s.io",
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
}

// Stack is a running cluster, Prometheus and Gantry.
type Stack struct {
	Cluster *cluster.Cluster
	Prom    *prom.Server
	// GantryURL is Gantry's own address, https://127.0.0.1:<port>.
	GantryURL string
	// GantryLog is the path of Gantry's log.
	GantryLog string

	opts   Options
	gantry *exec.Cmd
	exited chan struct{}
	caPEM  []byte
	// gantryBin and gantryArgs are Gantry's command line, for RestartGantry.
	gantryBin  string
	gantryArgs []string
}

// Start brings everything up and returns once the four APIServices are
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
	if opts.BinDir == "" {
		if opts.BinDir, err = toolbin.Dir(); err != nil {
			return nil, err
		}
	}
	gantryBin, err := toolbin.Path(opts.BinDir, "gantry")
	if err != nil {
		return nil, err
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
	return st, nil
}

// StartT starts a stack for the duration of a test, printing the logs of
// every component if the test fails.
func StartT(t testing.TB, opts Options) *Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("stack: skipping a test that starts a control plane in -short mode")
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
			t.Logf("stack: gantry log (%s):\n%s", st.GantryLog, tail(st.GantryLog, 48<<10))
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
	if err := st.StopGantry(); err != nil {
		errs = append(errs, err)
	}
	if st.Cluster != nil {
		errs = append(errs, st.Cluster.Stop())
	}
	if st.Prom != nil {
		errs = append(errs, st.Prom.Stop())
	}
	return errors.Join(errs...)
}

// StopGantry stops the Gantry process (SIGTERM, then SIGKILL after 10s).
func (st *Stack) StopGantry() error {
	if st.gantry == nil || st.gantry.Process == nil {
		return nil
	}
	select {
	case <-st.exited:
		return nil
	default:
	}
	_ = st.gantry.Process.Signal(syscall.SIGTERM)
	select {
	case <-st.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = st.gantry.Process.Kill()
	select {
	case <-st.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stack: gantry (pid %d) did not exit after SIGKILL", st.gantry.Process.Pid)
	}
}

// GantryPID is the pid of the running Gantry process, 0 if none.
func (st *Stack) GantryPID() int {
	if st.gantry == nil || st.gantry.Process == nil {
		return 0
	}
	return st.gantry.Process.Pid
}

// applyManifests applies deploy/manifests as a cluster admin would, except
// what needs a kubelet: the Deployment and its PodDisruptionBudget. The
// Service becomes an ExternalName to localhost and the APIServices get the
// serving CA, so the aggregator reaches the Gantry process on loopback.
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
		case "Deployment", "PodDisruptionBudget":
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
	return nil
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
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(st.opts.Rules), 0o644); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	st.GantryURL = "https://127.0.0.1:" + strconv.Itoa(port)
	st.GantryLog = filepath.Join(dir, "gantry.log")
	args := []string{
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--lister-kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--config=" + configFile,
		"--prometheus-url=" + st.Prom.URL(),
		"--metrics-relist-interval=" + st.opts.RelistInterval.String(),
		"--metrics-max-age=30m",
		"--v=2",
	}
	args = append(args, st.opts.GantryArgs...)
	st.gantryBin, st.gantryArgs = bin, args
	if err := st.spawnGantry(os.O_TRUNC); err != nil {
		return err
	}

	// Now the APIServices can point at Gantry's port.
	objs, err := deploy.Objects()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(st.Cluster.RESTConfig())
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	for _, obj := range objs {
		if obj.GetKind() != "APIService" {
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

// spawnGantry runs Gantry's command line, logging to GantryLog opened with
// flag (os.O_TRUNC or os.O_APPEND).
func (st *Stack) spawnGantry(flag int) error {
	logFile, err := os.OpenFile(st.GantryLog, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(st.gantryBin, st.gantryArgs...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("stack: starting gantry: %w", err)
	}
	exited := make(chan struct{})
	st.gantry, st.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	st.opts.Logf("stack: gantry started at %s (pid %d, log %s)", st.GantryURL, cmd.Process.Pid, st.GantryLog)
	return nil
}

// RestartGantry starts Gantry again after StopGantry (or a crash), with the
// same command line: the same port, serving certificate, credentials and
// rules, so the APIServices and any scraper find it where it was. Its log
// goes on in GantryLog. It returns once the APIServices are Available again.
func (st *Stack) RestartGantry(ctx context.Context) error {
	if st.gantryBin == "" {
		return errors.New("stack: gantry was never started")
	}
	if st.exited != nil {
		select {
		case <-st.exited:
		default:
			return fmt.Errorf("stack: gantry (pid %d) is still running; stop it first", st.GantryPID())
		}
	}
	begin := time.Now()
	if err := st.spawnGantry(os.O_APPEND); err != nil {
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
		case <-st.exited:
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
