//go:build !linux

package proc

import (
	"os"
	"syscall"
)

// Sigterm is os.Interrupt off Linux: SIGINT on other Unix systems, which the
// components handle like SIGTERM; where it cannot be sent (Windows)
// Terminate falls through to SIGKILL after the grace period.
var Sigterm = os.Interrupt

// SysProcAttr is nil off Linux, which has no Pdeathsig.
func SysProcAttr() *syscall.SysProcAttr { return nil }
