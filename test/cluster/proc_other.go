//go:build !linux

package cluster

import (
	"os"
	"syscall"
)

// sigterm is os.Interrupt off Linux: SIGINT on other Unix systems, which the
// components handle like SIGTERM.
var sigterm = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }
