package stack

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Replica is one Gantry process of the stack. Every replica has the same
// command line but its port: the same serving certificate, credentials,
// config file and Prometheus.
type Replica struct {
	// URL is the replica's own address, https://127.0.0.1:<port>.
	URL string
	// Log is the path of the replica's log.
	Log string

	bin  string
	args []string
	logf func(string, ...any)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs the replica's command line, logging to Log opened with flag
// (os.O_TRUNC or os.O_APPEND). It refuses while the process runs.
func (r *Replica) start(flag int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exited != nil {
		select {
		case <-r.exited:
		default:
			return fmt.Errorf("stack: gantry (pid %d) is still running; stop it first", r.cmd.Process.Pid)
		}
	}
	logFile, err := os.OpenFile(r.Log, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, r.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("stack: starting gantry: %w", err)
	}
	exited := make(chan struct{})
	r.cmd, r.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	r.logf("stack: gantry started at %s (pid %d, log %s)", r.URL, cmd.Process.Pid, r.Log)
	return nil
}

// PID is the pid of the replica's process, 0 if it was never started.
func (r *Replica) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Exited is closed when the current process has exited; nil before the
// first start.
func (r *Replica) Exited() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exited
}

// Stop ends the process as a rollout does: SIGTERM, then SIGKILL after
// 10s.
func (r *Replica) Stop() error {
	return r.signal(syscall.SIGTERM, 10*time.Second)
}

// Kill ends the process at once with SIGKILL, as a node failure or the OOM
// killer does: in-flight requests get no answer.
func (r *Replica) Kill() error {
	return r.signal(syscall.SIGKILL, 5*time.Second)
}

func (r *Replica) signal(sig syscall.Signal, grace time.Duration) error {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
	}
	if sig == syscall.SIGKILL {
		return fmt.Errorf("stack: gantry (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stack: gantry (pid %d) ignored SIGTERM for %s and did not exit after SIGKILL", cmd.Process.Pid, grace)
	}
}
