package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 5 distinct positive ports", ports)
		}
		seen[p] = true
	}
}

func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte("first line\nsecond\nthird\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		max  int
		want string
	}{
		{name: "whole file when it fits", max: 100, want: "first line\nsecond\nthird\n"},
		{name: "cut at a line boundary", max: 10, want: "[... earlier lines cut ...]\nthird\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := LogTail(path, tc.max); got != tc.want {
				t.Errorf("LogTail(%d) = %q, want %q", tc.max, got, tc.want)
			}
		})
	}
	if got := LogTail(filepath.Join(t.TempDir(), "missing"), 10); !strings.HasPrefix(got, "(reading log: ") {
		t.Errorf("missing file: got %q", got)
	}
}

func TestTerminate(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs sh and SIGTERM")
	}
	t.Run("exits on SIGTERM within grace", func(t *testing.T) {
		p, err := Start("sleep", exec.Command("sleep", "30"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Terminate(5*time.Second, func() { t.Error("onKill called") }); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		select {
		case <-p.Exited():
		default:
			t.Fatal("Exited not closed after Terminate")
		}
	})
	t.Run("ignores SIGTERM and is killed", func(t *testing.T) {
		p, err := Start("stubborn", exec.Command("sh", "-c", `trap "" TERM; while :; do sleep 0.1; done`), nil)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let the trap be installed
		killed := false
		err = p.Terminate(300*time.Millisecond, func() { killed = true })
		var ke *KilledError
		if !errors.As(err, &ke) || !killed {
			t.Fatalf("Terminate = %v (onKill called: %t), want a KilledError after onKill", err, killed)
		}
		if want := "stubborn (pid "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q does not start with %q", err, want)
		}
	})
	t.Run("already exited", func(t *testing.T) {
		p, err := Start("false", exec.Command("false"), nil)
		if err != nil {
			t.Fatal(err)
		}
		<-p.Exited()
		if p.Err() == nil {
			t.Error("Err = nil for `false`")
		}
		if err := p.Terminate(time.Second, nil); err != nil {
			t.Errorf("Terminate after exit = %v, want nil", err)
		}
	})
}
