package cadvisor_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gantry-dev/gantry/test/cadvisor"
)

// TestPodCgroupLimitsAndCleanup checks what NewPodCgroup leaves in the
// kernel while a test runs (limits, the loop in the cgroup) and that its
// cleanup leaves nothing: no loop, no cgroup, no parent.
func TestPodCgroupLimitsAndCleanup(t *testing.T) {
	if err := cadvisor.Available(); err != nil {
		t.Skipf("needs root and the cgroup v1 cpu, cpuacct and memory controllers: %v", err)
	}
	parent := fmt.Sprintf("/gantry-test-cleanup-%d", os.Getpid())
	var pids []int
	t.Run("two containers of one pod", func(t *testing.T) {
		a := cadvisor.NewPodCgroup(t, parent, "ns", "p", "a", 0.1, 0)
		b := cadvisor.NewPodCgroup(t, parent, "ns", "p", "b", 0, 8<<20)
		pids = append(pids, a.PID, b.PID)
		for _, tc := range []struct {
			cg               *cadvisor.PodCgroup
			controller, file string
			want             string
		}{
			{a, "cpu", "cpu.cfs_quota_us", "10000"},
			{a, "cpu", "cpu.cfs_period_us", "100000"},
			{b, "cpu", "cpu.cfs_quota_us", "-1"},
			{b, "memory", "memory.limit_in_bytes", strconv.Itoa(8 << 20)},
		} {
			if got := readControl(t, tc.controller, tc.cg.ID, tc.file); got != tc.want {
				t.Errorf("%s %s/%s = %q, want %q", tc.controller, tc.cg.ID, tc.file, got, tc.want)
			}
		}
		// The loop's pid is in the cgroup of every controller (with, for a
		// moment, the subshell that fills its 1 MiB).
		for _, cg := range []*cadvisor.PodCgroup{a, b} {
			for _, c := range []string{"cpu", "cpuacct", "memory"} {
				procs := strings.Fields(readControl(t, c, cg.ID, "cgroup.procs"))
				if !slices.Contains(procs, strconv.Itoa(cg.PID)) {
					t.Errorf("%s %s/cgroup.procs = %v, want it to hold the loop's pid %d", c, cg.ID, procs, cg.PID)
				}
			}
		}
		if a.ID != parent+"/ns_p_a" {
			t.Errorf("ID = %q, want %q", a.ID, parent+"/ns_p_a")
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("busy loop %d after cleanup: kill -0 = %v, want ESRCH", pid, err)
		}
	}
	for _, c := range []string{"cpu", "cpuacct", "memory"} {
		dir := filepath.Join("/sys/fs/cgroup", c, parent)
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after cleanup: %v, want it gone", dir, err)
		}
	}
}

func readControl(t *testing.T, controller, id, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, id, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
