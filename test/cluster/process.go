package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// killWait bounds the wait after SIGKILL; the kernel reaps quickly, so
// running past it means something is badly wrong and Stop gives up.
const killWait = 5 * time.Second

// process is one running component and its exit.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once Wait has returned
	waitErr error         // valid after exited is closed
}

// startProcess runs bin with args, stdout and stderr appended to logPath
// (appended, so the log of a retried start keeps the failed attempt).
func startProcess(name, bin, dir, logPath string, env []string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: creating log file: %w", name, err)
	}
	// Not CommandContext: the start context bounds the start, not the
	// process' life, which ends with Stop.
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	fmt.Fprintf(logFile, "### %s %s %q\n", time.Now().Format(time.RFC3339), filepath.Base(bin), args)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: starting %s: %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exitErr reports, without blocking, why the process has exited, or nil if
// it is still running.
func (p *process) exitErr() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s (pid %d) exited: %v", p.name, p.pid(), p.waitErr)
	default:
		return nil
	}
}

// terminate sends SIGTERM, then SIGKILL after grace, and waits for the exit.
// It returns an error only if the process had to be killed or would not die.
func (p *process) terminate(grace time.Duration, logf func(string, ...any)) error {
	select {
	case <-p.exited:
		return nil // already gone (crashed, or failed to start)
	default:
	}
	// An error here means the process exited in between; Wait tells.
	_ = p.cmd.Process.Signal(sigterm)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	logf("cluster: %s (pid %d) still running %s after SIGTERM; sending SIGKILL", p.name, p.pid(), grace)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.name, p.pid(), grace)
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) did not exit %s after SIGKILL", p.name, p.pid(), killWait)
	}
}
