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
	"os/exec"
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
	maxLogDump          = 48 << 10
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
	// ReadyTimeout bounds the wait for the CRDs and the recommender's
	// metrics endpoint (default 1m).
	ReadyTimeout time.Duration
}

// Recommender is a running vpa-recommender child process.
type Recommender struct {
	// MetricsURL is the recommender's own /metrics
	// (vpa_recommender_* series), on loopback.
	MetricsURL string
	// LogPath is its log (klog on stderr, and stdout).
	LogPath string

	proc *proc.Process
	logf func(string, ...any)

	stopOnce sync.Once
	stopErr  error
}

// Start applies the CRDs and runs the recommender. ctx bounds the start
// only: the process runs until Stop. The kernel kills it if the caller dies
// (Pdeathsig on Linux).
func Start(ctx context.Context, o Options) (*Recommender, error) {
	if o.WorkDir == "" || o.Kubeconfig == "" {
		return nil, errors.New("vpa: WorkDir and Kubeconfig are required")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Interval <= 0 {
		o.Interval = defaultInterval
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = defaultReadyTimeout
	}
	binDir, err := toolbin.DirOr(o.BinDir)
	if err != nil {
		return nil, fmt.Errorf("vpa: %w", err)
	}
	o.BinDir = binDir
	bin, err := toolbin.Path(o.BinDir, Binary)
	if err != nil {
		return nil, fmt.Errorf("vpa: %w", err)
	}
	crds := filepath.Join(o.BinDir, CRDs)
	if _, err := os.Stat(crds); err != nil {
		return nil, fmt.Errorf("vpa: the CRDs install-vpa.sh copies next to the binary: %w (run `make tools`)", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()

	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("vpa: reading kubeconfig: %w", err)
	}
	begin := time.Now()
	if err := ApplyCRDs(ctx, cfg, crds); err != nil {
		return nil, err
	}
	o.Logf("vpa: CRDs established in %s", time.Since(begin).Round(10*time.Millisecond))

	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("vpa: creating work dir: %w", err)
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return nil, fmt.Errorf("vpa: %w", err)
	}
	port := ports[0]
	args := []string{
		"--kubeconfig=" + o.Kubeconfig,
		"--recommender-interval=" + o.Interval.String(),
		// Orphaned checkpoints are collected often, so a test's leftovers
		// go within the test.
		"--checkpoints-gc-interval=" + (6 * o.Interval).String(),
		// Every pod is tracked, not only those a VPA already selects: a
		// VPA created after its pods has history at once.
		"--memory-saver=false",
		"--address=127.0.0.1:" + strconv.Itoa(port),
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
	args = append(args, o.ExtraArgs...)

	r := &Recommender{
		MetricsURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/metrics",
		LogPath:    filepath.Join(o.WorkDir, "vpa-recommender.log"),
		logf:       o.Logf,
	}
	logFile, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vpa: creating log file: %w", err)
	}
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(bin, args...)
	cmd.Dir = o.WorkDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	fmt.Fprintf(logFile, "### %s %s %q\n", time.Now().Format(time.RFC3339), Binary, args)
	if r.proc, err = proc.Start("vpa: recommender", cmd, logFile); err != nil {
		return nil, fmt.Errorf("vpa: starting %s: %w", bin, err)
	}
	begin = time.Now()
	if err := r.waitServing(ctx); err != nil {
		_ = r.Stop()
		return nil, err
	}
	o.Logf("vpa: recommender (pid %d) serving %s in %s", r.PID(), r.MetricsURL, time.Since(begin).Round(10*time.Millisecond))
	return r, nil
}

// StartT starts a recommender for the duration of a test, printing its log
// if the test fails. WorkDir defaults to a test temp dir and Logf to t.Logf.
func StartT(t testing.TB, o Options) *Recommender {
	t.Helper()
	if o.BinDir == "" {
		o.BinDir = toolbin.Require(t, Binary)
	}
	if o.WorkDir == "" {
		o.WorkDir = t.TempDir()
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	r, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("vpa: recommender log (%s):\n%s", r.LogPath, r.LogTail(maxLogDump))
		}
	})
	return r
}

// waitServing waits until the recommender answers on its metrics port (it
// opens it before it connects to the cluster; a recommender that cannot sync
// its informers exits, which a test sees as an unexpected exit at Stop), or
// until it exits.
func (r *Recommender) waitServing(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	err := proc.WaitReady(ctx, r.proc, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := proc.GetOK(ctx, hc, r.MetricsURL, 64<<20)
		return err
	})
	if err != nil {
		return fmt.Errorf("vpa: recommender at %s: %w; log %s:\n%s", r.MetricsURL, err, r.LogPath, r.LogTail(8<<10))
	}
	return nil
}

// Exited is closed once the process has exited.
func (r *Recommender) Exited() <-chan struct{} { return r.proc.Exited() }

// PID is the recommender's process id.
func (r *Recommender) PID() int { return r.proc.PID() }

// Stop sends SIGTERM, then SIGKILL after a grace period, and waits for the
// exit. It is safe to call more than once; an exit the harness did not ask
// for (a crash before Stop) is reported as an error.
func (r *Recommender) Stop() error {
	r.stopOnce.Do(func() {
		select {
		case <-r.proc.Exited():
			r.stopErr = fmt.Errorf("vpa: recommender (pid %d) had exited before Stop: %v", r.PID(), r.proc.Err())
			return
		default:
		}
		err := r.proc.Terminate(stopGrace, func() {
			r.logf("vpa: recommender (pid %d) still running %s after SIGTERM; sending SIGKILL", r.PID(), stopGrace)
		})
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
