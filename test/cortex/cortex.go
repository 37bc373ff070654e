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
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/internal/promapi"
	"github.com/gantry-dev/gantry/test/prom"
)

// TenantHeader is the header that names a request's tenant.
const TenantHeader = "X-Scope-OrgID"

const defaultReadyTimeout = 90 * time.Second

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
	url    string
	opts   Options
	client *http.Client

	srv proc.Server
}

// StartT runs Cortex for the duration of a test. A missing binary fails the
// test (it never skips outside -short). Data, config and log live in a
// per-test temporary directory unless opts.WorkDir says otherwise. Cleanup
// stops the process and, if the test failed, prints Cortex' log.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.BinDir, opts.WorkDir, opts.Logf = proc.TestDefaults(t, opts.BinDir, opts.WorkDir, opts.Logf, "cortex")
	return proc.StartT(t, "cortex", proc.DurationOr(opts.ReadyTimeout, defaultReadyTimeout),
		func(ctx context.Context) (*Server, error) { return Start(ctx, opts) },
		func(s *Server) *proc.Server { return &s.srv })
}

// Start runs <BinDir>/cortex -target=all with its HTTP and gRPC listeners
// on free 127.0.0.1 ports and waits until /ready answers 200 (the ingester
// has joined the ring). ctx bounds the start only: the process runs until
// Stop, so a long-running program must call Stop on its way out.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s := &Server{opts: opts, client: &http.Client{Timeout: 30 * time.Second}}
	s.srv = proc.Server{
		Name: "cortex", Title: "Cortex", Tag: "cortex", Tool: "cortex", BinDir: opts.BinDir,
		WorkDir: opts.WorkDir, LogName: "cortex.log", Logf: opts.Logf,
		ReadyTimeout: proc.DurationOr(opts.ReadyTimeout, defaultReadyTimeout),
		StopGrace:    opts.StopGrace,
		Prepare:      s.prepare,
		Ready: func(ctx context.Context) error {
			_, err := proc.GetOK(ctx, s.client, s.url+"/ready", 4096)
			return err
		},
	}
	if err := s.srv.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare writes a config with fresh ports and an empty data dir for a
// start attempt.
func (s *Server) prepare() (proc.Launch, error) {
	ports, err := proc.FreePorts(2)
	if err != nil {
		return proc.Launch{}, err
	}
	dataDir := filepath.Join(s.srv.WorkDir, "data")
	if err := os.RemoveAll(dataDir); err != nil {
		return proc.Launch{}, fmt.Errorf("clearing data dir: %w", err)
	}
	// The ruler and the Alertmanager read their (empty) local stores at
	// start and fail if the directories are missing; the ruler logs an
	// error every sync without its rule_path.
	for _, d := range []string{"rules", "alerts", "ruler"} {
		if err := os.MkdirAll(filepath.Join(dataDir, d), 0o755); err != nil {
			return proc.Launch{}, fmt.Errorf("creating %s dir: %w", d, err)
		}
	}
	config := filepath.Join(s.srv.WorkDir, "cortex.yaml")
	if err := os.WriteFile(config, []byte(renderConfig(dataDir, ports[0], ports[1])), 0o644); err != nil {
		return proc.Launch{}, fmt.Errorf("writing config: %w", err)
	}
	s.url = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	args := append([]string{"-config.file=" + config, "-target=all"}, s.opts.Flags...)
	return proc.Launch{Addr: s.url, Args: args}, nil
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

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// PrometheusURL is the root of Cortex' Prometheus query API: what a
// Prometheus client takes as its address (/api/v1/query lives below it).
func (s *Server) PrometheusURL() string { return s.url + "/prometheus" }

// RemoteWriteURL is Cortex' remote-write endpoint.
func (s *Server) RemoteWriteURL() string { return s.url + "/api/v1/push" }

// PID is the process id of the running cortex (after Halt or Stop, of the
// one that ran last).
func (s *Server) PID() int { return s.srv.PID() }

// LogPath is the file that holds Cortex' stdout and stderr.
func (s *Server) LogPath() string { return s.srv.LogPath() }

// Halt stops the process as Stop does but keeps its data dir and ports, so
// that Restart can bring the same server back, as after a crash. Requests
// fail meanwhile: the port refuses connections.
func (s *Server) Halt() error { return s.srv.Halt() }

// Restart starts a halted server again with the same config (so the same
// URL) and data dir, and waits until it is ready. Series written before
// Halt are queryable again once the ingester has replayed its WAL.
func (s *Server) Restart(ctx context.Context) error { return s.srv.Restart(ctx) }

// Stop ends the process (SIGTERM, then SIGKILL if it has not exited within
// the stop grace) and removes the work dir if Start created it. It is safe
// to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.srv.Stop() }

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
