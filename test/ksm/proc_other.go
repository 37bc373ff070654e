//go:build !linux

package ksm

import (
	"os"
	"syscall"
)

// sigterm is os.Interrupt off Linux.
var sigterm = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }
