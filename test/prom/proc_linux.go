package prom

import (
	"os"
	"syscall"
)

var sigterm os.Signal = syscall.SIGTERM

// sysProcAttr asks the kernel to kill Prometheus if the process that started
// it dies (a test binary killed by `go test -timeout`, a demo hit by
// SIGKILL), so no server outlives its harness.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
