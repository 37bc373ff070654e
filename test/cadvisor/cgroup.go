package cadvisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/test/internal/proc"
)

// cgroupRoot is where the cgroup v1 controllers are mounted, one directory
// each (cpu and cpuacct may be the same hierarchy through symlinks).
const cgroupRoot = "/sys/fs/cgroup"

const (
	cfsPeriodMicros = 100000
	// busyShares is the cpu.shares of the pod cgroup and of the parents this
	// package made (the parent is what competes with the machine's other
	// tasks): the highest weight, so that the busy loop reaches its quota on
	// a machine others keep busy; the quota alone caps it.
	busyShares = 262144
	// rmdirWait bounds the retries of rmdir while the kernel still counts
	// the killed loop in the cgroup.
	rmdirWait = 5 * time.Second
	// busyLoop holds 1 MiB and spins; it starts once a line arrives on stdin.
	busyLoop = `read _ && x=$(head -c 1048576 /dev/zero | tr '\0' x) && while :; do :; done`
)

// controllerFiles names, per controller, a file NewPodCgroup relies on.
var controllerFiles = []struct{ controller, file string }{
	{"cpu", "cpu.cfs_quota_us"},
	{"cpuacct", "cpuacct.usage"},
	{"memory", "memory.limit_in_bytes"},
}

// Available reports why NewPodCgroup cannot work here: nil when the process
// runs as root and the cgroup v1 cpu, cpuacct and memory controllers are
// mounted under /sys/fs/cgroup. Tests skip with its message.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("creating cgroups needs root")
	}
	for _, c := range controllerFiles {
		p := filepath.Join(cgroupRoot, c.controller, c.file)
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("no cgroup v1 %s controller (%s: %v)", c.controller, p, err)
		}
		// The files can be there on a read-only mount: make (and remove)
		// a cgroup, as the tests will.
		probe := filepath.Join(cgroupRoot, c.controller, fmt.Sprintf("gantry-probe-%d", os.Getpid()))
		if err := os.Mkdir(probe, 0o755); err != nil {
			return fmt.Errorf("cannot create a cgroup in the v1 %s hierarchy (%v)", c.controller, err)
		}
		if err := os.Remove(probe); err != nil {
			return fmt.Errorf("cannot remove the probe cgroup %s (%v)", probe, err)
		}
	}
	return nil
}

// PodCgroup is a pod-like cgroup holding one busy loop.
type PodCgroup struct {
	// ID is the cgroup's name, cAdvisor's id label:
	// <parent>/<namespace>_<pod>_<container>.
	ID                        string
	Namespace, Pod, Container string
	// PID is the busy loop's process id.
	PID int

	dirs   []string // the cgroup's directory in each distinct hierarchy
	cpuacc string   // its directory in the cpuacct hierarchy
}

// createdDirs holds the parent cgroup directories this process made, so that
// the last pod cgroup to go removes them and no one else's are touched.
var createdDirs = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// NewPodCgroup makes the cgroup <parent>/<namespace>_<pod>_<container> in the
// cpu, cpuacct and memory hierarchies, limits it to cpuQuota CPUs (CFS quota
// over a 100ms period; <= 0 means no quota) and memLimit bytes (<= 0: no
// limit), and runs a busy loop (sh, holding 1 MiB) in it. Cleanup
// kills the loop and removes the cgroup, and the parent directories it made
// once they are empty. The caller checks Available first (and skips).
func NewPodCgroup(t testing.TB, parent, namespace, pod, container string, cpuQuota float64, memLimit int64) *PodCgroup {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("cadvisor: pod cgroup: %v", err)
	}
	for _, n := range []string{namespace, pod, container} {
		if n == "" || strings.ContainsAny(n, "_/") {
			t.Fatalf("cadvisor: pod cgroup: name %q must be a non-empty Kubernetes name (no _ or /)", n)
		}
	}
	if !strings.HasPrefix(parent, "/") || path.Clean(parent) == "/" {
		t.Fatalf("cadvisor: pod cgroup: parent %q must be an absolute cgroup path below /", parent)
	}
	pc := &PodCgroup{
		ID:        path.Join(parent, namespace+"_"+pod+"_"+container),
		Namespace: namespace, Pod: pod, Container: container,
	}
	seen := map[string]bool{}
	var roots []string
	for _, c := range controllerFiles {
		root, err := filepath.EvalSymlinks(filepath.Join(cgroupRoot, c.controller))
		if err != nil {
			t.Fatalf("cadvisor: pod cgroup: %v", err)
		}
		dir := filepath.Join(root, filepath.FromSlash(pc.ID))
		if c.controller == "cpuacct" {
			pc.cpuacc = dir
		}
		if !seen[dir] {
			seen[dir] = true
			pc.dirs = append(pc.dirs, dir)
			roots = append(roots, root)
		}
	}
	// Registered before anything is made, so a failure half way cleans up.
	var loop *exec.Cmd
	exited := make(chan struct{})
	t.Cleanup(func() {
		if loop != nil {
			_ = loop.Process.Kill()
			select {
			case <-exited:
			case <-time.After(proc.KillWait):
				t.Errorf("cadvisor: busy loop (pid %d) did not exit %s after SIGKILL", pc.PID, proc.KillWait)
			}
		}
		for i, dir := range pc.dirs {
			if err := removeCgroup(dir, roots[i]); err != nil {
				t.Errorf("cadvisor: removing pod cgroup: %v", err)
			}
		}
	})

	for i, dir := range pc.dirs {
		if err := makeDirs(roots[i], dir); err != nil {
			t.Fatalf("cadvisor: pod cgroup: %v", err)
		}
	}
	quota := -1
	if cpuQuota > 0 {
		quota = int(cpuQuota*cfsPeriodMicros + 0.5)
	}
	writes := []struct{ controller, file, value string }{
		{"cpu", "cpu.cfs_period_us", strconv.Itoa(cfsPeriodMicros)},
		{"cpu", "cpu.cfs_quota_us", strconv.Itoa(quota)},
		{"cpu", "cpu.shares", strconv.Itoa(busyShares)},
	}
	if memLimit > 0 {
		writes = append(writes, struct{ controller, file, value string }{"memory", "memory.limit_in_bytes", strconv.FormatInt(memLimit, 10)})
	}
	for _, w := range writes {
		if err := writeControl(pc.ID, w.controller, w.file, w.value); err != nil {
			t.Fatalf("cadvisor: pod cgroup: %v", err)
		}
	}
	for _, parent := range madeParents(filepath.Join(cgroupRoot, "cpu"), filepath.Join(cgroupRoot, "cpu", filepath.FromSlash(pc.ID))) {
		if err := os.WriteFile(filepath.Join(parent, "cpu.shares"), []byte(strconv.Itoa(busyShares)), 0o644); err != nil {
			t.Fatalf("cadvisor: parent cgroup: %v", err)
		}
	}

	// The loop waits on stdin until it is in the cgroup, so that the memory
	// it then takes (a 1 MiB shell variable) is charged there: a working set
	// for cAdvisor to see.
	loop = exec.Command("sh", "-c", busyLoop)
	loop.SysProcAttr = proc.SysProcAttr()
	gate, err := loop.StdinPipe()
	if err != nil {
		t.Fatalf("cadvisor: pod cgroup: %v", err)
	}
	if err := loop.Start(); err != nil {
		loop = nil
		t.Fatalf("cadvisor: pod cgroup: starting busy loop: %v", err)
	}
	go func() { _ = loop.Wait(); close(exited) }()
	pc.PID = loop.Process.Pid
	for _, dir := range pc.dirs {
		p := filepath.Join(dir, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pc.PID)), 0o644); err != nil {
			t.Fatalf("cadvisor: pod cgroup: moving busy loop into %s: %v", p, err)
		}
	}
	if _, err := gate.Write([]byte("go\n")); err != nil {
		t.Fatalf("cadvisor: pod cgroup: starting busy loop: %v", err)
	}
	_ = gate.Close()
	t.Logf("cadvisor: pod cgroup %s: busy loop pid %d, cpu quota %dus/%dus, memory limit %d", pc.ID, pc.PID, quota, cfsPeriodMicros, memLimit)
	return pc
}

// CPUUsage is the CPU time the cgroup has used, as the kernel counts it
// (cpuacct.usage): the ground truth cAdvisor's counter is compared with.
func (pc *PodCgroup) CPUUsage() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(pc.cpuacc, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing cpuacct.usage: %w", err)
	}
	return time.Duration(ns), nil
}

func writeControl(id, controller, file, value string) error {
	p := filepath.Join(cgroupRoot, controller, filepath.FromSlash(id), file)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing %s to %s: %w", value, p, err)
	}
	return nil
}

// makeDirs makes dir and any missing parents below root, recording the ones
// it made.
func makeDirs(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return err
	}
	createdDirs.Lock()
	defer createdDirs.Unlock()
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o755)
		switch {
		case err == nil:
			createdDirs.m[cur] = true
		case errors.Is(err, os.ErrExist):
			if cur == dir {
				return fmt.Errorf("cgroup %s exists already (a leftover, or another test's)", cur)
			}
		default:
			return fmt.Errorf("making cgroup %s: %w", cur, err)
		}
	}
	return nil
}

// madeParents are the directories strictly between root and dir that this
// process made.
func madeParents(root, dir string) []string {
	createdDirs.Lock()
	defer createdDirs.Unlock()
	var out []string
	for p := filepath.Dir(dir); strings.HasPrefix(p, root+string(filepath.Separator)); p = filepath.Dir(p) {
		if createdDirs.m[p] {
			out = append(out, p)
		}
	}
	return out
}

// removeCgroup removes dir if this process made it, then each parent below
// root this process made, as long as they are empty (another pod cgroup may
// still live in one; it removes the parent when it goes).
func removeCgroup(dir, root string) error {
	createdDirs.Lock()
	defer createdDirs.Unlock()
	if !createdDirs.m[dir] {
		return nil
	}
	// The killed loop may still be counted for a moment after it was reaped.
	deadline := time.Now().Add(rmdirWait)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			break
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	delete(createdDirs.m, dir)
	for d := filepath.Dir(dir); d != root && strings.HasPrefix(d, root+string(filepath.Separator)); d = filepath.Dir(d) {
		if !createdDirs.m[d] {
			break
		}
		if err := syscall.Rmdir(d); err != nil {
			break // still holds another pod cgroup
		}
		delete(createdDirs.m, d)
	}
	return nil
}
