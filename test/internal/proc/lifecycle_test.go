package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLifecycle walks a server (sleep, here) through what the harnesses do
// with it: Restart refused while it runs, Halt, Restart with a new process,
// a failed restart wrapped with the name and address, and Stop, which is
// idempotent and removes only a work dir the harness owns.
func TestLifecycle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs sleep and SIGTERM")
	}
	for _, owns := range []bool{true, false} {
		t.Run(fmt.Sprintf("owns dir %t", owns), func(t *testing.T) {
			dir := t.TempDir()
			var mu sync.Mutex
			var lines []string
			l := &Lifecycle{
				Name: "sleeper", Title: "Sleeper", StopGrace: 5 * time.Second, WorkDir: dir, OwnsDir: owns,
				Logf: func(format string, args ...any) {
					mu.Lock()
					defer mu.Unlock()
					lines = append(lines, fmt.Sprintf(format, args...))
				},
			}
			spawn := func(context.Context) error {
				p, err := Start("sleeper", exec.Command("sleep", "30"), nil)
				if err != nil {
					return err
				}
				l.Set(p)
				return nil
			}
			if err := spawn(context.Background()); err != nil {
				t.Fatal(err)
			}
			first := l.Process()
			ctx := context.Background()

			err := l.Restart(ctx, "addr:1", spawn)
			if want := fmt.Sprintf("sleeper (pid %d) is still running; Halt it first", first.PID()); err == nil || err.Error() != want {
				t.Errorf("Restart while running = %v, want %q", err, want)
			}
			if err := l.Halt(); err != nil {
				t.Fatalf("Halt: %v", err)
			}
			select {
			case <-first.Exited():
			default:
				t.Fatal("process still running after Halt")
			}
			if l.PID() != first.PID() {
				t.Errorf("PID after Halt = %d, want the halted one's, %d", l.PID(), first.PID())
			}
			if err := l.Restart(ctx, "addr:1", spawn); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			second := l.Process()
			if second == first {
				t.Fatal("Restart kept the halted process")
			}
			if err := l.Halt(); err != nil {
				t.Fatalf("second Halt: %v", err)
			}
			failed := errors.New("no luck")
			err = l.Restart(ctx, "addr:1", func(context.Context) error { return failed })
			if !errors.Is(err, failed) || !strings.HasPrefix(err.Error(), "restarting sleeper at addr:1: ") {
				t.Errorf("failed Restart = %v, want it wrapped with the name and address", err)
			}
			if err := l.Restart(ctx, "addr:1", spawn); err != nil {
				t.Fatalf("third Restart: %v", err)
			}
			third := l.Process()

			if err := l.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			select {
			case <-third.Exited():
			default:
				t.Fatal("process still running after Stop")
			}
			if err := l.Stop(); err != nil {
				t.Errorf("second Stop: %v", err)
			}
			_, statErr := os.Stat(dir)
			if owns != errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("work dir after Stop: stat gave %v; owned %t", statErr, owns)
			}

			mu.Lock()
			defer mu.Unlock()
			want := []string{
				fmt.Sprintf("Sleeper (pid %d) halted", first.PID()),
				fmt.Sprintf("Sleeper restarted at addr:1 (pid %d) and ready in ", second.PID()),
				fmt.Sprintf("Sleeper (pid %d) halted", second.PID()),
				fmt.Sprintf("Sleeper restarted at addr:1 (pid %d) and ready in ", third.PID()),
				fmt.Sprintf("Sleeper (pid %d) stopped", third.PID()),
			}
			if len(lines) != len(want) {
				t.Fatalf("progress lines %q, want %d of them", lines, len(want))
			}
			for i := range want {
				if !strings.HasPrefix(lines[i], want[i]) {
					t.Errorf("line %d = %q, want it to begin %q", i, lines[i], want[i])
				}
			}
		})
	}
}

func TestRemoveOwnedDir(t *testing.T) {
	cause := errors.New("cause")
	dir := t.TempDir()
	if err := RemoveOwnedDir(false, dir, cause); err != cause {
		t.Errorf("not owned: %v, want the cause as it is", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("a dir not owned was touched: %v", err)
	}
	if err := RemoveOwnedDir(true, dir, nil); err != nil {
		t.Errorf("owned: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("owned dir after removal: stat gave %v, want not-exist", err)
	}
}
