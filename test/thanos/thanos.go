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
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
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
	c        component
	opts     Options
	client   *http.Client
	url      string // HTTP: /-/ready, metrics, and the query API of a querier
	grpcAddr string // StoreAPI
	// ports are HTTP, gRPC and any others, as the last start attempt
	// bound them.
	ports []int

	srv proc.Server
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
	ready func(ctx context.Context, s *Server) error
}

// start runs one component until it is ready, retrying on other ports when
// a bind race was lost.
func start(ctx context.Context, c component, opts Options) (*Server, error) {
	s := &Server{c: c, opts: opts, client: &http.Client{Timeout: 30 * time.Second}}
	s.srv = proc.Server{
		Name: "thanos " + c.kind, Title: "Thanos " + c.kind, Tag: "thanos", Tool: "thanos", BinDir: opts.BinDir,
		WorkDir: opts.WorkDir, LogName: c.kind + ".log", Logf: opts.Logf,
		ReadyTimeout: readyTimeout(opts),
		StopGrace:    opts.StopGrace,
		Prepare:      s.prepare,
		Ready:        s.probe,
	}
	if err := s.srv.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare picks fresh ports, empties the data dir and builds the command
// line for a start attempt.
func (s *Server) prepare() (proc.Launch, error) {
	ports, err := proc.FreePorts(s.c.nPorts)
	if err != nil {
		return proc.Launch{}, err
	}
	if s.c.dataDir != "" {
		dir := filepath.Join(s.srv.WorkDir, s.c.dataDir)
		if err := os.RemoveAll(dir); err != nil {
			return proc.Launch{}, fmt.Errorf("clearing %s: %w", dir, err)
		}
	}
	s.url = "http://" + loopback(ports[0])
	s.grpcAddr = loopback(ports[1])
	s.ports = ports
	return proc.Launch{
		Addr: s.url + ", gRPC " + s.grpcAddr,
		Args: append(s.c.build(s.srv.WorkDir, ports), s.opts.Flags...),
	}, nil
}

// probe wants /-/ready to answer 200 and then the component's own
// condition to hold.
func (s *Server) probe(ctx context.Context) error {
	if _, err := proc.GetOK(ctx, s.client, s.url+"/-/ready", 4096); err != nil {
		return err
	}
	if s.c.ready != nil {
		return s.c.ready(ctx, s)
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
func (s *Server) PID() int { return s.srv.PID() }

// LogPath is the file that holds the component's stdout and stderr.
func (s *Server) LogPath() string { return s.srv.LogPath() }

// Halt ends the process (SIGTERM, then SIGKILL after the stop grace) but
// keeps its ports and data, so that Restart can bring it back, as after a
// crash. Its ports refuse connections meanwhile.
func (s *Server) Halt() error { return s.srv.Halt() }

// Restart starts a halted component again with the same command line (so
// the same addresses) and waits until it is ready; its log goes on in
// LogPath.
func (s *Server) Restart(ctx context.Context) error { return s.srv.Restart(ctx) }

// Stop ends the process (SIGTERM, then SIGKILL if it has not exited within
// the stop grace) and removes the work dir if the starter created it. It is
// safe to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.srv.Stop() }

// optionsT fills in what the *T starters default from the test.
func optionsT(t testing.TB, opts Options) Options {
	t.Helper()
	opts.BinDir, opts.WorkDir, opts.Logf = proc.TestDefaults(t, opts.BinDir, opts.WorkDir, opts.Logf, "thanos")
	return opts
}

// startT runs a *T starter's start (see proc.StartT).
func startT(t testing.TB, c component, opts Options) *Server {
	t.Helper()
	return proc.StartT(t, "thanos", readyTimeout(opts),
		func(ctx context.Context) (*Server, error) { return start(ctx, c, opts) },
		func(s *Server) *proc.Server { return &s.srv })
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
	return proc.DurationOr(o.ReadyTimeout, defaultReadyTimeout)
}
