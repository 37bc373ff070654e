// Package cluster runs a local Kubernetes control plane on 127.0.0.1 —
// etcd, kube-apiserver (with the aggregation layer wired up),
// kube-controller-manager (HPA, deployments, replica sets, ...) and
// optionally kwok for fake nodes whose pods become Ready, and kubelet
// metrics endpoints for those nodes — for Gantry's e2e tests and for
// `make demo`.
//
// Every component is a real binary built by `make tools` into
// <repo root>/bin (or $GANTRY_BIN_DIR), started as a child process with a
// fresh PKI generated here, its log in the work dir. There is no kubelet and
// no scheduler: pods need spec.nodeName and, to become Ready, a fake node
// (Options.Kwok and AddFakeNode). With Options.KubeletMetrics each fake node
// also serves kubelet-style /metrics/resource at its own address (see
// KubeletProxy), with usage set per pod by SetPodUsage.
//
//	c := cluster.StartT(t, cluster.Options{Kwok: true})
//	if err := c.AddFakeNode(ctx, "fake-1", "4", "8Gi"); err != nil { ... }
//	client := c.Client()
package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// Component names a process of the cluster, for LogPath and LogTail.
type Component string

// The components, in start order.
const (
	Etcd              Component = "etcd"
	APIServer         Component = "kube-apiserver"
	ControllerManager Component = "kube-controller-manager"
	Kwok              Component = "kwok"
)

const (
	// ServiceClusterIPRange keeps Service ClusterIPs on loopback too.
	ServiceClusterIPRange = "127.100.0.0/16"
	// PodCIDR is where kwok hands out pod IPs.
	PodCIDR = "127.200.0.1/16"
	// FakeNodeAnnotation marks the nodes kwok manages (value "fake"); nodes
	// without it are left alone.
	FakeNodeAnnotation = "kwok.x-k8s.io/node"

	frontProxyClientName = "front-proxy-client"

	// restartGrace bounds the wait after SIGTERM in RestartAPIServer.
	restartGrace = 3 * time.Second

	defaultHPASyncPeriod             = 5 * time.Second
	defaultHPADownscaleStabilization = 15 * time.Second
	defaultStopGrace                 = 10 * time.Second
	// defaultStartTimeout bounds Start when its context has no deadline.
	// A cold start takes a few seconds; this is for a loaded CI machine.
	defaultStartTimeout = 3 * time.Minute
	// maxLogDump caps how much of a log a failing test prints.
	maxLogDump = 32 << 10
)

// Options configure Start. The zero value is a working control plane
// without kwok.
type Options struct {
	// BinDir holds the binaries; default $GANTRY_BIN_DIR, else
	// <repo root>/bin.
	BinDir string
	// WorkDir receives the PKI, the kubeconfig, etcd's data and one log per
	// component. Empty means a temporary directory that Stop removes
	// (StartT uses t.TempDir()).
	WorkDir string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
	// HPASyncPeriod is kube-controller-manager's
	// --horizontal-pod-autoscaler-sync-period (default 5s).
	HPASyncPeriod time.Duration
	// HPADownscaleStabilization is
	// --horizontal-pod-autoscaler-downscale-stabilization (default 15s,
	// against 5m in a real cluster, so tests see scale-downs).
	HPADownscaleStabilization time.Duration
	// Kwok also starts kwok, managing the nodes AddFakeNode creates.
	Kwok bool
	// KubeletMetrics (implies Kwok) gives every fake node a kubelet
	// metrics endpoint: its own InternalIP (127.1.x.y) and the KubeletPort
	// in its status, where the KubeletProxy serves kwok's simulated
	// /metrics/resource over TLS signed by the cluster CA. Container usage
	// follows pod annotations (SetPodUsage). kwok's CRDs are installed and
	// its Metric and ClusterResourceUsage objects created before it starts.
	KubeletMetrics bool
	// APIServerFlags and ControllerManagerFlags are appended to the
	// components' command lines (a later flag overrides an earlier one).
	APIServerFlags         []string
	ControllerManagerFlags []string
	// StopGrace bounds the wait after SIGTERM before SIGKILL (default 10s).
	StopGrace time.Duration
}

// Cluster is a running control plane. Its methods may be called from
// several goroutines.
type Cluster struct {
	opts    Options
	logf    func(string, ...any)
	workDir string
	ownsDir bool // workDir was created by Start and is removed by Stop

	pki            *pki
	url            string
	kubeconfigPath string
	restConfig     *rest.Config
	probeClient    *http.Client // polls /readyz during Start
	client         kubernetes.Interface
	bulk           kubernetes.Interface // client without rate limit, for AddFakeNodes and AddFakePods

	// With Options.KubeletMetrics; set during Start.
	kubeletProxy  *KubeletProxy
	kwokServerURL string

	mu      sync.Mutex
	servers map[Component]*proc.Server
	// fakeNodes counts the fake nodes given a kubelet endpoint; the next
	// one's address derives from it.
	fakeNodes int
	// fakeNodeNames counts AddFakeNodes' names (kwok-node-<k>).
	fakeNodeNames int

	stopOnce sync.Once
	stopErr  error
}

// Start runs etcd, kube-apiserver and kube-controller-manager (and kwok if
// opts.Kwok) and returns once the API server answers /readyz and the
// controller manager has created the default ServiceAccount. ctx bounds the
// start only: the processes run until Stop, which a long-running program
// must call on its way out. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	begin := time.Now()
	opts = withDefaults(opts)
	c := &Cluster{opts: opts, logf: opts.Logf, servers: map[Component]*proc.Server{}}

	bins, err := c.findBinaries()
	if err != nil {
		return nil, err
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}

	if opts.WorkDir == "" {
		d, err := os.MkdirTemp("", "gantry-cluster-")
		if err != nil {
			return nil, fmt.Errorf("cluster: creating work dir: %w", err)
		}
		c.workDir, c.ownsDir = d, true
	} else {
		if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
			return nil, fmt.Errorf("cluster: creating work dir: %w", err)
		}
		c.workDir = opts.WorkDir
	}

	if err := c.start(ctx, bins); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.logf("cluster: control plane ready at %s in %s (work dir %s)", c.url, time.Since(begin).Round(10*time.Millisecond), c.workDir)
	return c, nil
}

// StartT starts a cluster for the duration of a test: the work dir is a
// t.TempDir(), progress goes to t.Logf, and Cleanup stops every process and
// prints the components' logs if the test failed. Missing binaries fail the
// test with a hint to run `make tools`; with -short the test is skipped, as
// no control plane is started in short mode.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = toolbin.Require(t, "etcd", "kube-apiserver", "kube-controller-manager", "kwok")
	}
	if opts.WorkDir == "" {
		// TempDir registers its removal first, so it runs after Stop below.
		opts.WorkDir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, comp := range []Component{Etcd, APIServer, ControllerManager, Kwok} {
				if _, err := os.Stat(c.LogPath(comp)); err == nil {
					t.Logf("cluster: %s log (%s):\n%s", comp, c.LogPath(comp), c.LogTail(comp))
				}
			}
		}
	})
	return c
}

func withDefaults(o Options) Options {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.HPASyncPeriod <= 0 {
		o.HPASyncPeriod = defaultHPASyncPeriod
	}
	if o.HPADownscaleStabilization <= 0 {
		o.HPADownscaleStabilization = defaultHPADownscaleStabilization
	}
	if o.StopGrace <= 0 {
		o.StopGrace = defaultStopGrace
	}
	if o.KubeletMetrics {
		o.Kwok = true
	}
	return o
}

// binaries are the paths of the executables Start runs.
type binaries struct {
	etcd, apiserver, controllerManager, kwok string
	kwokStages                               []string
	kwokMetrics                              kwokMetricsFiles
}

// findBinaries checks every binary up front, so a machine without
// `make tools` gets one clear error before anything starts.
func (c *Cluster) findBinaries() (binaries, error) {
	dir, err := toolbin.DirOr(c.opts.BinDir)
	if err != nil {
		return binaries{}, fmt.Errorf("cluster: %w", err)
	}
	var b binaries
	var errs []error
	find := func(dst *string, name string) {
		p, err := toolbin.Path(dir, name)
		*dst = p
		errs = append(errs, err)
	}
	find(&b.etcd, "etcd")
	find(&b.apiserver, "kube-apiserver")
	find(&b.controllerManager, "kube-controller-manager")
	if c.opts.Kwok {
		find(&b.kwok, "kwok")
		stages, _ := filepath.Glob(filepath.Join(dir, "kwok-stages", "*.yaml"))
		if len(stages) == 0 {
			errs = append(errs, fmt.Errorf("no kwok stage configs in %s: run `make tools`", filepath.Join(dir, "kwok-stages")))
		}
		b.kwokStages = stages
	}
	if c.opts.KubeletMetrics {
		var err error
		b.kwokMetrics, err = findKwokMetricsFiles(dir)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return binaries{}, fmt.Errorf("cluster: %w", err)
	}
	return b, nil
}

func (c *Cluster) start(ctx context.Context, bins binaries) error {
	var err error
	if c.pki, err = newPKI(filepath.Join(c.workDir, "pki")); err != nil {
		return err
	}

	etcdPorts, err := c.startComponent(ctx, Etcd, bins.etcd, 2, nil, c.etcdArgs, c.etcdReady)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPorts[0])

	apiArgs := func(ports []int) []string { return c.apiserverArgs(etcdURL, ports[0]) }
	if _, err := c.startComponent(ctx, APIServer, bins.apiserver, 1, nil, apiArgs, c.apiserverReady); err != nil {
		return err
	}
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	if c.client, err = kubernetes.NewForConfig(c.restConfig); err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	// Creating fake nodes and pods by the thousand: the client-side
	// limiter would dominate; the callers bound concurrency instead.
	bulkConfig := rest.CopyConfig(c.restConfig)
	bulkConfig.QPS = -1
	if c.bulk, err = kubernetes.NewForConfig(bulkConfig); err != nil {
		return fmt.Errorf("creating client: %w", err)
	}

	kcmArgs := func([]int) []string { return c.controllerManagerArgs() }
	if _, err := c.startComponent(ctx, ControllerManager, bins.controllerManager, 0, nil, kcmArgs, c.controllerManagerReady); err != nil {
		return err
	}

	if c.opts.Kwok {
		return c.startKwok(ctx, bins)
	}
	return nil
}

func (c *Cluster) startKwok(ctx context.Context, bins binaries) error {
	// KWOK_WORKDIR keeps kwok from loading ~/.kwok/kwok.yaml.
	env := []string{"KWOK_WORKDIR=" + filepath.Join(c.workDir, "kwok")}
	if !c.opts.KubeletMetrics {
		kwokArgs := func([]int) []string { return c.kwokArgs(bins.kwokStages, nil) }
		_, err := c.startComponent(ctx, Kwok, bins.kwok, 0, env, kwokArgs, nil)
		return err
	}

	// kwok lists and watches its CRDs from the start: they (and the
	// objects it serves metrics from) must exist first.
	if err := c.installKwokMetrics(ctx, bins.kwokMetrics); err != nil {
		return err
	}
	kubeletPort, err := freeKubeletPort()
	if err != nil {
		return err
	}
	kwokArgs := func(ports []int) []string {
		c.kwokServerURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
		return c.kwokArgs(bins.kwokStages, kwokMetricsArgs(ports[0], kubeletPort))
	}
	ready := func(ctx context.Context, _ []int) error { return c.kwokMetricsReady(ctx) }
	if _, err := c.startComponent(ctx, Kwok, bins.kwok, 1, env, kwokArgs, ready); err != nil {
		return err
	}
	kp, err := newKubeletProxy(kubeletPort, c.kwokServerURL, c.pki, c.logf)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.kubeletProxy = kp
	c.mu.Unlock()
	c.logf("cluster: fake nodes' kubelet port %d (kwok's server %s)", kubeletPort, c.kwokServerURL)
	return nil
}

func (c *Cluster) etcdArgs(ports []int) []string {
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	dataDir := filepath.Join(c.workDir, "etcd")
	// A failed attempt may have left a half-made member directory behind.
	_ = os.RemoveAll(dataDir)
	return []string{
		"--name=gantry-test",
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=gantry-test=" + peer,
		"--initial-cluster-state=new",
		// Throwaway data: no fsync makes every write (and the tests) faster.
		"--unsafe-no-fsync=true",
	}
}

func (c *Cluster) etcdReady(ctx context.Context, ports []int) error {
	body, err := httpGet(ctx, http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(ports[0])+"/health")
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"health":"true"`) {
		return fmt.Errorf("GET /health: %s", body)
	}
	return nil
}

func (c *Cluster) apiserverArgs(etcdURL string, port int) []string {
	p := c.pki
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + p.apiserver.certFile,
		"--tls-private-key-file=" + p.apiserver.keyFile,
		"--client-ca-file=" + p.ca.certFile,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saPubFile,
		"--service-account-signing-key-file=" + p.saKeyFile,
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		// The default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type=none",
		// The aggregation layer: how the apiserver proves itself to
		// extension API servers such as Gantry, and what they trust.
		"--requestheader-client-ca-file=" + p.frontProxyCA.certFile,
		"--requestheader-allowed-names=" + frontProxyClientName,
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + p.proxyClient.certFile,
		"--proxy-client-key-file=" + p.proxyClient.keyFile,
		// Route to the APIService's Service (an ExternalName to localhost),
		// not to endpoints, which nothing maintains here.
		"--enable-aggregator-routing=false",
		"--cert-dir=" + filepath.Join(c.workDir, "apiserver-certs"),
	}
	return append(args, c.opts.APIServerFlags...)
}

func (c *Cluster) apiserverReady(ctx context.Context, ports []int) error {
	if url := "https://127.0.0.1:" + strconv.Itoa(ports[0]); url != c.url {
		// First probe of this attempt: point the admin config at it.
		c.url = url
		c.restConfig = &rest.Config{
			Host: c.url,
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   c.pki.ca.certPEM,
				CertData: c.pki.admin.certPEM,
				KeyData:  c.pki.admin.keyPEM,
			},
			// Tests create objects in bursts; client-go's default 5 QPS
			// would make them wait on the client, not on the cluster.
			QPS:   100,
			Burst: 200,
		}
		hc, err := rest.HTTPClientFor(c.restConfig)
		if err != nil {
			return err
		}
		c.probeClient = hc
	}
	body, err := httpGet(ctx, c.probeClient, c.url+"/readyz")
	if err != nil {
		return err
	}
	if body != "ok" {
		return fmt.Errorf("GET /readyz: %s", body)
	}
	return nil
}

func (c *Cluster) controllerManagerArgs() []string {
	args := []string{
		"--kubeconfig=" + c.kubeconfigPath,
		"--controllers=horizontalpodautoscaling,deployment,replicaset,garbagecollector,namespace,serviceaccount",
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--secure-port=0",
		"--horizontal-pod-autoscaler-sync-period=" + c.opts.HPASyncPeriod.String(),
		"--horizontal-pod-autoscaler-downscale-stabilization=" + c.opts.HPADownscaleStabilization.String(),
	}
	return append(args, c.opts.ControllerManagerFlags...)
}

// controllerManagerReady waits for the default ServiceAccount: pods cannot
// be admitted without it, and its creation proves the controller manager is
// connected and running controllers.
func (c *Cluster) controllerManagerReady(ctx context.Context, _ []int) error {
	_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return errors.New("no default ServiceAccount yet")
	}
	return err
}

// kwokArgs is kwok's command line; metricsArgs (KubeletMetrics) replace
// the defaults of no server and no kubelet port.
func (c *Cluster) kwokArgs(stages, metricsArgs []string) []string {
	args := []string{
		"--kubeconfig=" + c.kubeconfigPath,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + FakeNodeAnnotation + "=fake",
		"--cidr=" + PodCIDR,
		"--node-ip=127.0.0.1",
	}
	if metricsArgs == nil {
		// No kubelet API server: nothing here execs into or scrapes pods.
		metricsArgs = []string{"--node-port=0", "--server-address="}
	}
	args = append(args, metricsArgs...)
	for _, s := range stages {
		args = append(args, "--config="+s)
	}
	return args
}

// writeKubeconfig writes an admin kubeconfig with the credentials inlined,
// so it stays valid wherever it is copied.
func (c *Cluster) writeKubeconfig() error {
	b64 := base64.StdEncoding.EncodeToString
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: gantry-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: gantry-test
  context:
    cluster: gantry-test
    user: admin
current-context: gantry-test
`, c.url, b64(c.pki.ca.certPEM), b64(c.pki.admin.certPEM), b64(c.pki.admin.keyPEM))
	c.kubeconfigPath = filepath.Join(c.workDir, "admin.kubeconfig")
	if err := os.WriteFile(c.kubeconfigPath, []byte(kubeconfig), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// Stop ends every component, last started first: SIGTERM, then SIGKILL
// if one has not exited within the stop grace. It removes the work dir if
// Start created it. Stop is safe to call more than once; later calls return
// the first result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		begin := time.Now()
		var errs []error
		c.mu.Lock()
		kp := c.kubeletProxy
		c.mu.Unlock()
		if kp != nil {
			if err := kp.Close(); err != nil {
				errs = append(errs, fmt.Errorf("kubelet proxy: %w", err))
			}
		}
		for _, name := range []Component{Kwok, ControllerManager, APIServer, Etcd} {
			c.mu.Lock()
			srv := c.servers[name]
			c.mu.Unlock()
			if srv != nil {
				errs = append(errs, srv.Stop())
			}
		}
		if c.ownsDir {
			if err := os.RemoveAll(c.workDir); err != nil {
				errs = append(errs, fmt.Errorf("removing work dir: %w", err))
			}
		}
		if c.stopErr = errors.Join(errs...); c.stopErr != nil {
			c.stopErr = fmt.Errorf("cluster: stopping: %w", c.stopErr)
		} else {
			c.logf("cluster: stopped in %s", time.Since(begin).Round(10*time.Millisecond))
		}
	})
	return c.stopErr
}

// RestartAPIServer stops the kube-apiserver (SIGTERM, then SIGKILL after
// 3s) and starts it again with the same command line: the same
// port, etcd and certificates, so every client finds it where it was. It
// returns once /readyz answers ok again; watches and connections of the
// other components and of Gantry broke meanwhile, and recovering is theirs
// to do.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	srv := c.servers[APIServer]
	c.mu.Unlock()
	if srv == nil {
		return errors.New("cluster: kube-apiserver was never started")
	}
	// kube-apiserver drains its watches for a while after SIGTERM; a
	// restart does not wait for that, as a crash would not.
	p := srv.Process()
	if err := p.Terminate(restartGrace, nil); err != nil {
		select {
		case <-p.Exited():
		default:
			return fmt.Errorf("cluster: stopping kube-apiserver: %w", err)
		}
	}
	if err := srv.Restart(ctx); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// URL is the API server's base URL, e.g. https://127.0.0.1:41234.
func (c *Cluster) URL() string { return c.url }

// KubeconfigPath is an admin (system:masters) kubeconfig for the cluster,
// for kubectl, the controller manager and Gantry's --kubeconfig flags.
func (c *Cluster) KubeconfigPath() string { return c.kubeconfigPath }

// RESTConfig returns a copy of the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Client is an admin clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// WorkDir is where the PKI, kubeconfig, data and logs live.
func (c *Cluster) WorkDir() string { return c.workDir }

// CAPEM is the cluster CA certificate: it signs the API server's serving
// certificate, the admin client certificate and ServingCert's certificates.
func (c *Cluster) CAPEM() []byte { return append([]byte(nil), c.pki.ca.certPEM...) }

// CAFile is the path of the cluster CA certificate (CAPEM), e.g. for
// --kubelet-certificate-authority: it signs the fake nodes' kubelet serving
// certificates too.
func (c *Cluster) CAFile() string { return c.pki.ca.certFile }

// ServingCert issues a serving certificate for an aggregated API server,
// valid for dnsNames (e.g. "gantry.gantry-system.svc", the name the
// aggregator dials), localhost and 127.0.0.1. caPEM is what the APIService's
// caBundle must hold. The files live in the work dir.
func (c *Cluster) ServingCert(dnsNames ...string) (certFile, keyFile string, caPEM []byte, err error) {
	kp, err := c.pki.servingCert(dnsNames)
	if err != nil {
		return "", "", nil, fmt.Errorf("cluster: %w", err)
	}
	return kp.certFile, kp.keyFile, c.CAPEM(), nil
}

// PIDs returns the process id of every component started.
func (c *Cluster) PIDs() map[Component]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make(map[Component]int, len(c.servers))
	for name, srv := range c.servers {
		pids[name] = srv.PID()
	}
	return pids
}

// LogPath is the file holding a component's stdout and stderr.
func (c *Cluster) LogPath(name Component) string {
	return filepath.Join(c.workDir, string(name)+".log")
}

// LogTail returns the last 32 KiB of a component's log, for printing when a
// test fails.
func (c *Cluster) LogTail(name Component) string { return proc.LogTail(c.LogPath(name), maxLogDump) }

func httpGet(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}
