package stack

import "syscall"

// sysProcAttr puts Gantry in its own process group and kills it if the
// process that started it dies (a test binary killed by its timeout), so
// no Gantry outlives its stack.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
