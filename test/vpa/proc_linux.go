package vpa

import (
	"os"
	"syscall"
)

var sigterm os.Signal = syscall.SIGTERM

// sysProcAttr asks the kernel to kill the recommender if the process that
// started it dies (a test binary killed by `go test -timeout`),
// so it never outlives its harness.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
