// Package prom runs a real Prometheus 3.x server for Gantry's integration
// tests and for `make demo`, and feeds it data through remote write.
//
// It sits under test/, beside the cluster harness: the Prometheus collector
// (collectors/prometheus) and the adapter's discovery are tested against the
// server this package starts, never against a fake. The binary comes from
// `make tools` (<repo root>/bin/prometheus, or $GANTRY_BIN_DIR/prometheus).
package prom

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

// BinDirEnv names the environment variable that overrides where the
// prometheus binary is looked for.
const BinDirEnv = toolbin.Env

const (
	defaultScrapeInterval = 15 * time.Second
	defaultReadyTimeout   = 60 * time.Second
	defaultStopGrace      = 10 * time.Second
	defaultBatchSize      = 10000
)

// Server is a running Prometheus child process.
type Server struct {
	url       string
	batchSize int
	client    *http.Client

	srv proc.Server
}

// options collects what an Option may change.
type options struct {
	binDir         string
	scrapeInterval time.Duration
	extraConfig    string
	extraFlags     []string
	readyTimeout   time.Duration
	stopGrace      time.Duration
	batchSize      int
	externalLabels map[string]string
}

// Option changes how Start and StartProcess run Prometheus.
type Option func(*options)

// WithBinDir overrides the directory holding the prometheus binary
// (for Start; StartProcess takes it as an argument).
func WithBinDir(dir string) Option { return func(o *options) { o.binDir = dir } }

// WithScrapeInterval sets global.scrape_interval (and evaluation_interval);
// the default is 15s.
func WithScrapeInterval(d time.Duration) Option {
	return func(o *options) { o.scrapeInterval = d }
}

// WithConfig appends top-level YAML to the generated configuration, for
// example a scrape_configs or rule_files section. It must not contain a
// global section; use WithScrapeInterval for that.
func WithConfig(yaml string) Option { return func(o *options) { o.extraConfig = yaml } }

// WithFlags passes extra command-line flags to prometheus, for example
// "--query.lookback-delta=1m".
func WithFlags(flags ...string) Option {
	return func(o *options) { o.extraFlags = append(o.extraFlags, flags...) }
}

// WithReadyTimeout bounds the wait for /-/ready (default 60s).
func WithReadyTimeout(d time.Duration) Option { return func(o *options) { o.readyTimeout = d } }

// WithStopGrace bounds how long Stop waits after SIGTERM before SIGKILL
// (default 10s).
func WithStopGrace(d time.Duration) Option { return func(o *options) { o.stopGrace = d } }

// WithBatchSize sets how many samples Write sends per remote-write request
// (default 10000).
func WithBatchSize(n int) Option { return func(o *options) { o.batchSize = n } }

// Start runs Prometheus for the duration of a test. The binary is
// $GANTRY_BIN_DIR/prometheus, else <repo root>/bin/prometheus; a missing
// binary fails the test (it never skips outside -short). Data, config and
// log live in a per-test temporary directory. Cleanup stops the process
// and, if the test failed, prints Prometheus' log.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := collectOptions(opts)
	binDir, workDir, logf := proc.TestDefaults(t, o.binDir, "", nil, "prometheus")
	return proc.StartT(t, "prom", o.readyTimeout,
		func(ctx context.Context) (*Server, error) { return StartProcess(ctx, binDir, workDir, logf, opts...) },
		func(s *Server) *proc.Server { return &s.srv })
}

// StartProcess runs <binDir>/prometheus (an empty binDir means
// toolbin.Dir()) on a free 127.0.0.1 port and waits until it reports ready. Config, data and log go to workDir; an empty
// workDir means a fresh temporary directory that Stop removes. ctx bounds
// the start only: the process runs until Stop, so a long-running program
// must call Stop on its way out. logf (may be nil) receives progress lines.
func StartProcess(ctx context.Context, binDir, workDir string, logf func(string, ...any), opts ...Option) (*Server, error) {
	o := collectOptions(opts)
	s := &Server{batchSize: o.batchSize, client: &http.Client{Timeout: 30 * time.Second}}
	s.srv = proc.Server{
		Name: "prometheus", Title: "Prometheus", Tag: "prom", Tool: "prometheus", BinDir: binDir,
		WorkDir: workDir, LogName: "prometheus.log", Logf: logf,
		ReadyTimeout:  o.readyTimeout,
		StopGrace:     o.stopGrace,
		ProbeInterval: 100 * time.Millisecond,
		Prepare:       func() (proc.Launch, error) { return s.prepare(o) },
		Ready: func(ctx context.Context) error {
			_, err := proc.GetOK(ctx, s.client, s.url+"/-/ready", 4096)
			return err
		},
	}
	if err := s.srv.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare writes the config, picks a free port and empties the data dir
// for a start attempt.
func (s *Server) prepare(o options) (proc.Launch, error) {
	configPath := filepath.Join(s.srv.WorkDir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(renderConfig(o)), 0o644); err != nil {
		return proc.Launch{}, fmt.Errorf("writing config: %w", err)
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return proc.Launch{}, err
	}
	// A previous attempt may have left a lock file or a half-made WAL.
	if err := os.RemoveAll(s.DataDir()); err != nil {
		return proc.Launch{}, fmt.Errorf("clearing data dir: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.url = "http://" + addr
	args := []string{
		"--config.file=" + configPath,
		"--storage.tsdb.path=" + s.DataDir(),
		"--web.listen-address=" + addr,
		"--web.enable-remote-write-receiver",
	}
	return proc.Launch{Addr: s.url, Args: append(args, o.extraFlags...)}, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// PID is the process id of the running prometheus (after Halt or Stop, of
// the one that ran last).
func (s *Server) PID() int { return s.srv.PID() }

// Halt stops the process as Stop does (SIGTERM, then SIGKILL after the stop
// grace) but keeps its data dir, so that Restart can bring the same server
// back, as after a crash or a rescheduled pod. Requests fail meanwhile: the
// port refuses connections.
func (s *Server) Halt() error { return s.srv.Halt() }

// Restart starts a halted server again on the same address, with the same
// data dir, configuration and flags, and waits until it is ready; its log
// goes on in LogPath. What was written before Halt is queryable again once
// Prometheus has replayed its WAL.
func (s *Server) Restart(ctx context.Context) error { return s.srv.Restart(ctx) }

// LogPath is the file that holds Prometheus' stdout and stderr.
func (s *Server) LogPath() string { return s.srv.LogPath() }

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// the stop grace. It removes the work dir if StartProcess created it. Stop
// is safe to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.srv.Stop() }

func renderConfig(o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n",
		promDuration(o.scrapeInterval), promDuration(o.scrapeInterval))
	renderExternalLabels(&b, o.externalLabels)
	if o.extraConfig != "" {
		b.WriteString(o.extraConfig)
		if !strings.HasSuffix(o.extraConfig, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// promDuration renders d in Prometheus' duration syntax (no fractional
// units): whole seconds, else milliseconds.
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func collectOptions(opts []Option) options {
	o := options{
		scrapeInterval: defaultScrapeInterval,
		readyTimeout:   defaultReadyTimeout,
		stopGrace:      defaultStopGrace,
		batchSize:      defaultBatchSize,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.scrapeInterval < time.Millisecond {
		o.scrapeInterval = defaultScrapeInterval
	}
	if o.readyTimeout <= 0 {
		o.readyTimeout = defaultReadyTimeout
	}
	if o.stopGrace <= 0 {
		o.stopGrace = defaultStopGrace
	}
	if o.batchSize <= 0 {
		o.batchSize = defaultBatchSize
	}
	return o
}

// BinDir returns where the tool binaries live: $GANTRY_BIN_DIR if set, else
// <repo root>/bin (see toolbin.Dir).
func BinDir() (string, error) { return toolbin.Dir() }
