package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Lifecycle is what a harness's server process goes through after its first
// start: Halt (ended as after a crash, its data dir and address kept),
// Restart (the harness's command line again, on the same address) and Stop
// (once; the work dir goes too if the harness created it). Its user (a
// Server) records each process it starts with Set and keeps the command
// line, readiness probe and start-up retries; Lifecycle holds the process,
// the grace before SIGKILL and the wording of the progress lines.
//
// The zero value is not usable: set Name, Title and Logf. A Lifecycle must
// not be copied after first use.
type Lifecycle struct {
	// Name begins errors: "loki (pid 12) is still running; Halt it first".
	Name string
	// Title begins progress lines: "Loki (pid 12) halted".
	Title string
	// Logf receives the progress lines; the harness adds its prefix.
	Logf func(string, ...any)
	// StopGrace bounds the wait after SIGTERM before SIGKILL.
	StopGrace time.Duration
	// WorkDir is removed by Stop if OwnsDir says the harness created it.
	WorkDir string
	OwnsDir bool

	mu       sync.Mutex // guards proc across Halt and Restart
	proc     *Process
	stopOnce sync.Once
	stopErr  error
}

// Set records p as the server's current process, the one Halt, Stop and
// Terminate end.
func (l *Lifecycle) Set(p *Process) {
	l.mu.Lock()
	l.proc = p
	l.mu.Unlock()
}

// Process is the current process, nil before the first start.
func (l *Lifecycle) Process() *Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proc
}

// PID is the current process' id, 0 before the first start. After Halt or
// Stop it is the id the ended process had.
func (l *Lifecycle) PID() int {
	if p := l.Process(); p != nil {
		return p.PID()
	}
	return 0
}

// Terminate ends the current process (see Process.Terminate) with the stop
// grace, logging before it sends SIGKILL. It returns nil if there is no
// process or it has exited already; a harness calls it when a start fails.
func (l *Lifecycle) Terminate() error {
	p := l.Process()
	if p == nil {
		return nil
	}
	return p.Terminate(l.StopGrace, func() {
		l.Logf("%s (pid %d) still running %s after SIGTERM; sending SIGKILL", l.Title, p.PID(), l.StopGrace)
	})
}

// Halt ends the process as Stop does but keeps its data dir and address, so
// that Restart can bring the same server back, as after a crash. Requests
// fail meanwhile: the port refuses connections.
func (l *Lifecycle) Halt() error {
	err := l.Terminate()
	if err == nil {
		l.Logf("%s (pid %d) halted", l.Title, l.PID())
	}
	return err
}

// Restart runs spawn, which starts the server again at addr with the
// harness's command line and waits until it is ready, after checking that
// the current process has exited (Halt first).
func (l *Lifecycle) Restart(ctx context.Context, addr string, spawn func(context.Context) error) error {
	if p := l.Process(); p != nil {
		select {
		case <-p.Exited():
		default:
			return fmt.Errorf("%s (pid %d) is still running; Halt it first", l.Name, p.PID())
		}
	}
	begin := time.Now()
	if err := spawn(ctx); err != nil {
		return fmt.Errorf("restarting %s at %s: %w", l.Name, addr, err)
	}
	l.Logf("%s restarted at %s (pid %d) and ready in %s", l.Title, addr, l.PID(), time.Since(begin).Round(10*time.Millisecond))
	return nil
}

// Stop ends the process (SIGTERM, then SIGKILL if it has not exited within
// the stop grace) and removes the work dir if the harness created it. It is
// safe to call more than once; later calls return the first result.
func (l *Lifecycle) Stop() error {
	l.stopOnce.Do(func() {
		err := l.Terminate()
		if err == nil && l.Process() != nil {
			l.Logf("%s (pid %d) stopped", l.Title, l.PID())
		}
		l.stopErr = RemoveOwnedDir(l.OwnsDir, l.WorkDir, err)
	})
	return l.stopErr
}

// RemoveOwnedDir removes dir if owns says the harness created it, and
// returns err joined with any failure to do so: the last step of a Stop, or
// of a start that failed.
func RemoveOwnedDir(owns bool, dir string, err error) error {
	if !owns {
		return err
	}
	if rmErr := os.RemoveAll(dir); rmErr != nil {
		return errors.Join(err, fmt.Errorf("removing work dir: %w", rmErr))
	}
	return err
}
