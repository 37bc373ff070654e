// Package cadvisor runs a real cAdvisor (the binary test/tools/install-cadvisor.sh
// builds from github.com/google/cadvisor/lib) for Gantry's tests, and makes
// pod-like cgroups with a busy loop under a CPU quota for it to measure.
//
// It sits under test/, beside the Prometheus and cluster harnesses: it is the
// container-metrics source behind the kubelet collector's tests. cgroups
// named <parent>/<namespace>_<pod>_<container> carry the labels the kubelet's
// /metrics/cadvisor puts on a pod's container (namespace, pod, container, and
// id as for every cgroup), so URL()+"/metrics" can stand in for a kubelet's
// /metrics/cadvisor. It needs root and cgroup v1 (see Available).
package cadvisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
	"github.com/gantry-dev/gantry/test/toolbin"
)

const (
	defaultReadyTimeout = 30 * time.Second
	stopGrace           = 5 * time.Second
	maxLogDump          = 32 << 10
)

// Options says where and how to run cAdvisor. Every field may be left zero.
type Options struct {
	// BinDir holds the cadvisor binary; default $GANTRY_BIN_DIR, else
	// <repo root>/bin.
	BinDir string
	// WorkDir receives the log and the address file; empty means a fresh
	// temporary directory that Stop removes.
	WorkDir string
	// Parent is the cgroup (e.g. "/gantry-test") under which
	// <namespace>_<pod>_<container> cgroups get the kubelet's labels; empty
	// means one unique to this Server, see Server.Parent.
	Parent string
	// Logf receives progress lines; nil discards them.
	Logf func(string, ...any)
	// ReadyTimeout bounds the wait for the first answer on /metrics
	// (default 30s).
	ReadyTimeout time.Duration
}

// Server is a running cAdvisor child process.
type Server struct {
	url     string
	parent  string
	workDir string
	ownsDir bool
	logPath string
	logf    func(string, ...any)

	proc *proc.Process

	stopOnce sync.Once
	stopErr  error
}

var parentSeq atomic.Int64

// Start runs <BinDir>/cadvisor on a free 127.0.0.1 port and waits until its
// /metrics answers with container series. ctx bounds the start only: the
// process runs until Stop. The kernel kills it if the caller dies
// (Pdeathsig on Linux).
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = defaultReadyTimeout
	}
	if o.Parent == "" {
		o.Parent = fmt.Sprintf("/gantry-test-%d-%d", os.Getpid(), parentSeq.Add(1))
	}
	if !strings.HasPrefix(o.Parent, "/") || o.Parent == "/" {
		return nil, fmt.Errorf("cadvisor: parent cgroup %q must be an absolute cgroup path below /", o.Parent)
	}
	o.Parent = filepath.Clean(o.Parent)
	bin, err := toolbin.Find(o.BinDir, "cadvisor")
	if err != nil {
		return nil, fmt.Errorf("cadvisor: %w", err)
	}
	s := &Server{parent: o.Parent, workDir: o.WorkDir, logf: o.Logf}
	if s.workDir == "" {
		if s.workDir, err = os.MkdirTemp("", "gantry-cadvisor-"); err != nil {
			return nil, fmt.Errorf("cadvisor: creating work dir: %w", err)
		}
		s.ownsDir = true
	} else if err := os.MkdirAll(s.workDir, 0o755); err != nil {
		return nil, fmt.Errorf("cadvisor: creating work dir: %w", err)
	}
	s.logPath = filepath.Join(s.workDir, "cadvisor.log")
	addrFile := filepath.Join(s.workDir, "cadvisor.addr")
	_ = os.Remove(addrFile)

	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, s.cleanup(fmt.Errorf("cadvisor: creating log file: %w", err))
	}
	// Port 0 and an address file: no race for a free port.
	cmd := exec.Command(bin, "-listen=127.0.0.1:0", "-addr-file="+addrFile, "-pod-parent="+o.Parent)
	cmd.Dir = s.workDir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if s.proc, err = proc.Start("cadvisor", cmd, logFile); err != nil {
		return nil, s.cleanup(fmt.Errorf("cadvisor: starting %s: %w", bin, err))
	}

	begin := time.Now()
	if err := s.waitReady(ctx, addrFile, o.ReadyTimeout); err != nil {
		stopErr := s.terminate()
		return nil, s.cleanup(errors.Join(fmt.Errorf("cadvisor: %w\ncAdvisor log (%s):\n%s", err, s.logPath, s.LogTail(maxLogDump)), stopErr))
	}
	s.logf("cadvisor: ready at %s in %s (pid %d, pod parent %s, log %s)", s.url, time.Since(begin).Round(10*time.Millisecond), s.PID(), s.parent, s.logPath)
	return s, nil
}

// StartT runs cAdvisor for the duration of a test: defaults from Start, with
// the work dir a per-test temporary directory and progress in t.Logf. A
// missing binary fails the test (it never skips). Cleanup stops the process
// and, if the test failed, prints cAdvisor's log.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	if o.BinDir == "" {
		o.BinDir = toolbin.Require(t, "cadvisor")
	}
	if o.WorkDir == "" {
		o.WorkDir = t.TempDir()
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ready := o.ReadyTimeout
	if ready <= 0 {
		ready = defaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), ready+10*time.Second)
	defer cancel()
	s, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("cadvisor: %v", err)
		}
		if t.Failed() {
			t.Logf("cadvisor: log (%s):\n%s", s.logPath, s.LogTail(maxLogDump))
		}
	})
	return s
}

// waitReady waits for the address file, then for a /metrics answer that
// holds the root cgroup's CPU counter (the first housekeeping is done).
func (s *Server) waitReady(ctx context.Context, addrFile string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := proc.WaitReady(ctx, s.proc, 50*time.Millisecond, func(ctx context.Context) error {
		if s.url == "" {
			b, err := os.ReadFile(addrFile)
			if err != nil || len(b) == 0 {
				return fmt.Errorf("no address file yet")
			}
			s.url = "http://" + strings.TrimSpace(string(b))
		}
		return s.probe(ctx)
	})
	if err != nil {
		return fmt.Errorf("waited up to %s: %w", timeout, err)
	}
	return nil
}

func (s *Server) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := proc.GetOK(ctx, http.DefaultClient, s.url+"/metrics", 64<<20)
	if err != nil {
		return err
	}
	if !bytes.Contains(body, []byte(`container_cpu_usage_seconds_total{`)) {
		return fmt.Errorf("GET /metrics: no container_cpu_usage_seconds_total yet")
	}
	return nil
}

// URL is the base URL, e.g. http://127.0.0.1:40123; metrics are at
// URL()+"/metrics".
func (s *Server) URL() string { return s.url }

// MetricsURL is where cAdvisor serves its metrics, URL()+"/metrics": what a
// kubelet serves at /metrics/cadvisor, so the upstream for a fake node's
// kubelet proxy. Each Server labels only the pods under its own Parent, so
// one Server per fake node, with its own Parent, keeps nodes apart (the
// other nodes' pod cgroups show with an id only, like system cgroups).
func (s *Server) MetricsURL() string { return s.url + "/metrics" }

// Parent is the cgroup under which pod-like cgroups get kubelet labels; pass
// it to NewPodCgroup.
func (s *Server) Parent() string { return s.parent }

// PID is the process id of cAdvisor.
func (s *Server) PID() int { return s.proc.PID() }

// LogPath is the file holding cAdvisor's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Stop ends the process (SIGTERM, then SIGKILL after 5s) and removes the
// work dir if Start created it. Later calls return the first result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		err := s.terminate()
		if err == nil {
			s.logf("cadvisor: stopped (pid %d)", s.PID())
		}
		s.stopErr = s.cleanup(err)
	})
	return s.stopErr
}

func (s *Server) terminate() error { return s.proc.Terminate(stopGrace, nil) }

func (s *Server) cleanup(err error) error {
	if !s.ownsDir {
		return err
	}
	if rmErr := os.RemoveAll(s.workDir); rmErr != nil {
		return errors.Join(err, fmt.Errorf("cadvisor: removing work dir: %w", rmErr))
	}
	return err
}

// LogTail returns at most max bytes from the end of cAdvisor's log.
func (s *Server) LogTail(max int) string { return proc.LogTail(s.logPath, max) }
