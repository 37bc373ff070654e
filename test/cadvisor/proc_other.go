//go:build !linux

package cadvisor

import (
	"os"
	"syscall"
)

// sigterm is os.Interrupt off Linux; cgroups, and so this package's tests,
// are Linux-only anyway.
var sigterm = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }
