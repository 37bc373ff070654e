// Package proc is the child-process plumbing the real-component harnesses
// under test/ (cluster, loki, ksm, vpa, cadvisor, prom, stack's
// Alertmanager) share: free loopback ports, a started process whose exit is
// watched, polling a readiness probe until it passes or the process exits
// (WaitReady, GetOK), termination with a grace period before SIGKILL, a
// server's halt, restart and stop (Lifecycle), and the tail of a log file
// for a failing test. Server puts these together for a harness's server
// process (test/prom, test/loki, test/thanos, test/cortex, test/ksm,
// test/vpa, test/cadvisor, test/cluster's components): start attempts
// retried after a lost port race, readiness, the log file, Halt, Restart
// and Stop, and the *T starter (StartT) with its cleanup and log dump.
//
// It holds no knowledge of any component: each harness still builds its own
// command line and config, picks its ports and says what ready means.
package proc

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"
)

// KillWait bounds the wait after SIGKILL; the kernel reaps quickly, so
// running past it means something is badly wrong and Terminate gives up.
const KillWait = 5 * time.Second

// FreePorts asks the kernel for n distinct free loopback ports, holding them
// all until every one is found. They are released before the caller's
// process binds them, so a harness retries a start whose log says "address
// already in use".
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// LogTail returns at most max bytes from the end of the file at path,
// starting at a line boundary and marked when earlier lines were cut. A file
// that cannot be read yields a line saying why, for a test log.
func LogTail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		b = append([]byte("[... earlier lines cut ...]\n"), b...)
	}
	return string(b)
}

// Process is a started child process and its exit.
type Process struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once Wait has returned
	waitErr error         // valid after exited is closed
}

// Start starts cmd with SysProcAttr (so the kernel kills it if the caller
// dies, on Linux) and watches for its exit; log, if not nil, is closed once
// the process has exited (the file cmd writes its output to). name, such as
// "loki", begins Terminate's errors. On error log is closed too.
func Start(name string, cmd *exec.Cmd, log io.Closer) (*Process, error) {
	cmd.SysProcAttr = SysProcAttr()
	if err := cmd.Start(); err != nil {
		if log != nil {
			log.Close()
		}
		return nil, err
	}
	p := &Process{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		if log != nil {
			log.Close()
		}
		close(p.exited)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and Err is valid.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what Wait returned; call it only after Exited is closed.
func (p *Process) Err() error { return p.waitErr }

// KilledError is Terminate's error when the process outlived its grace
// period after SIGTERM and SIGKILL ended it.
type KilledError struct {
	Name  string
	PID   int
	Grace time.Duration
}

func (e *KilledError) Error() string {
	return fmt.Sprintf("%s (pid %d) ignored SIGTERM for %s and was killed", e.Name, e.PID, e.Grace)
}

// Terminate ends the process and waits for it: Sigterm, then, if it is
// still running after grace, onKill (may be nil; a harness logs there) and
// SIGKILL. It returns nil if the process had exited already or exits within
// grace, a *KilledError if SIGKILL ended it, and an error if it is still
// there KillWait after SIGKILL.
func (p *Process) Terminate(grace time.Duration, onKill func()) error {
	select {
	case <-p.exited:
		return nil // already gone (crashed or failed to start)
	default:
	}
	// An error here means the process exited in between; Wait tells.
	_ = p.cmd.Process.Signal(Sigterm)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	if onKill != nil {
		onKill()
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return &KilledError{Name: p.name, PID: p.PID(), Grace: grace}
	case <-time.After(KillWait):
		return fmt.Errorf("%s (pid %d) did not exit %s after SIGKILL", p.name, p.PID(), KillWait)
	}
}
