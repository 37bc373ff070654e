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
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

const (
	defaultReadyTimeout = 30 * time.Second
	stopGrace           = 5 * time.Second
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
	url      string
	parent   string
	addrFile string

	srv proc.Server
}

var parentSeq atomic.Int64

// Start runs <BinDir>/cadvisor on a 127.0.0.1 port of its choosing, which
// it writes to an address file (so no race for a free port), and waits
// until its /metrics answers with container series. ctx bounds the start
// only: the process runs until Stop. The kernel kills it if the caller dies
// (Pdeathsig on Linux).
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Parent == "" {
		o.Parent = fmt.Sprintf("/gantry-test-%d-%d", os.Getpid(), parentSeq.Add(1))
	}
	if !strings.HasPrefix(o.Parent, "/") || o.Parent == "/" {
		return nil, fmt.Errorf("cadvisor: parent cgroup %q must be an absolute cgroup path below /", o.Parent)
	}
	s := &Server{parent: filepath.Clean(o.Parent)}
	s.srv = proc.Server{
		Name: "cadvisor", Title: "cAdvisor", Tag: "cadvisor", Tool: "cadvisor", BinDir: o.BinDir,
		WorkDir: o.WorkDir, LogName: "cadvisor.log", Logf: o.Logf,
		ReadyTimeout:  proc.DurationOr(o.ReadyTimeout, defaultReadyTimeout),
		StopGrace:     stopGrace,
		ProbeInterval: 50 * time.Millisecond,
		// /metrics lists every cgroup on the machine.
		ProbeTimeout: 5 * time.Second,
		Prepare:      s.prepare,
		Ready:        s.ready,
	}
	if err := s.srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("cadvisor: %w", err)
	}
	return s, nil
}

// StartT runs cAdvisor for the duration of a test: defaults from Start, with
// the work dir a per-test temporary directory and progress in t.Logf. A
// missing binary fails the test (it never skips outside -short). Cleanup
// stops the process and, if the test failed, prints cAdvisor's log.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	o.BinDir, o.WorkDir, o.Logf = proc.TestDefaults(t, o.BinDir, o.WorkDir, o.Logf, "cadvisor")
	return proc.StartT(t, "cadvisor", proc.DurationOr(o.ReadyTimeout, defaultReadyTimeout),
		func(ctx context.Context) (*Server, error) { return Start(ctx, o) },
		func(s *Server) *proc.Server { return &s.srv })
}

// prepare clears the address file cAdvisor writes once it listens.
func (s *Server) prepare() (proc.Launch, error) {
	s.url = ""
	s.addrFile = filepath.Join(s.srv.WorkDir, "cadvisor.addr")
	if err := os.Remove(s.addrFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return proc.Launch{}, fmt.Errorf("removing the address file: %w", err)
	}
	return proc.Launch{
		Addr: "the address in " + s.addrFile + " (pod parent " + s.parent + ")",
		Args: []string{"-listen=127.0.0.1:0", "-addr-file=" + s.addrFile, "-pod-parent=" + s.parent},
	}, nil
}

// ready reads the address file, then wants a /metrics answer that holds the
// root cgroup's CPU counter (the first housekeeping is done).
func (s *Server) ready(ctx context.Context) error {
	if s.url == "" {
		b, err := os.ReadFile(s.addrFile)
		if err != nil || len(b) == 0 {
			return fmt.Errorf("no address file yet")
		}
		s.url = "http://" + strings.TrimSpace(string(b))
		s.srv.SetAddr(s.url + " (pod parent " + s.parent + ")")
	}
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
func (s *Server) PID() int { return s.srv.PID() }

// LogPath is the file holding cAdvisor's stdout and stderr.
func (s *Server) LogPath() string { return s.srv.LogPath() }

// Stop ends the process (SIGTERM, then SIGKILL after 5s) and removes the
// work dir if Start created it. Later calls return the first result.
func (s *Server) Stop() error { return s.srv.Stop() }

// LogTail returns at most max bytes from the end of cAdvisor's log.
func (s *Server) LogTail(max int) string { return proc.LogTail(s.LogPath(), max) }
