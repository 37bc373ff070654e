package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	// StartAttempts is how often Server.Start tries: it covers the window
	// in which another process can take one of the free ports between
	// FreePorts and the server's bind.
	StartAttempts = 3
	// ProbeTimeout bounds each readiness probe.
	ProbeTimeout = 2 * time.Second
	// MaxLogDump caps how much of a log a failed start or a failing test
	// prints.
	MaxLogDump = 64 << 10
)

// Server is a harness's server process from its first start to Stop: the
// harness's command line, run in a work dir with stdout and stderr in a log
// file until a readiness probe passes, started again on fresh ports when
// another process took one of them first, then halted, restarted and
// stopped through a Lifecycle. test/prom, test/loki, test/thanos,
// test/cortex, test/ksm, test/vpa, test/cadvisor and each component of
// test/cluster run on it; each says how to prepare a start (ports, config
// file, data dir, flags) and what ready means, and keeps its own API.
//
// Set the exported fields, then call Start once. A Server must not be
// copied after first use.
type Server struct {
	// Name names the process in errors: "thanos query (pid 12) at …".
	Name string
	// Title names it in progress lines and log headings: "Thanos query
	// ready at …", "Thanos query log (…)".
	Title string
	// Tag begins progress lines and a *T starter's messages: "thanos: …".
	Tag string
	// Tool is the binary's name, looked up in BinDir (empty:
	// toolbin.Dir()) by toolbin.Find.
	Tool   string
	BinDir string
	// Env is added to this process' environment for the server's.
	Env []string
	// WorkDir is the process' working directory, made if missing; empty
	// means a fresh temporary directory, which Start puts here and Stop
	// (or a Start that fails) removes.
	WorkDir string
	// LogName is the file in WorkDir that receives the process' stdout and
	// stderr: each start attempt truncates it, Restart appends to it.
	LogName string
	// Logf receives progress lines, Tag added; nil discards them.
	Logf func(string, ...any)
	// ReadyTimeout bounds each start's wait for Ready.
	ReadyTimeout time.Duration
	// StopGrace bounds the wait after SIGTERM before SIGKILL (default
	// 10s).
	StopGrace time.Duration
	// ProbeInterval is the pause between probes (default 200ms).
	ProbeInterval time.Duration
	// ProbeTimeout bounds each probe (default the package's
	// ProbeTimeout).
	ProbeTimeout time.Duration
	// Prepare readies a fresh start attempt in WorkDir (free ports, a
	// config file, an empty data dir) and returns what it runs. Restart
	// runs the last one again, so it keeps the addresses and the data.
	Prepare func() (Launch, error)
	// Ready is one readiness probe; its ctx ends after the probe timeout.
	// A server that picks its own port names its address here (SetAddr).
	Ready func(ctx context.Context) error

	bin     string
	ownsDir bool
	launch  Launch
	life    Lifecycle
}

// Launch is what one start attempt runs.
type Launch struct {
	// Addr is where the server listens, as messages name it: its URL,
	// with any other listener a reader needs.
	Addr string
	// Args follow the binary on the command line.
	Args []string
}

// makeWorkDir returns dir, made if missing, or, if dir is empty, a fresh
// temporary directory named after pattern (as os.MkdirTemp) that the
// caller owns.
func makeWorkDir(dir, pattern string) (string, bool, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", pattern)
		if err != nil {
			return "", false, fmt.Errorf("creating work dir: %w", err)
		}
		return d, true, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("creating work dir: %w", err)
	}
	return dir, false, nil
}

// DurationOr is d if it is positive, else def: an option's default.
func DurationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Start finds the binary, makes the work dir and runs the server until
// Ready passes, preparing each attempt afresh and trying again, up to
// StartAttempts times, while a failed attempt's log says "address already
// in use". ctx bounds the start only: the process runs until Stop. When
// Start fails no process is left and an owned work dir is removed; the
// error ends with the log's tail.
func (s *Server) Start(ctx context.Context) error {
	bin, err := toolbin.Find(s.BinDir, s.Tool)
	if err != nil {
		return err
	}
	s.bin = bin
	s.WorkDir, s.ownsDir, err = makeWorkDir(s.WorkDir, "gantry-"+strings.ReplaceAll(s.Name, " ", "-")+"-")
	if err != nil {
		return err
	}
	logf := s.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s.life = Lifecycle{
		Name:      s.Name,
		Title:     s.Title,
		Logf:      func(format string, args ...any) { logf(s.Tag+": "+format, args...) },
		StopGrace: DurationOr(s.StopGrace, 10*time.Second),
		WorkDir:   s.WorkDir,
		OwnsDir:   s.ownsDir,
	}
	var lastErr error
	for attempt := 1; attempt <= StartAttempts; attempt++ {
		begin := time.Now()
		retry, err := s.attempt(ctx)
		if err == nil {
			s.life.Logf("%s ready at %s in %s (pid %d, log %s)", s.Title, s.launch.Addr,
				time.Since(begin).Round(10*time.Millisecond), s.PID(), s.LogPath())
			return nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		s.life.Logf("%s attempt %d: %v; retrying on other ports", s.Title, attempt, FirstLine(err.Error()))
	}
	return RemoveOwnedDir(s.ownsDir, s.WorkDir, lastErr)
}

// attempt prepares a fresh start and runs it; retry reports a lost race for
// a port.
func (s *Server) attempt(ctx context.Context) (retry bool, err error) {
	l, err := s.Prepare()
	if err != nil {
		return false, err
	}
	s.launch = l
	return s.spawn(ctx, os.O_TRUNC)
}

// spawn starts the current command line and waits for readiness. logFlag
// is os.O_TRUNC or os.O_APPEND.
func (s *Server) spawn(ctx context.Context, logFlag int) (retry bool, err error) {
	logPath := s.LogPath()
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|logFlag, 0o644)
	if err != nil {
		return false, fmt.Errorf("opening log file: %w", err)
	}
	offset := FileSize(logPath)
	// Not CommandContext: ctx bounds the start, not the process' life.
	cmd := exec.Command(s.bin, s.launch.Args...)
	cmd.Dir = s.WorkDir
	if len(s.Env) > 0 {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	p, err := Start(s.Name, cmd, logFile)
	if err != nil {
		return false, fmt.Errorf("starting %s (%s): %w", s.Name, s.bin, err)
	}
	s.life.Set(p)
	if err := s.waitReady(ctx, p); err != nil {
		stopErr := s.life.Terminate()
		retry = strings.Contains(ReadFrom(logPath, offset), "address already in use")
		if stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return retry, fmt.Errorf("%w\n%s log (%s):\n%s", err, s.Title, logPath, s.LogTail())
	}
	return false, nil
}

// waitReady probes until Ready passes, the process exits, or the ready
// timeout passes.
func (s *Server) waitReady(ctx context.Context, p *Process) error {
	ctx, cancel := context.WithTimeout(ctx, s.ReadyTimeout)
	defer cancel()
	interval := DurationOr(s.ProbeInterval, 200*time.Millisecond)
	err := WaitReady(ctx, p, interval, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, DurationOr(s.ProbeTimeout, ProbeTimeout))
		defer cancel()
		return s.Ready(ctx)
	})
	if err != nil {
		return fmt.Errorf("%s (pid %d) at %s, waited up to %s: %w", s.Name, p.PID(), s.launch.Addr, s.ReadyTimeout, err)
	}
	return nil
}

// SetAddr replaces the address the current start's messages name: for
// Ready, once a server that was told to pick its own port has said which.
func (s *Server) SetAddr(addr string) { s.launch.Addr = addr }

// PID is the process id of the running server (after Halt or Stop, of the
// one that ran last), 0 before the first start.
func (s *Server) PID() int { return s.life.PID() }

// Process is the running server process (after Halt or Stop, the one that
// ran last), nil before the first start: where a harness watches its exit.
func (s *Server) Process() *Process { return s.life.Process() }

// LogPath is the file that holds the process' stdout and stderr.
func (s *Server) LogPath() string { return filepath.Join(s.WorkDir, s.LogName) }

// LogTail is at most MaxLogDump bytes from the end of the log.
func (s *Server) LogTail() string { return LogTail(s.LogPath(), MaxLogDump) }

// Halt ends the process as Stop does but keeps its work dir and addresses,
// so that Restart can bring the same server back, as after a crash.
func (s *Server) Halt() error { return s.life.Halt() }

// Restart starts a halted server again with the last attempt's command
// line (so the same addresses) and work dir, appending to its log, and
// waits until it is ready.
func (s *Server) Restart(ctx context.Context) error {
	return s.life.Restart(ctx, s.launch.Addr, func(ctx context.Context) error {
		_, err := s.spawn(ctx, os.O_APPEND)
		return err
	})
}

// Stop ends the process (SIGTERM, then SIGKILL after the stop grace) and
// removes the work dir if the harness owns it. It is safe to call more than
// once; later calls return the first result.
func (s *Server) Stop() error { return s.life.Stop() }

// TestDefaults fills in what a harness's *T starter takes from the test
// when its options leave it empty: the bin dir from toolbin.Require (under
// -short the test is skipped, and also when a bin dir is given), a work dir
// from t.TempDir (whose removal, registered first, runs after Stop), and
// t.Logf. tools are the binaries the test needs.
func TestDefaults(t testing.TB, binDir, workDir string, logf func(string, ...any), tools ...string) (string, string, func(string, ...any)) {
	t.Helper()
	if binDir == "" {
		binDir = toolbin.Require(t, tools...)
	} else if testing.Short() {
		t.Skipf("needs the real %s (skipped by -short; `make test` runs it)", strings.Join(tools, " and "))
	}
	if workDir == "" {
		workDir = t.TempDir()
	}
	if logf == nil {
		logf = t.Logf
	}
	return binDir, workDir, logf
}

// StartT runs a harness's *T starter: start, bounded by StartAttempts
// times readyTimeout and half a minute, returns the harness's server (h),
// whose Server is server(h). An error fails the test, its message begun
// with tag once. Cleanup stops the server, through h's own Stop method if
// it has one (where a harness adds to what a stop checks), and, if the test
// failed, prints its log.
func StartT[H any](t testing.TB, tag string, readyTimeout time.Duration, start func(context.Context) (H, error), server func(H) *Server) H {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout*StartAttempts+30*time.Second)
	defer cancel()
	h, err := start(ctx)
	if err != nil {
		t.Fatal(tagged(tag, err))
	}
	s := server(h)
	stop := s.Stop
	if hs, ok := any(h).(interface{ Stop() error }); ok {
		stop = hs.Stop
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(tagged(s.Tag, err))
		}
		if t.Failed() {
			t.Logf("%s: %s log (%s):\n%s", s.Tag, s.Title, s.LogPath(), s.LogTail())
		}
	})
	return h
}

// tagged is err's message begun with "tag: ", unless it begins so already.
func tagged(tag string, err error) string {
	if msg := err.Error(); !strings.HasPrefix(msg, tag+": ") {
		return tag + ": " + msg
	}
	return err.Error()
}

// FirstLine is s up to its first newline, cut at 300 bytes: an error or a
// response body shortened for a one-line message.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
