//go:build !linux

package prom

import (
	"os"
	"syscall"
)

// sigterm is os.Interrupt off Linux: SIGINT on other Unix systems, which
// Prometheus handles like SIGTERM; where it cannot be sent (Windows) Stop
// falls through to Kill after the grace period.
var sigterm = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }
