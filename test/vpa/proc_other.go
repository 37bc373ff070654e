//go:build !linux

package vpa

import (
	"os"
	"syscall"
)

// sigterm is os.Interrupt off Linux: SIGINT on other Unix systems, which ends the
// recommender as SIGTERM does.
var sigterm = os.Interrupt

func sysProcAttr() *syscall.SysProcAttr { return nil }
