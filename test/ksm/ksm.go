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
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

const defaultReadyTimeout = time.Minute

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
	// ReadyTimeout bounds each start attempt's wait for /readyz (default
	// 1m).
	ReadyTimeout time.Duration
	// StopGrace bounds the wait after SIGTERM before SIGKILL (default 10s).
	StopGrace time.Duration
}

// Server is a running kube-state-metrics.
type Server struct {
	url          string
	telemetryURL string
	opts         Options
	client       *http.Client

	srv proc.Server
}

// StartT starts kube-state-metrics for the duration of a test against the
// cluster whose kubeconfig is at kubeconfig. A missing binary fails the test
// with a hint to run `make tools`; with -short the test is skipped. Cleanup
// stops the process and prints its log if the test failed.
func StartT(t testing.TB, kubeconfig string, opts ...func(*Options)) *Server {
	t.Helper()
	o := Options{Kubeconfig: kubeconfig}
	for _, f := range opts {
		f(&o)
	}
	o.BinDir, o.WorkDir, o.Logf = proc.TestDefaults(t, o.BinDir, o.WorkDir, o.Logf, "kube-state-metrics")
	return proc.StartT(t, "ksm", proc.DurationOr(o.ReadyTimeout, defaultReadyTimeout),
		func(ctx context.Context) (*Server, error) { return Start(ctx, o) },
		func(s *Server) *proc.Server { return &s.srv })
}

// Start runs kube-state-metrics with its metrics and telemetry listeners on
// free 127.0.0.1 ports and returns once it is ready (see ready). ctx bounds
// the start only; the process runs until Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Kubeconfig == "" {
		return nil, errors.New("a kubeconfig is required")
	}
	s := &Server{opts: opts, client: &http.Client{Timeout: 5 * time.Second}}
	s.srv = proc.Server{
		Name: "kube-state-metrics", Title: "kube-state-metrics", Tag: "ksm",
		Tool: "kube-state-metrics", BinDir: opts.BinDir,
		WorkDir: opts.WorkDir, LogName: "kube-state-metrics.log", Logf: opts.Logf,
		ReadyTimeout:  proc.DurationOr(opts.ReadyTimeout, defaultReadyTimeout),
		StopGrace:     opts.StopGrace,
		ProbeInterval: 100 * time.Millisecond,
		Prepare:       s.prepare,
		Ready:         s.ready,
	}
	if err := s.srv.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare picks fresh ports for a start attempt.
func (s *Server) prepare() (proc.Launch, error) {
	ports, err := proc.FreePorts(2)
	if err != nil {
		return proc.Launch{}, err
	}
	s.url = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	s.telemetryURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	args := []string{
		"--kubeconfig=" + s.opts.Kubeconfig,
		"--host=127.0.0.1",
		"--port=" + strconv.Itoa(ports[0]),
		"--telemetry-host=127.0.0.1",
		"--telemetry-port=" + strconv.Itoa(ports[1]),
	}
	if len(s.opts.Resources) > 0 {
		args = append(args, "--resources="+strings.Join(s.opts.Resources, ","))
	}
	args = append(args, s.opts.Flags...)
	return proc.Launch{Addr: s.url + ", telemetry " + s.telemetryURL, Args: args}, nil
}

// ready is /readyz on the telemetry port (200 once kube-state-metrics' own
// registry has metrics) and /healthz on the metrics port (200 once it
// serves).
func (s *Server) ready(ctx context.Context) error {
	if _, err := proc.GetOK(ctx, s.client, s.telemetryURL+"/readyz", 1<<10); err != nil {
		return err
	}
	_, err := proc.GetOK(ctx, s.client, s.url+"/healthz", 1<<10)
	return err
}

// URL is the base URL of the metrics port: URL()+"/metrics" is what a
// scraper reads.
func (s *Server) URL() string { return s.url }

// TelemetryURL is the base URL of kube-state-metrics' own metrics.
func (s *Server) TelemetryURL() string { return s.telemetryURL }

// PID is the process id.
func (s *Server) PID() int { return s.srv.PID() }

// LogPath is the process' log file.
func (s *Server) LogPath() string { return s.srv.LogPath() }

// Stop terminates kube-state-metrics (SIGTERM, then SIGKILL after the
// grace period) and removes a work dir Start created. It is idempotent.
func (s *Server) Stop() error { return s.srv.Stop() }
