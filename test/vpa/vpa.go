// Package vpa runs the real Vertical Pod Autoscaler recommender (the
// vpa-recommender binary test/tools/install-vpa.sh builds from
// k8s.io/autoscaler/vertical-pod-autoscaler) against a local cluster, for the
// e2e tests that show it consumes what Gantry serves: metrics.k8s.io by
// default, external.metrics.k8s.io with --use-external-metrics.
//
// It sits under test/ beside the cluster and Prometheus harnesses. Start
// installs the VerticalPodAutoscaler and VerticalPodAutoscalerCheckpoint CRDs
// of the same module version (copied into the bin directory at install
// time), then runs the recommender as a child process with a short loop
// interval; Recommendations reads what it wrote into a VPA's status.
package vpa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// Binary and CRDs are the files install-vpa.sh puts into the bin directory.
const (
	Binary = "vpa-recommender"
	CRDs   = "vpa-crds.yaml"
)

const (
	defaultInterval     = 5 * time.Second
	defaultReadyTimeout = time.Minute
	stopGrace           = 5 * time.Second
)

// Options say where and how to run the recommender.
type Options struct {
	// BinDir holds vpa-recommender and vpa-crds.yaml; default as
	// toolbin.Dir.
	BinDir string
	// WorkDir receives the log; required.
	WorkDir string
	// Kubeconfig is the recommender's credentials (a cluster admin's in
	// the tests); required. Start applies the CRDs with it too.
	Kubeconfig string
	// Interval is --recommender-interval, how often it fetches metrics
	// and writes recommendations (default 5s; its own default is 1m).
	Interval time.Duration
	// Namespace, when set, is --vpa-object-namespace: the recommender
	// watches and writes only the VPAs there, so tests in other
	// namespaces (and their recommenders) do not interfere.
	Namespace string
	// ExternalCPUMetric and ExternalMemoryMetric, when either is set, turn
	// on --use-external-metrics: the recommender reads per-container usage
	// from external.metrics.k8s.io under these metric names instead of
	// metrics.k8s.io.
	ExternalCPUMetric, ExternalMemoryMetric string
	// ExtraArgs are appended to the command line (later flags win).
	ExtraArgs []string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
	// ReadyTimeout bounds the wait for the CRDs, and each start attempt's
	// wait for the recommender's metrics endpoint (default 1m).
	ReadyTimeout time.Duration
}

// Recommender is a running vpa-recommender child process.
type Recommender struct {
	// MetricsURL is the recommender's own /metrics
	// (vpa_recommender_* series), on loopback.
	MetricsURL string
	// LogPath is its log (klog on stderr, and stdout).
	LogPath string

	opts   Options
	client *http.Client
	srv    proc.Server

	stopOnce sync.Once
	stopErr  error
}

// Start applies the CRDs and runs the recommender on a free 127.0.0.1 port
// until its metrics endpoint answers. ctx bounds the start only: the
// process runs until Stop. The kernel kills it if the caller dies
// (Pdeathsig on Linux).
func Start(ctx context.Context, o Options) (*Recommender, error) {
	if o.WorkDir == "" || o.Kubeconfig == "" {
		return nil, errors.New("vpa: WorkDir and Kubeconfig are required")
	}
	o.Interval = proc.DurationOr(o.Interval, defaultInterval)
	o.ReadyTimeout = proc.DurationOr(o.ReadyTimeout, defaultReadyTimeout)
	binDir, err := toolbin.DirOr(o.BinDir)
	if err != nil {
		return nil, fmt.Errorf("vpa: %w", err)
	}
	o.BinDir = binDir
	// Checked before the CRDs go into the cluster.
	if _, err := toolbin.Path(o.BinDir, Binary); err != nil {
		return nil, fmt.Errorf("vpa: %w", err)
	}
	crds := filepath.Join(o.BinDir, CRDs)
	if _, err := os.Stat(crds); err != nil {
		return nil, fmt.Errorf("vpa: the CRDs install-vpa.sh copies next to the binary: %w (run `make tools`)", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("vpa: reading kubeconfig: %w", err)
	}
	crdCtx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	begin := time.Now()
	if err := ApplyCRDs(crdCtx, cfg, crds); err != nil {
		return nil, err
	}
	if o.Logf != nil {
		o.Logf("vpa: CRDs established in %s", time.Since(begin).Round(10*time.Millisecond))
	}

	r := &Recommender{opts: o, client: &http.Client{Timeout: proc.ProbeTimeout}}
	r.srv = proc.Server{
		Name: "vpa recommender", Title: "VPA recommender", Tag: "vpa", Tool: Binary, BinDir: o.BinDir,
		WorkDir: o.WorkDir, LogName: "vpa-recommender.log", Logf: o.Logf,
		ReadyTimeout:  o.ReadyTimeout,
		StopGrace:     stopGrace,
		ProbeInterval: 100 * time.Millisecond,
		Prepare:       r.prepare,
		// The recommender opens its metrics port before it connects to
		// the cluster; one that cannot sync its informers exits, which a
		// test sees as an exit before Stop.
		Ready: func(ctx context.Context) error {
			_, err := proc.GetOK(ctx, r.client, r.MetricsURL, 64<<20)
			return err
		},
	}
	if err := r.srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("vpa: %w", err)
	}
	r.LogPath = r.srv.LogPath()
	return r, nil
}

// prepare picks a fresh port for a start attempt.
func (r *Recommender) prepare() (proc.Launch, error) {
	ports, err := proc.FreePorts(1)
	if err != nil {
		return proc.Launch{}, err
	}
	o := r.opts
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	r.MetricsURL = "http://" + addr + "/metrics"
	args := []string{
		"--kubeconfig=" + o.Kubeconfig,
		"--recommender-interval=" + o.Interval.String(),
		// Orphaned checkpoints are collected often, so a test's leftovers
		// go within the test.
		"--checkpoints-gc-interval=" + (6 * o.Interval).String(),
		// Every pod is tracked, not only those a VPA already selects: a
		// VPA created after its pods has history at once.
		"--memory-saver=false",
		"--address=" + addr,
		"--v=4",
	}
	if o.Namespace != "" {
		args = append(args, "--vpa-object-namespace="+o.Namespace)
	}
	if o.ExternalCPUMetric != "" || o.ExternalMemoryMetric != "" {
		args = append(args, "--use-external-metrics=true",
			"--external-metrics-cpu-metric="+o.ExternalCPUMetric,
			"--external-metrics-memory-metric="+o.ExternalMemoryMetric)
	}
	return proc.Launch{Addr: r.MetricsURL, Args: append(args, o.ExtraArgs...)}, nil
}

// StartT starts a recommender for the duration of a test, printing its log
// if the test fails. WorkDir defaults to a test temp dir and Logf to t.Logf.
// Cleanup calls Stop, so an exit before it fails the test.
func StartT(t testing.TB, o Options) *Recommender {
	t.Helper()
	o.BinDir, o.WorkDir, o.Logf = proc.TestDefaults(t, o.BinDir, o.WorkDir, o.Logf, Binary)
	return proc.StartT(t, "vpa", proc.DurationOr(o.ReadyTimeout, defaultReadyTimeout),
		func(ctx context.Context) (*Recommender, error) { return Start(ctx, o) },
		func(r *Recommender) *proc.Server { return &r.srv })
}

// Exited is closed once the process has exited.
func (r *Recommender) Exited() <-chan struct{} { return r.srv.Process().Exited() }

// PID is the recommender's process id.
func (r *Recommender) PID() int { return r.srv.PID() }

// Stop sends SIGTERM, then SIGKILL after a grace period, and waits for the
// exit. It is safe to call more than once; an exit the harness did not ask
// for (a crash before Stop) is reported as an error.
func (r *Recommender) Stop() error {
	r.stopOnce.Do(func() {
		p := r.srv.Process()
		select {
		case <-p.Exited():
			// Nothing left to end, and the work dir is the caller's.
			r.stopErr = fmt.Errorf("vpa: recommender (pid %d) had exited before Stop: %v", p.PID(), p.Err())
			return
		default:
		}
		err := r.srv.Stop()
		// Killed after the grace period is a stop like any other here.
		var killed *proc.KilledError
		if !errors.As(err, &killed) {
			r.stopErr = err
		}
	})
	return r.stopErr
}

// LogTail returns at most limit bytes from the end of the log, starting at
// a line boundary.
func (r *Recommender) LogTail(limit int) string { return proc.LogTail(r.LogPath, limit) }

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ApplyCRDs applies every CustomResourceDefinition in the YAML file at path
// (server-side apply, so a second recommender in the same cluster finds them
// in place) and waits until each is Established.
func ApplyCRDs(ctx context.Context, cfg *rest.Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("vpa: reading CRDs: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var names []string
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("vpa: decoding %s: %w", path, err)
		}
		if obj.Object == nil {
			continue // an empty document
		}
		if obj.GetKind() != "CustomResourceDefinition" {
			return fmt.Errorf("vpa: %s holds a %s; only CustomResourceDefinitions expected", path, obj.GetKind())
		}
		body, err := obj.MarshalJSON()
		if err != nil {
			return err
		}
		force := true
		if _, err := dyn.Resource(crdGVR).Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "gantry-vpa-harness", Force: &force}); err != nil {
			return fmt.Errorf("vpa: applying CRD %s: %w", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
	}
	if len(names) == 0 {
		return fmt.Errorf("vpa: no CRDs in %s", path)
	}
	for _, name := range names {
		if err := waitEstablished(ctx, dyn, name); err != nil {
			return err
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, dyn dynamic.Interface, name string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		obj, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("vpa: reading CRD %s: %w", name, err)
		}
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vpa: CRD %s not Established: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}
