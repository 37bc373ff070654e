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
	"errors"
	"fmt"
	"io"
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
	defaultReadyTimeout = 90 * time.Second
	defaultStopGrace    = 10 * time.Second
	// startAttempts covers the window in which another process can take
	// one of the free ports between our probe and Loki's bind.
	startAttempts = 3
	// maxLogDump caps how much of the log a failing test prints.
	maxLogDump = 64 << 10
)

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
	url     string
	opts    Options
	bin     string
	config  string
	workDir string
	logPath string
	client  *http.Client

	// life holds the process across Halt, Restart and Stop.
	life proc.Lifecycle
}

// StartT runs Loki for the duration of a test. A missing binary fails the
// test (it never skips). Data, config and log live in a per-test temporary
// directory unless opts.WorkDir says otherwise. Cleanup stops the process
// and, if the test failed, prints Loki's log.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.BinDir == "" {
		opts.BinDir = toolbin.Require(t, "loki")
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
		t.Fatalf("loki: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("loki: %v", err)
		}
		if t.Failed() {
			t.Logf("loki: Loki log (%s):\n%s", s.logPath, s.logTail(maxLogDump))
		}
	})
	return s
}

// Start runs <BinDir>/loki with every listener on a free 127.0.0.1 port and
// waits until it is ready (see waitReady). ctx bounds the start only: the process
// runs until Stop, so a long-running program must call Stop on its way out.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bin, err := toolbin.Find(opts.BinDir, "loki")
	if err != nil {
		return nil, err
	}
	ownsDir := false
	if opts.WorkDir == "" {
		d, err := os.MkdirTemp("", "gantry-loki-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		opts.WorkDir, ownsDir = d, true
	} else if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	grace := opts.StopGrace
	if grace <= 0 {
		grace = defaultStopGrace
	}
	logf := opts.Logf
	s := &Server{
		opts:    opts,
		bin:     bin,
		config:  filepath.Join(opts.WorkDir, "loki.yaml"),
		workDir: opts.WorkDir,
		logPath: filepath.Join(opts.WorkDir, "loki.log"),
		client:  &http.Client{Timeout: 30 * time.Second},
		life: proc.Lifecycle{
			Name:      "loki",
			Title:     "Loki",
			Logf:      func(format string, args ...any) { logf("loki: "+format, args...) },
			StopGrace: grace,
			WorkDir:   opts.WorkDir,
			OwnsDir:   ownsDir,
		},
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		begin := time.Now()
		retry, err := s.launch(ctx)
		if err == nil {
			opts.Logf("loki: Loki ready at %s in %s (pid %d, log %s)", s.url, time.Since(begin).Round(10*time.Millisecond), s.PID(), s.logPath)
			return s, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		opts.Logf("loki: attempt %d: %v; retrying on other ports", attempt, firstLine(err.Error()))
	}
	return nil, proc.RemoveOwnedDir(ownsDir, opts.WorkDir, lastErr)
}

// launch writes a config with fresh ports and an empty data dir, starts
// Loki and waits for it. retry reports a lost race for a port.
func (s *Server) launch(ctx context.Context) (retry bool, err error) {
	ports, err := proc.FreePorts(2)
	if err != nil {
		return false, err
	}
	dataDir := filepath.Join(s.workDir, "data")
	if err := os.RemoveAll(dataDir); err != nil {
		return false, fmt.Errorf("clearing data dir: %w", err)
	}
	if err := os.WriteFile(s.config, []byte(renderConfig(dataDir, ports[0], ports[1], s.opts.MultiTenant)), 0o644); err != nil {
		return false, fmt.Errorf("writing config: %w", err)
	}
	s.url = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	return s.spawn(ctx, os.O_TRUNC)
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

// spawn starts one process with the current config and data dir and waits
// for readiness. logFlag is os.O_TRUNC or os.O_APPEND.
func (s *Server) spawn(ctx context.Context, logFlag int) (retry bool, err error) {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|logFlag, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening log file: %w", err)
	}
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(s.bin, "-config.file="+s.config, "-target=all")
	cmd.Dir = s.workDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	p, err := proc.Start("loki", cmd, logFile)
	if err != nil {
		return false, fmt.Errorf("starting %s: %w", s.bin, err)
	}
	s.life.Set(p)

	if err := s.waitReady(ctx, p); err != nil {
		stopErr := s.life.Terminate()
		log := s.logTail(maxLogDump)
		retry = strings.Contains(log, "address already in use")
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return retry, fmt.Errorf("%w\nLoki log (%s):\n%s", err, s.logPath, log)
	}
	return false, nil
}

// waitReady polls until Loki says it is ready and its read path answers, the
// process exits, or the ready timeout passes. /ready answers 200 once every
// module runs and the ingester is ACTIVE in the ring, which the distributor
// needs to accept a push; a label listing then shows the querier answering
// (for a MultiTenant server, as a tenant of its own, which adds no data).
func (s *Server) waitReady(ctx context.Context, p *proc.Process) error {
	timeout := readyTimeout(s.opts)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := proc.WaitReady(ctx, p, 200*time.Millisecond, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := proc.GetOK(ctx, s.client, s.url+"/ready", 4096); err != nil {
			return err
		}
		return s.labelsOK(ctx)
	})
	if err != nil {
		return fmt.Errorf("loki (pid %d) at %s, waited up to %s: %w", p.PID(), s.url, timeout, err)
	}
	return nil
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
		return fmt.Errorf("GET %s: %s: %s", req.URL.Path, resp.Status, firstLine(strings.TrimSpace(string(body))))
	}
	return nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// PID is the process id of the running loki (after Halt or Stop, of the one
// that ran last), 0 before the first start.
func (s *Server) PID() int { return s.life.PID() }

// LogPath is the file that holds Loki's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Halt stops the process as Stop does but keeps its data dir and ports, so
// that Restart can bring the same server back, as after a crash. Requests
// fail meanwhile: the port refuses connections.
func (s *Server) Halt() error { return s.life.Halt() }

// Restart starts a halted server again with the same config (so the same
// URL) and data dir, and waits until it is ready. Lines pushed before Halt
// are queryable again: the ingester replays its WAL before it is ready.
func (s *Server) Restart(ctx context.Context) error {
	return s.life.Restart(ctx, s.url, func(ctx context.Context) error {
		_, err := s.spawn(ctx, os.O_APPEND)
		return err
	})
}

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// the stop grace. It removes the work dir if Start created it. Stop is safe
// to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.life.Stop() }

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

// logTail returns at most max bytes from the end of the log, starting at a
// line boundary.
func (s *Server) logTail(max int) string { return proc.LogTail(s.logPath, max) }

func readyTimeout(o Options) time.Duration {
	if o.ReadyTimeout > 0 {
		return o.ReadyTimeout
	}
	return defaultReadyTimeout
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
