// Package cortex runs a real Cortex for Gantry's integration and e2e tests:
// one process with every module (-target=all), blocks storage on the local
// file system, and multi-tenancy on (auth_enabled: true), so that every
// request names its tenant in X-Scope-OrgID and a request without one is
// refused with 401. Series go in through remote write per tenant.
//
// It sits under test/, beside test/prom and test/thanos: Gantry's tenant
// routing is tested against the Cortex this package starts, never against
// a Prometheus pretending to be one. The binary comes from `make tools`
// (<repo root>/bin/cortex, or $GANTRY_BIN_DIR/cortex; built by
// test/tools/install-cortex.sh).
package cortex

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
	"github.com/gantry-dev/gantry/test/internal/promapi"
	"github.com/gantry-dev/gantry/test/prom"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// TenantHeader is the header that names a request's tenant.
const TenantHeader = "X-Scope-OrgID"

const (
	defaultReadyTimeout = 90 * time.Second
	defaultStopGrace    = 10 * time.Second
	// startAttempts covers the window in which another process can take
	// one of the free ports between our probe and Cortex' bind.
	startAttempts = 3
	// maxLogDump caps how much of the log a failing test prints.
	maxLogDump = 64 << 10
)

// Options configure a Cortex server.
type Options struct {
	// BinDir holds the cortex binary; empty means toolbin.Dir().
	BinDir string
	// WorkDir holds config, data and log; empty means a fresh temporary
	// directory that Stop removes (StartT uses the test's).
	WorkDir string
	// Logf receives progress lines; nil discards them (StartT uses
	// t.Logf).
	Logf func(string, ...any)
	// ReadyTimeout bounds the wait for /ready (default 90s).
	ReadyTimeout time.Duration
	// StopGrace bounds how long Stop waits after SIGTERM before SIGKILL
	// (default 10s).
	StopGrace time.Duration
	// Flags are appended to the command line; a flag overrides the
	// config file, e.g. "-querier.max-concurrent=4".
	Flags []string
}

// Server is a running Cortex child process.
type Server struct {
	url     string
	opts    Options
	bin     string
	config  string
	workDir string
	logPath string
	client  *http.Client

	life proc.Lifecycle
}

// StartT runs Cortex for the duration of a test. A missing binary fails the
// test (it never skips outside -short). Data, config and log live in a
// per-test temporary directory unless opts.WorkDir says otherwise. Cleanup
// stops the process and, if the test failed, prints Cortex' log.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = toolbin.Require(t, "cortex")
	} else if testing.Short() {
		t.Skip("needs the real cortex (skipped by -short; `make test` runs it)")
	}
	if opts.WorkDir == "" {
		// TempDir registers its removal first, so it runs after Stop.
		opts.WorkDir = t.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout(opts)*startAttempts+30*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("cortex: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("cortex: %v", err)
		}
		if t.Failed() {
			t.Logf("cortex: Cortex log (%s):\n%s", s.logPath, s.logTail(maxLogDump))
		}
	})
	return s
}

// Start runs <BinDir>/cortex -target=all with its HTTP and gRPC listeners
// on free 127.0.0.1 ports and waits until /ready answers 200 (the ingester
// has joined the ring). ctx bounds the start only: the process runs until
// Stop, so a long-running program must call Stop on its way out.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bin, err := toolbin.Find(opts.BinDir, "cortex")
	if err != nil {
		return nil, err
	}
	ownsDir := false
	if opts.WorkDir == "" {
		d, err := os.MkdirTemp("", "gantry-cortex-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		opts.WorkDir, ownsDir = d, true
	} else if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	s := &Server{
		opts:    opts,
		bin:     bin,
		config:  filepath.Join(opts.WorkDir, "cortex.yaml"),
		workDir: opts.WorkDir,
		logPath: filepath.Join(opts.WorkDir, "cortex.log"),
		client:  &http.Client{Timeout: 30 * time.Second},
		life: proc.Lifecycle{
			Name:      "cortex",
			Title:     "Cortex",
			Logf:      func(format string, args ...any) { opts.Logf("cortex: "+format, args...) },
			StopGrace: stopGrace(opts),
			WorkDir:   opts.WorkDir,
			OwnsDir:   ownsDir,
		},
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		begin := time.Now()
		retry, err := s.launch(ctx)
		if err == nil {
			opts.Logf("cortex: Cortex ready at %s in %s (pid %d, log %s)", s.url, time.Since(begin).Round(10*time.Millisecond), s.PID(), s.logPath)
			return s, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		opts.Logf("cortex: attempt %d: %v; retrying on other ports", attempt, firstLine(err.Error()))
	}
	return nil, proc.RemoveOwnedDir(ownsDir, opts.WorkDir, lastErr)
}

// launch writes a config with fresh ports and an empty data dir, starts
// Cortex and waits for it. retry reports a lost race for a port.
func (s *Server) launch(ctx context.Context) (retry bool, err error) {
	ports, err := proc.FreePorts(2)
	if err != nil {
		return false, err
	}
	dataDir := filepath.Join(s.workDir, "data")
	if err := os.RemoveAll(dataDir); err != nil {
		return false, fmt.Errorf("clearing data dir: %w", err)
	}
	// The ruler and the Alertmanager read their (empty) local stores at
	// start and fail if the directories are missing; the ruler logs an
	// error every sync without its rule_path.
	for _, d := range []string{"rules", "alerts", "ruler"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o755); err != nil {
			return false, fmt.Errorf("creating %s dir: %w", d, err)
		}
	}
	if err := os.WriteFile(s.config, []byte(renderConfig(dataDir, ports[0], ports[1])), 0o644); err != nil {
		return false, fmt.Errorf("writing config: %w", err)
	}
	s.url = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	return s.spawn(ctx, os.O_TRUNC)
}

// renderConfig is Cortex' single-process blocks example
// (docs/configuration/single-process-config-blocks-local.yaml) with
// multi-tenancy on, every listener and ring address on loopback, every
// directory under dataDir and the Alertmanager's cluster listener off.
func renderConfig(dataDir string, httpPort, grpcPort int) string {
	dir := func(name string) string { return strconv.Quote(filepath.Join(dataDir, name)) }
	return fmt.Sprintf(`auth_enabled: true
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %d
  grpc_server_max_recv_msg_size: 104857600
  grpc_server_max_send_msg_size: 104857600
  grpc_server_max_concurrent_streams: 1000
  log_level: info
distributor:
  shard_by_all_labels: true
  pool:
    health_check_ingesters: true
ingester_client:
  grpc_client_config:
    max_recv_msg_size: 104857600
    max_send_msg_size: 104857600
    grpc_compression: gzip
ingester:
  lifecycler:
    # Without it the ingester registers the address of eth0 or en0, and
    # every push fails with a quorum error.
    address: 127.0.0.1
    min_ready_duration: 0s
    final_sleep: 0s
    num_tokens: 512
    ring:
      kvstore:
        store: inmemory
      replication_factor: 1
querier:
  active_query_tracker_dir: %s
blocks_storage:
  backend: filesystem
  tsdb:
    dir: %s
  bucket_store:
    sync_dir: %s
  filesystem:
    dir: %s
compactor:
  data_dir: %s
  sharding_ring:
    kvstore:
      store: inmemory
frontend_worker:
  match_max_concurrent: true
ruler:
  enable_api: true
  rule_path: %s
ruler_storage:
  backend: local
  local:
    directory: %s
alertmanager:
  external_url: http://localhost/alertmanager
  data_dir: %s
  cluster:
    listen_address: ""
alertmanager_storage:
  backend: local
  local:
    path: %s
`, httpPort, grpcPort, dir("active-query-tracker"), dir("tsdb"), dir("tsdb-sync"), dir("blocks"),
		dir("compactor"), dir("ruler"), dir("rules"), dir("alertmanager"), dir("alerts"))
}

// spawn starts one process with the current config and data dir and waits
// for readiness. logFlag is os.O_TRUNC or os.O_APPEND.
func (s *Server) spawn(ctx context.Context, logFlag int) (retry bool, err error) {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|logFlag, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening log file: %w", err)
	}
	offset := proc.FileSize(s.logPath)
	args := append([]string{"-config.file=" + s.config, "-target=all"}, s.opts.Flags...)
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.workDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	p, err := proc.Start("cortex", cmd, logFile)
	if err != nil {
		return false, fmt.Errorf("starting %s: %w", s.bin, err)
	}
	s.life.Set(p)
	if err := s.waitReady(ctx, p); err != nil {
		stopErr := s.life.Terminate()
		retry = strings.Contains(proc.ReadFrom(s.logPath, offset), "address already in use")
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return retry, fmt.Errorf("%w\nCortex log (%s):\n%s", err, s.logPath, s.logTail(maxLogDump))
	}
	return false, nil
}

// waitReady polls /ready until it answers 200, the process exits, or the
// ready timeout passes.
func (s *Server) waitReady(ctx context.Context, p *proc.Process) error {
	timeout := readyTimeout(s.opts)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := proc.WaitReady(ctx, p, 200*time.Millisecond, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := proc.GetOK(ctx, s.client, s.url+"/ready", 4096)
		return err
	})
	if err != nil {
		return fmt.Errorf("cortex (pid %d) at %s, waited up to %s: %w", p.PID(), s.url, timeout, err)
	}
	return nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// PrometheusURL is the root of Cortex' Prometheus query API: what a
// Prometheus client takes as its address (/api/v1/query lives below it).
func (s *Server) PrometheusURL() string { return s.url + "/prometheus" }

// RemoteWriteURL is Cortex' remote-write endpoint.
func (s *Server) RemoteWriteURL() string { return s.url + "/api/v1/push" }

// PID is the process id of the running cortex (after Halt or Stop, of the
// one that ran last).
func (s *Server) PID() int { return s.life.PID() }

// LogPath is the file that holds Cortex' stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Halt stops the process as Stop does but keeps its data dir and ports, so
// that Restart can bring the same server back, as after a crash. Requests
// fail meanwhile: the port refuses connections.
func (s *Server) Halt() error { return s.life.Halt() }

// Restart starts a halted server again with the same config (so the same
// URL) and data dir, and waits until it is ready. Series written before
// Halt are queryable again once the ingester has replayed its WAL.
func (s *Server) Restart(ctx context.Context) error {
	return s.life.Restart(ctx, s.url, func(ctx context.Context) error {
		_, err := s.spawn(ctx, os.O_APPEND)
		return err
	})
}

// Stop ends the process (SIGTERM, then SIGKILL if it has not exited within
// the stop grace) and removes the work dir if Start created it. It is safe
// to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.life.Stop() }

// Writer is a remote writer to Cortex for tenant; an empty tenant sends no
// X-Scope-OrgID, which Cortex refuses with 401.
func (s *Server) Writer(tenant string) prom.Writer {
	w := prom.Writer{URL: s.RemoteWriteURL(), Client: s.client}
	if tenant != "" {
		w.Header = http.Header{TenantHeader: {tenant}}
	}
	return w
}

// Write sends samples to Cortex as tenant's (see Writer and
// prom.Server.Write: each series in time order, stopping at the first
// rejected request).
func (s *Server) Write(ctx context.Context, tenant string, samples []prom.Sample) error {
	return s.Writer(tenant).Write(ctx, samples)
}

// Query runs an instant query as tenant at time at (zero: now); an empty
// tenant sends no X-Scope-OrgID, which Cortex refuses with 401 (a
// *promapi.StatusError).
func (s *Server) Query(ctx context.Context, tenant, query string, at time.Time) (promapi.Result, error) {
	r := promapi.Request{Base: s.PrometheusURL(), Query: query, Time: at}
	if tenant != "" {
		r.Header = http.Header{TenantHeader: {tenant}}
	}
	return promapi.Instant(ctx, s.client, r)
}

// Series runs /api/v1/series as tenant for the selectors match between
// start and end (zero: Cortex' defaults); an empty tenant sends no
// X-Scope-OrgID, which Cortex refuses with 401.
func (s *Server) Series(ctx context.Context, tenant string, match []string, start, end time.Time) ([]map[string]string, error) {
	r := promapi.SeriesRequest{Base: s.PrometheusURL(), Match: match, Start: start, End: end}
	if tenant != "" {
		r.Header = http.Header{TenantHeader: {tenant}}
	}
	return promapi.Series(ctx, s.client, r)
}

// logTail returns at most max bytes from the end of the log.
func (s *Server) logTail(max int) string { return proc.LogTail(s.logPath, max) }

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
