// Package ksm runs the real kube-state-metrics against a local cluster
// (test/cluster) for the tests of collectors/kubestate and for `make demo`.
//
// The binary comes from `make tools` (<repo root>/bin/kube-state-metrics, or
// $GANTRY_BIN_DIR/kube-state-metrics). It serves its /metrics and its own
// telemetry on free 127.0.0.1 ports, reads the cluster through the admin
// kubeconfig, and is killed with the process that started it.
//
//	c := cluster.StartT(t, cluster.Options{Kwok: true})
//	k := ksm.StartT(t, c.KubeconfigPath())
//	resp, err := http.Get(k.URL() + "/metrics")
package ksm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	defaultReadyTimeout = time.Minute
	defaultStopGrace    = 10 * time.Second
	// startAttempts covers the small window in which another process can
	// take a free port between our probe and kube-state-metrics' bind.
	startAttempts = 3
	maxLogDump    = 32 << 10
)

// Options configure Start.
type Options struct {
	// Kubeconfig is the cluster's kubeconfig (cluster.KubeconfigPath());
	// required.
	Kubeconfig string
	// BinDir holds kube-state-metrics; default $GANTRY_BIN_DIR, else
	// <repo root>/bin.
	BinDir string
	// WorkDir receives the log; empty means a temporary directory that Stop
	// removes.
	WorkDir string
	// Resources is --resources (default: kube-state-metrics' own list).
	Resources []string
	// Flags are appended to the command line.
	Flags []string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
	// ReadyTimeout bounds the wait for /readyz when ctx has no deadline
	// (default 1m).
	ReadyTimeout time.Duration
	// StopGrace bounds the wait after SIGTERM before SIGKILL (default 10s).
	StopGrace time.Duration
}

// Server is a running kube-state-metrics.
type Server struct {
	url          string
	telemetryURL string
	logPath      string
	workDir      string
	ownsDir      bool
	stopGrace    time.Duration
	logf         func(string, ...any)

	proc *proc.Process

	stopOnce sync.Once
	stopErr  error
}

// StartT starts kube-state-metrics for the duration of a test against the
// cluster whose kubeconfig is at kubeconfig. A missing binary fails the test
// with a hint to run `make tools`; with -short the test is skipped. Cleanup
// stops the process and prints its log if the test failed.
func StartT(t testing.TB, kubeconfig string, opts ...func(*Options)) *Server {
	t.Helper()
	o := Options{Kubeconfig: kubeconfig, BinDir: toolbin.Require(t, "kube-state-metrics"), WorkDir: t.TempDir(), Logf: t.Logf}
	for _, f := range opts {
		f(&o)
	}
	s, err := Start(context.Background(), o)
	if err != nil {
		t.Fatalf("ksm: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("ksm: %v", err)
		}
		if t.Failed() {
			t.Logf("ksm: kube-state-metrics log (%s):\n%s", s.logPath, proc.LogTail(s.logPath, maxLogDump))
		}
	})
	return s
}

// Start runs kube-state-metrics and returns once it is ready (see
// waitReady). ctx bounds the start only; the process runs until Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Kubeconfig == "" {
		return nil, errors.New("a kubeconfig is required")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = defaultReadyTimeout
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = defaultStopGrace
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.ReadyTimeout)
		defer cancel()
	}
	bin, err := toolbin.Find(opts.BinDir, "kube-state-metrics")
	if err != nil {
		return nil, err
	}
	ownsDir := false
	if opts.WorkDir == "" {
		if opts.WorkDir, err = os.MkdirTemp("", "gantry-ksm-"); err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		ownsDir = true
	}

	begin := time.Now()
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		s, retry, err := launch(ctx, bin, opts)
		if err == nil {
			s.workDir, s.ownsDir = opts.WorkDir, ownsDir
			opts.Logf("ksm: kube-state-metrics ready at %s in %s (pid %d)", s.url, time.Since(begin).Round(10*time.Millisecond), s.PID())
			return s, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		opts.Logf("ksm: attempt %d lost a port race; retrying on other ports", attempt)
	}
	if ownsDir {
		os.RemoveAll(opts.WorkDir)
	}
	return nil, lastErr
}

// launch starts one process on fresh ports and waits until it is ready;
// retry reports a lost race for a port.
func launch(ctx context.Context, bin string, o Options) (s *Server, retry bool, err error) {
	ports, err := proc.FreePorts(2)
	if err != nil {
		return nil, false, err
	}
	logPath := filepath.Join(o.WorkDir, "kube-state-metrics.log")
	logStart := proc.FileSize(logPath)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("creating log file: %w", err)
	}
	args := []string{
		"--kubeconfig=" + o.Kubeconfig,
		"--host=127.0.0.1",
		"--port=" + strconv.Itoa(ports[0]),
		"--telemetry-host=127.0.0.1",
		"--telemetry-port=" + strconv.Itoa(ports[1]),
	}
	if len(o.Resources) > 0 {
		args = append(args, "--resources="+strings.Join(o.Resources, ","))
	}
	args = append(args, o.Flags...)
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(bin, args...)
	cmd.Dir = o.WorkDir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	fmt.Fprintf(logFile, "### %s kube-state-metrics %q\n", time.Now().Format(time.RFC3339), args)
	p, err := proc.Start("kube-state-metrics", cmd, logFile)
	if err != nil {
		return nil, false, fmt.Errorf("starting %s: %w", bin, err)
	}
	s = &Server{
		url:          "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		telemetryURL: "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		logPath:      logPath,
		stopGrace:    o.StopGrace,
		logf:         o.Logf,
		proc:         p,
	}
	if err := s.waitReady(ctx); err != nil {
		stopErr := s.terminate()
		log := proc.ReadFrom(logPath, logStart)
		retry = strings.Contains(log, "address already in use")
		return nil, retry, errors.Join(fmt.Errorf("kube-state-metrics: %w\nlog (%s):\n%s", err, logPath, proc.LogTail(logPath, maxLogDump)), stopErr)
	}
	return s, false, nil
}

// waitReady polls /readyz on the telemetry port (200 once
// kube-state-metrics' own registry has metrics) and /healthz on the metrics
// port (200 once it serves).
func (s *Server) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 5 * time.Second}
	return proc.WaitReady(ctx, s.proc, 100*time.Millisecond, func(ctx context.Context) error {
		if _, err := proc.GetOK(ctx, hc, s.telemetryURL+"/readyz", 1<<10); err != nil {
			return err
		}
		_, err := proc.GetOK(ctx, hc, s.url+"/healthz", 1<<10)
		return err
	})
}

// URL is the base URL of the metrics port: URL()+"/metrics" is what a
// scraper reads.
func (s *Server) URL() string { return s.url }

// TelemetryURL is the base URL of kube-state-metrics' own metrics.
func (s *Server) TelemetryURL() string { return s.telemetryURL }

// PID is the process id.
func (s *Server) PID() int { return s.proc.PID() }

// LogPath is the process' log file.
func (s *Server) LogPath() string { return s.logPath }

// Stop terminates kube-state-metrics (SIGTERM, then SIGKILL after the
// grace period) and removes a work dir Start created. It is idempotent.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.stopErr = s.terminate()
		if s.ownsDir {
			if err := os.RemoveAll(s.workDir); err != nil {
				s.stopErr = errors.Join(s.stopErr, err)
			}
		}
	})
	return s.stopErr
}

func (s *Server) terminate() error {
	return s.proc.Terminate(s.stopGrace, func() {
		s.logf("ksm: kube-state-metrics (pid %d) still running %s after SIGTERM; sending SIGKILL", s.PID(), s.stopGrace)
	})
}
