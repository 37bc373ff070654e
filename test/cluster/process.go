package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

// process is one running component and its exit.
type process struct {
	*proc.Process
	name    string
	logPath string
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
	fmt.Fprintf(logFile, "### %s %s %q\n", time.Now().Format(time.RFC3339), filepath.Base(bin), args)
	p, err := proc.Start(name, cmd, logFile)
	if err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", name, bin, err)
	}
	return &process{Process: p, name: name, logPath: logPath}, nil
}

func (p *process) pid() int { return p.PID() }

// exitErr reports, without blocking, why the process has exited, or nil if
// it is still running.
func (p *process) exitErr() error {
	select {
	case <-p.Exited():
		return fmt.Errorf("%s (pid %d) exited: %v", p.name, p.pid(), p.Err())
	default:
		return nil
	}
}

// terminate sends SIGTERM, then SIGKILL after grace, and waits for the exit.
// It returns an error only if the process had to be killed or would not die.
func (p *process) terminate(grace time.Duration, logf func(string, ...any)) error {
	return p.Terminate(grace, func() {
		logf("cluster: %s (pid %d) still running %s after SIGTERM; sending SIGKILL", p.name, p.pid(), grace)
	})
}
