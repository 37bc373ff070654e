package proc

import (
	"os"
	"syscall"
)

// Sigterm is the signal Terminate sends first.
var Sigterm os.Signal = syscall.SIGTERM

// SysProcAttr asks the kernel to kill the child if the process that started
// it dies (a test binary killed by `go test -timeout`, a demo hit by
// SIGKILL), so no server outlives its harness. Start sets it; a harness that
// runs exec.Cmd itself (a busy loop) sets it too.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
