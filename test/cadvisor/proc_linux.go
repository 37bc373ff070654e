package cadvisor

import (
	"os"
	"syscall"
)

var sigterm os.Signal = syscall.SIGTERM

// sysProcAttr asks the kernel to kill cAdvisor or a busy loop if the process
// that started it dies (a test binary killed by `go test -timeout`), so
// nothing outlives its harness.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
