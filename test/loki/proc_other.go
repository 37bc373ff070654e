//go:build !linux

package loki

import (
	"os"
	"syscall"
)

// sigterm is os.Interrupt off Linux, which Loki handles like SIGTERM; where
// it cannot be sent (Windows) Stop falls through to Kill after the grace.
var sigterm = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }
