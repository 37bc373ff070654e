// Package thanos runs real Thanos components for Gantry's integration and
// e2e tests: a sidecar beside a test/prom Prometheus, a querier over any
// StoreAPI endpoints (deduplicating on a replica label, optionally
// enforcing tenancy), a receiver taking remote write per tenant, and Pair,
// two Prometheus replicas with their sidecars behind one querier, either
// replica killable.
//
// It sits under test/, beside test/prom and test/loki: Gantry's Thanos
// backends are tested against the processes this package starts, never
// against a Prometheus pretending to be Thanos. The binary comes from `make
// tools` (<repo root>/bin/thanos, or $GANTRY_BIN_DIR/thanos; built by
// test/tools/install-thanos.sh).
package thanos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	// TenantHeader is the HTTP header Thanos receive and query read the
	// tenant from, unless configured otherwise.
	TenantHeader = "THANOS-TENANT"
	// TenantLabel is the label receive stores each tenant's series under
	// and an enforcing querier matches on, unless configured otherwise.
	TenantLabel = "tenant_id"
	// DefaultTenant is the tenant receive and query assume for a request
	// without the tenant header, unless configured otherwise.
	DefaultTenant = "default-tenant"

	defaultReadyTimeout = 60 * time.Second
	defaultStopGrace    = 10 * time.Second
	// startAttempts covers the window in which another process can take
	// one of the free ports between our probe and Thanos' bind.
	startAttempts = 3
	// maxLogDump caps how much of a log a failing test prints.
	maxLogDump = 64 << 10
)

// Options say how to run a component, whichever it is.
type Options struct {
	// BinDir holds the thanos binary; empty means toolbin.Dir().
	BinDir string
	// WorkDir holds the component's log (and the receiver's data); empty
	// means a fresh temporary directory that Stop removes (the *T
	// starters use the test's temporary directory).
	WorkDir string
	// Logf receives progress lines; nil discards them (the *T starters
	// use t.Logf).
	Logf func(string, ...any)
	// ReadyTimeout bounds the wait for readiness (default 60s).
	ReadyTimeout time.Duration
	// StopGrace bounds how long Stop waits after SIGTERM before SIGKILL
	// (default 10s).
	StopGrace time.Duration
	// Flags are appended to the command line, e.g.
	// "--query.lookback-delta=1m".
	Flags []string
}

// Server is one running Thanos component (sidecar, query or receive).
type Server struct {
	kind     string // "sidecar", "query", "receive"
	opts     Options
	bin      string
	workDir  string
	logPath  string
	client   *http.Client
	url      string // HTTP: /-/ready, metrics, and the query API of a querier
	grpcAddr string // StoreAPI
	// args is the command line of the current ports, for Restart; build
	// makes it from a fresh set of ports on each start attempt.
	args  []string
	build func(workDir string, ports []int) []string
	// nPorts is how many ports build takes: HTTP and gRPC first.
	nPorts int
	// clearDir, if set, is emptied before each start attempt (a receiver's
	// TSDB), never before a Restart.
	clearDir string
	// ready, if set, is waited for after /-/ready answers 200: a querier's
	// endpoints.
	ready func(ctx context.Context) error
	// extra ports beyond HTTP and gRPC, as the last attempt bound them.
	ports []int

	life proc.Lifecycle
}

// component is what a starter tells start about its kind.
type component struct {
	kind string
	// nPorts is how many free ports build takes: HTTP and gRPC first.
	nPorts int
	// build makes the command line (after the binary) for a start.
	build func(workDir string, ports []int) []string
	// dataDir, if set, is a directory under the work dir that each fresh
	// start empties (never a Restart).
	dataDir string
	// ready, if set, is what else readiness waits for once /-/ready
	// answers 200.
	ready func(s *Server) func(ctx context.Context) error
}

// start runs one component until it is ready, retrying on other ports when
// a bind race was lost.
func start(ctx context.Context, c component, opts Options) (*Server, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bin, err := toolbin.Find(opts.BinDir, "thanos")
	if err != nil {
		return nil, err
	}
	ownsDir := false
	if opts.WorkDir == "" {
		d, err := os.MkdirTemp("", "gantry-thanos-"+c.kind+"-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		opts.WorkDir, ownsDir = d, true
	} else if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	title := "Thanos " + c.kind
	s := &Server{
		kind:    c.kind,
		opts:    opts,
		bin:     bin,
		workDir: opts.WorkDir,
		logPath: filepath.Join(opts.WorkDir, c.kind+".log"),
		client:  &http.Client{Timeout: 30 * time.Second},
		build:   c.build,
		nPorts:  c.nPorts,
		life: proc.Lifecycle{
			Name:      "thanos " + c.kind,
			Title:     title,
			Logf:      func(format string, args ...any) { opts.Logf("thanos: "+format, args...) },
			StopGrace: stopGrace(opts),
			WorkDir:   opts.WorkDir,
			OwnsDir:   ownsDir,
		},
	}
	if c.dataDir != "" {
		s.clearDir = filepath.Join(opts.WorkDir, c.dataDir)
	}
	if c.ready != nil {
		s.ready = c.ready(s)
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		begin := time.Now()
		retry, err := s.launch(ctx)
		if err == nil {
			opts.Logf("thanos: %s ready at %s, gRPC %s, in %s (pid %d, log %s)", title, s.url, s.grpcAddr,
				time.Since(begin).Round(10*time.Millisecond), s.PID(), s.logPath)
			return s, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		opts.Logf("thanos: %s attempt %d: %v; retrying on other ports", title, attempt, firstLine(err.Error()))
	}
	return nil, proc.RemoveOwnedDir(ownsDir, opts.WorkDir, lastErr)
}

// launch picks fresh ports, builds the command line and starts it.
func (s *Server) launch(ctx context.Context) (retry bool, err error) {
	ports, err := proc.FreePorts(s.nPorts)
	if err != nil {
		return false, err
	}
	if s.clearDir != "" {
		if err := os.RemoveAll(s.clearDir); err != nil {
			return false, fmt.Errorf("clearing %s: %w", s.clearDir, err)
		}
	}
	s.url = "http://" + loopback(ports[0])
	s.grpcAddr = loopback(ports[1])
	s.ports = ports
	s.args = append(s.build(s.workDir, ports), s.opts.Flags...)
	return s.spawn(ctx, os.O_TRUNC)
}

// spawn starts the current command line and waits for readiness. logFlag
// is os.O_TRUNC or os.O_APPEND.
func (s *Server) spawn(ctx context.Context, logFlag int) (retry bool, err error) {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|logFlag, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening log file: %w", err)
	}
	offset := proc.FileSize(s.logPath)
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.workDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	p, err := proc.Start("thanos "+s.kind, cmd, logFile)
	if err != nil {
		return false, fmt.Errorf("starting %s %s: %w", s.bin, s.kind, err)
	}
	s.life.Set(p)
	if err := s.waitReady(ctx, p); err != nil {
		stopErr := s.life.Terminate()
		retry = strings.Contains(proc.ReadFrom(s.logPath, offset), "address already in use")
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return retry, fmt.Errorf("%w\nThanos %s log (%s):\n%s", err, s.kind, s.logPath, s.logTail(maxLogDump))
	}
	return false, nil
}

// waitReady polls /-/ready, then the component's own condition, until both
// pass, the process exits, or the ready timeout passes.
func (s *Server) waitReady(ctx context.Context, p *proc.Process) error {
	timeout := readyTimeout(s.opts)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := proc.WaitReady(ctx, p, 200*time.Millisecond, func(ctx context.Context) error {
		probeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := proc.GetOK(probeCtx, s.client, s.url+"/-/ready", 4096); err != nil {
			return err
		}
		if s.ready != nil {
			return s.ready(probeCtx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("thanos %s (pid %d) at %s, waited up to %s: %w", s.kind, p.PID(), s.url, timeout, err)
	}
	return nil
}

// URL is the component's HTTP base URL, e.g. http://127.0.0.1:40123; a
// querier serves the Prometheus query API below it (/api/v1/query).
func (s *Server) URL() string { return s.url }

// GRPCAddr is the host:port of the component's gRPC StoreAPI, what a
// querier's endpoint list names.
func (s *Server) GRPCAddr() string { return s.grpcAddr }

// PID is the process id of the running component (after Halt or Stop, of
// the one that ran last).
func (s *Server) PID() int { return s.life.PID() }

// LogPath is the file that holds the component's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Halt ends the process (SIGTERM, then SIGKILL after the stop grace) but
// keeps its ports and data, so that Restart can bring it back, as after a
// crash. Its ports refuse connections meanwhile.
func (s *Server) Halt() error { return s.life.Halt() }

// Restart starts a halted component again with the same command line (so
// the same addresses) and waits until it is ready; its log goes on in
// LogPath.
func (s *Server) Restart(ctx context.Context) error {
	return s.life.Restart(ctx, s.url, func(ctx context.Context) error {
		_, err := s.spawn(ctx, os.O_APPEND)
		return err
	})
}

// Stop ends the process (SIGTERM, then SIGKILL if it has not exited within
// the stop grace) and removes the work dir if the starter created it. It is
// safe to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.life.Stop() }

// logTail returns at most max bytes from the end of the log.
func (s *Server) logTail(max int) string { return proc.LogTail(s.logPath, max) }

// cleanupT stops s when the test ends and prints its log if the test
// failed.
func (s *Server) cleanupT(t testing.TB) {
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("thanos: %v", err)
		}
		if t.Failed() {
			t.Logf("thanos: Thanos %s log (%s):\n%s", s.kind, s.logPath, s.logTail(maxLogDump))
		}
	})
}

// optionsT fills in what the *T starters default from the test.
func optionsT(t testing.TB, opts Options) Options {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = toolbin.Require(t, "thanos")
	} else if testing.Short() {
		t.Skip("needs the real thanos (skipped by -short; `make test` runs it)")
	}
	if opts.WorkDir == "" {
		// TempDir registers its removal first, so it runs after Stop.
		opts.WorkDir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	return opts
}

// startT bounds a *T starter's start.
func startT(t testing.TB, c component, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout(opts)*startAttempts+30*time.Second)
	defer cancel()
	s, err := start(ctx, c, opts)
	if err != nil {
		t.Fatalf("thanos: %v", err)
	}
	s.cleanupT(t)
	return s
}

// commonFlags are the listeners and shutdown graces every component takes:
// everything on loopback, and a quick exit on SIGTERM (the default grace
// periods are two minutes each).
func commonFlags(httpPort, grpcPort int) []string {
	return []string{
		"--http-address=" + loopback(httpPort),
		"--grpc-address=" + loopback(grpcPort),
		"--http-grace-period=1s",
		"--grpc-grace-period=1s",
		"--log.level=info",
	}
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func readyTimeout(o Options) time.Duration {
	if o.ReadyTimeout > 0 {
		return o.ReadyTimeout
	}
	return defaultReadyTimeout
}

func stopGrace(o Options) time.Duration {
	if o.StopGrace > 0 {
		return o.StopGrace
	}
	return defaultStopGrace
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
