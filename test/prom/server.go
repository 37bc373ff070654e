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

// BinDirEnv names the environment variable that overrides where the
// prometheus binary is looked for.
const BinDirEnv = toolbin.Env

const (
	defaultScrapeInterval = 15 * time.Second
	defaultReadyTimeout   = 60 * time.Second
	defaultStopGrace      = 10 * time.Second
	defaultBatchSize      = 10000
	// startAttempts covers the small window in which another process can
	// take the free port between our probe and Prometheus' bind.
	startAttempts = 3
	// maxLogDump caps how much of the log a failing test prints.
	maxLogDump = 64 << 10
)

// Server is a running Prometheus child process.
type Server struct {
	url       string
	workDir   string
	logPath   string
	batchSize int
	logf      func(string, ...any)
	client    *http.Client

	// bin, configPath and o are the command line, for Restart.
	bin        string
	configPath string
	o          options

	// life holds the process across Halt, Restart and Stop.
	life proc.Lifecycle
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
// binary fails the test (it never skips). Data, config and log live in a
// per-test temporary directory. Cleanup stops the process and, if the test
// failed, prints Prometheus' log.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := collectOptions(opts)
	binDir := o.binDir
	if binDir == "" {
		binDir = toolbin.Require(t, "prometheus")
	} else if testing.Short() {
		t.Skip("needs the real prometheus (skipped by -short; `make test` runs it)")
	}
	// TempDir registers its removal first, so it runs after Stop below.
	workDir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), o.readyTimeout+10*time.Second)
	defer cancel()
	s, err := StartProcess(ctx, binDir, workDir, t.Logf, opts...)
	if err != nil {
		t.Fatalf("prom: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("prom: %v", err)
		}
		if t.Failed() {
			t.Logf("prom: Prometheus log (%s):\n%s", s.logPath, s.logTail(maxLogDump))
		}
	})
	return s
}

// StartProcess runs <binDir>/prometheus on a free 127.0.0.1 port and waits
// until it reports ready. Config, data and log go to workDir; an empty
// workDir means a fresh temporary directory that Stop removes. ctx bounds
// the start only: the process runs until Stop, so a long-running program
// must call Stop on its way out. logf (may be nil) receives progress lines.
func StartProcess(ctx context.Context, binDir, workDir string, logf func(string, ...any), opts ...Option) (*Server, error) {
	o := collectOptions(opts)
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bin, err := toolbin.Path(binDir, "prometheus")
	if err != nil {
		return nil, err
	}

	ownsDir := false
	if workDir == "" {
		d, err := os.MkdirTemp("", "gantry-prom-")
		if err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
		workDir, ownsDir = d, true
	} else if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}

	configPath := filepath.Join(workDir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(renderConfig(o)), 0o644); err != nil {
		return nil, proc.RemoveOwnedDir(ownsDir, workDir, fmt.Errorf("writing config: %w", err))
	}

	s := &Server{
		workDir:    workDir,
		logPath:    filepath.Join(workDir, "prometheus.log"),
		batchSize:  o.batchSize,
		logf:       logf,
		client:     &http.Client{Timeout: 30 * time.Second},
		bin:        bin,
		configPath: configPath,
		o:          o,
		life: proc.Lifecycle{
			Name:      "prometheus",
			Title:     "Prometheus",
			Logf:      func(format string, args ...any) { logf("prom: "+format, args...) },
			StopGrace: o.stopGrace,
			WorkDir:   workDir,
			OwnsDir:   ownsDir,
		},
	}

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		retry, err := s.launch(ctx, bin, configPath, o)
		if err == nil {
			logf("prom: Prometheus ready at %s (pid %d, log %s)", s.url, s.PID(), s.logPath)
			return s, nil
		}
		lastErr = err
		if !retry {
			break
		}
		logf("prom: attempt %d: %v; retrying on another port", attempt, err)
	}
	return nil, proc.RemoveOwnedDir(ownsDir, workDir, lastErr)
}

// launch starts one process on a free port with an empty data dir and waits
// for readiness. retry reports whether the failure was a lost race for the
// port.
func (s *Server) launch(ctx context.Context, bin, configPath string, o options) (retry bool, err error) {
	ports, err := proc.FreePorts(1)
	if err != nil {
		return false, err
	}
	port := ports[0]
	// A previous attempt may have left a lock file or a half-made WAL.
	if err := os.RemoveAll(filepath.Join(s.workDir, "data")); err != nil {
		return false, fmt.Errorf("clearing data dir: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.url = "http://" + addr
	return s.spawn(ctx, bin, configPath, o, addr, os.O_TRUNC)
}

// spawn starts one process listening on addr, keeping what the data dir
// holds, and waits for readiness. logFlag is os.O_TRUNC or os.O_APPEND.
func (s *Server) spawn(ctx context.Context, bin, configPath string, o options, addr string, logFlag int) (retry bool, err error) {
	dataDir := filepath.Join(s.workDir, "data")
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|logFlag, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening log file: %w", err)
	}

	args := []string{
		"--config.file=" + configPath,
		"--storage.tsdb.path=" + dataDir,
		"--web.listen-address=" + addr,
		"--web.enable-remote-write-receiver",
	}
	args = append(args, o.extraFlags...)
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.workDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	p, err := proc.Start("prometheus", cmd, logFile)
	if err != nil {
		return false, fmt.Errorf("starting %s: %w", bin, err)
	}
	s.life.Set(p)

	if err := s.waitReady(ctx, p, o.readyTimeout); err != nil {
		stopErr := s.life.Terminate()
		log := s.logTail(maxLogDump)
		retry = strings.Contains(log, "address already in use")
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return retry, fmt.Errorf("%w\nPrometheus log (%s):\n%s", err, s.logPath, log)
	}
	return false, nil
}

// waitReady polls /-/ready until it answers 200, the process exits, or the
// deadline passes.
func (s *Server) waitReady(ctx context.Context, p *proc.Process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := proc.WaitReady(ctx, p, 100*time.Millisecond, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := proc.GetOK(ctx, s.client, s.url+"/-/ready", 4096)
		return err
	})
	if err != nil {
		return fmt.Errorf("prometheus (pid %d) at %s, waited up to %s: %w", p.PID(), s.url, timeout, err)
	}
	return nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (s *Server) URL() string { return s.url }

// PID is the process id of the running prometheus (after Halt or Stop, of
// the one that ran last).
func (s *Server) PID() int { return s.life.PID() }

// Halt stops the process as Stop does (SIGTERM, then SIGKILL after the stop
// grace) but keeps its data dir, so that Restart can bring the same server
// back, as after a crash or a rescheduled pod. Requests fail meanwhile: the
// port refuses connections.
func (s *Server) Halt() error { return s.life.Halt() }

// Restart starts a halted server again on the same address, with the same
// data dir, configuration and flags, and waits until it is ready; its log
// goes on in LogPath. What was written before Halt is queryable again once
// Prometheus has replayed its WAL.
func (s *Server) Restart(ctx context.Context) error {
	addr := strings.TrimPrefix(s.url, "http://")
	return s.life.Restart(ctx, s.url, func(ctx context.Context) error {
		_, err := s.spawn(ctx, s.bin, s.configPath, s.o, addr, os.O_APPEND)
		return err
	})
}

// LogPath is the file that holds Prometheus' stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// the stop grace. It removes the work dir if StartProcess created it. Stop
// is safe to call more than once; later calls return the first result.
func (s *Server) Stop() error { return s.life.Stop() }

// logTail returns at most max bytes from the end of the log, starting at a
// line boundary.
func (s *Server) logTail(max int) string { return proc.LogTail(s.logPath, max) }

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
