package loki

import (
	"os"
	"syscall"
)

var sigterm os.Signal = syscall.SIGTERM

// sysProcAttr asks the kernel to kill Loki if the process that started it
// dies (a test binary killed by `go test -timeout`), so no server outlives
// its harness.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
