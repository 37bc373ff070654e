// Package loki runs a real Loki 2.2.1 single-binary server for Gantry's
// integration and e2e tests, and pushes log lines into it.
//
// It sits under test/, beside the Prometheus harness (test/prom): the Loki
// collector (collectors/loki) and LogQL rules are tested against the server
// this package starts, never against a fake. The binary comes from `make
// tools` (<repo root>/bin/loki, or $GANTRY_BIN_DIR/loki; built by
// test/tools/install-loki.sh).
//
// Why 2.2.1: it is the last Loki release under Apache-2.0; from 2.3.0 on
// Loki is AGPL-3.0, which this project does not take, not even into a tools
// module. Gantry's client uses only the query API that 2.2.1 and Loki 3.x
// both serve (instant queries and series listings, POSTed as forms), so
// what passes here holds for a current Loki too.
package loki

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

const defaultReadyTimeout = 90 * time.Second

// Options configure a Loki server.
type Options struct {
	// BinDir holds the loki binary; empty means toolbin.Dir().
	BinDir string
	// WorkDir holds config, data and log; empty means a fresh temporary
	// directory that Stop removes.
	WorkDir string
	// Logf receives progress lines; nil discards them.
	Logf func(string, ...any)
	// MultiTenant turns Loki's auth on (auth_enabled: true): every request
	// then needs an X-Scope-OrgID header, and tenants see only their own
	// streams. Off, Loki ignores the header and keeps everything under the
	// tenant "fake".
	MultiTenant bool
	// ReadyTimeout bounds the wait for readiness (default 90s).
	ReadyTimeout time.Duration
	// StopGrace bounds how long Stop waits after SIGTERM before SIGKILL
	// (default 10s).
	StopGrace time.Duration
}

// Server is a running Loki child process.
type Server struct {
	url    string
	opts   Options
	client *http.Client

	srv proc.Server
}

// StartT runs Loki for the duration of a test. A missing binary fails the
// test (it never skips outside -short). Data, config and log live in a
// per-test temporary directory unless opts.WorkDir says otherwise. Cleanup
// stops the process and, if the test failed, prints Loki's log.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.BinDir, opts.WorkDir, opts.Logf = proc.TestDefaults(t, opts.BinDir, opts.WorkDir, opts.Logf, "loki")
	return proc.StartT(t, "loki", proc.DurationOr(opts.ReadyTimeout, defaultReadyTimeout),
		func(ctx context.Context) (*Server, error) { return Start(ctx, opts) },
		func(s *Server) *proc.Server { return &s.srv })
}

// Start runs <BinDir>/loki with every listener on a free 127.0.0.1 port and
// waits until it is ready (see ready). ctx bounds the start only: the
// process runs until Stop, so a long-running program must call Stop on its
// way out.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s := &Server{opts: opts, client: &http.Client{Timeout: 30 * time.Second}}
	s.srv = proc.Server{
		Name: "loki", Title: "Loki", Tag: "loki", Tool: "loki", BinDir: opts.BinDir,
		WorkDir: opts.WorkDir, LogName: "loki.log", Logf: opts.Logf,
		ReadyTimeout: proc.DurationOr(opts.ReadyTimeout, defaultReadyTimeout),
		StopGrace:    opts.StopGrace,
		Prepare:      s.prepare,
		Ready:        s.ready,
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
	config := filepath.Join(s.srv.WorkDir, "loki.yaml")
	if err := os.WriteFile(config, []byte(renderConfig(dataDir, ports[0], ports[1], s.opts.MultiTenant)), 0o644); err != nil {
		return proc.Launch{}, fmt.Errorf("writing config: %w", err)
	}
	s.url = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	return proc.Launch{Addr: s.url, Args: []string{"-config.file=" + config, "-target=all"}}, nil
}

// renderConfig is Loki 2.2.1's single-binary example configuration
// (cmd/loki/loki-local-config.yaml) kept on loopback and in dataDir: HTTP and
// gRPC on 127.0.0.1, an in-memory ring with the ingester at 127.0.0.1 (no
// memberlist, nothing gossips), boltdb-shipper index, chunks and compactor on
// the file system, and a WAL, so that lines pushed before Halt are there
// after Restart. Beside the schema's start date (below), one setting differs
// from the example: min_ready_duration 0s (by default the ingester reports
// not-ready for a minute after it is ACTIVE, a guard for rolling restarts of
// an ingester set, not a state this single process has to reach). No ruler
// storage is configured, so the single binary leaves the ruler out.
func renderConfig(dataDir string, httpPort, grpcPort int, multiTenant bool) string {
	q := func(elem string) string { return strconv.Quote(filepath.Join(dataDir, elem)) }
	// The schema starts a day before the oldest line Loki accepts
	// (reject_old_samples_max_age), not in 2020 as in the example: the
	// table manager makes (and logs) a table per day since then.
	schemaFrom := time.Now().UTC().Add(-8 * 24 * time.Hour).Format(time.DateOnly)
	return fmt.Sprintf(`auth_enabled: %t
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %d
  log_level: info
ingester:
  wal:
    enabled: true
    dir: %s
  lifecycler:
    address: 127.0.0.1
    ring:
      kvstore:
        store: inmemory
      replication_factor: 1
    final_sleep: 0s
    min_ready_duration: 0s
  chunk_idle_period: 1h
  max_chunk_age: 1h
  chunk_target_size: 1048576
  chunk_retain_period: 30s
  max_transfer_retries: 0
schema_config:
  configs:
    - from: %s
      store: boltdb-shipper
      object_store: filesystem
      schema: v11
      index:
        prefix: index_
        period: 24h
storage_config:
  boltdb_shipper:
    active_index_directory: %s
    cache_location: %s
    cache_ttl: 24h
    shared_store: filesystem
  filesystem:
    directory: %s
compactor:
  working_directory: %s
  shared_store: filesystem
limits_config:
  reject_old_samples: true
  reject_old_samples_max_age: 168h
chunk_store_config:
  max_look_back_period: 0s
table_manager:
  retention_deletes_enabled: false
  retention_period: 0s
`, multiTenant, httpPort, grpcPort, q("wal"), schemaFrom, q("boltdb-shipper-active"), q("boltdb-shipper-cache"), q("chunks"), q("compactor"))
}

// ready says whether Loki is ready and its read path answers. /ready
// answers 200 once every module runs and the ingester is ACTIVE in the
// ring, which the distributor needs to accept a push; a label listing then
// shows the querier answering (for a MultiTenant server, as a tenant of its
// own, which adds no data).
func (s *Server) ready(ctx context.Context) error {
	if _, err := proc.GetOK(ctx, s.client, s.url+"/ready", 4096); err != nil {
		return err
	}
	return s.labelsOK(ctx)
}

// labelsOK lists label names (/loki/api/v1/labels) and wants a success.
func (s *Server) labelsOK(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/loki/api/v1/labels", nil)
	if err != nil {
		return err
	}
	if s.opts.MultiTenant {
		req.Header.Set("X-Scope-OrgID", "gantry-harness-probe")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"success"`) {
		return fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, proc.FirstLine(strings.TrimSpace(string(body))))
	}
	return nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// PID is the process id of the running loki (after Halt or Stop, of the one
// that ran last), 0 before the first start.
func (s *Server) PID() int { return s.srv.PID() }

// LogPath is the file that holds Loki's stdout and stderr.
func (s *Server) LogPath() string { return s.srv.LogPath() }

// Halt stops the process as Stop does but keeps its data dir and ports, so
// that Restart can bring the same server back, as after a crash. Requests
// fail meanwhile: the port refuses connections.
func (s *Server) Halt() error { return s.srv.Halt() }

// Restart starts a halted server again with the same config (so the same
// URL) and data dir, and waits until it is ready. Lines pushed before Halt
// are queryable again: the ingester replays its WAL before it is ready.
func (s *Server) Restart(ctx context.Context) error { return s.srv.Restart(ctx) }

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// the stop grace. It removes the work dir if Start created it. Stop is safe
// to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.srv.Stop() }

// Entry is one log line.
type Entry struct {
	Time time.Time
	Line string
}

// Stream is log lines with one label set.
type Stream struct {
	Labels  map[string]string
	Entries []Entry
}

// Push sends streams through Loki's JSON push API (/loki/api/v1/push).
func (s *Server) Push(ctx context.Context, streams []Stream) error {
	return s.PushTenant(ctx, "", streams)
}

// PushTenant is Push with an X-Scope-OrgID header, for a MultiTenant
// server; an empty tenant sends none.
func (s *Server) PushTenant(ctx context.Context, tenant string, streams []Stream) error {
	type pushStream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var body struct {
		Streams []pushStream `json:"streams"`
	}
	for _, st := range streams {
		ps := pushStream{Stream: st.Labels, Values: make([][2]string, 0, len(st.Entries))}
		for _, e := range st.Entries {
			ps.Values = append(ps.Values, [2]string{strconv.FormatInt(e.Time.UnixNano(), 10), e.Line})
		}
		body.Streams = append(body.Streams, ps)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding push request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/loki/api/v1/push", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("pushing to loki: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("pushing to loki: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
