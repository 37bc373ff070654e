package cluster

import (
	"os"
	"syscall"
)

var sigterm os.Signal = syscall.SIGTERM

// sysProcAttr asks the kernel to kill a component if the process that
// started it dies (a test binary killed by `go test -timeout`, a demo hit by
// SIGKILL), so no control plane outlives its harness.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
