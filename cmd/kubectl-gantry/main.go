// Command kubectl-gantry is Gantry's kubectl plugin: copied onto PATH, kubectl
// runs it as `kubectl gantry`.
//
//	kubectl gantry explain hpa NAME [-n NS] [-o json|yaml]
//	kubectl gantry explain metric METRIC --type pods|object|external [...]
//	kubectl gantry doctor [-n NS | -A] [-o json|yaml]
//
// Every answer comes through the kube-apiserver: the explanations from
// Gantry's diagnostics.gantry.dev API (so RBAC decides who sees what), the
// cluster checks from the ordinary APIs. Exit status: 0 on success, 1 when a
// request failed or doctor found a FAIL, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is set at build time.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, time.Now)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// run executes one command line and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, now func() time.Time) int {
	root := newRootCommand(stdout, stderr, now)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var failed *failedError
	if errors.As(err, &failed) {
		if failed.err != nil {
			fmt.Fprintf(stderr, "error: %v\n", failed.err)
		}
		return exitFailed
	}
	// Everything cobra reports itself (unknown command or flag, wrong number
	// of arguments) and every usageError is the command line's fault.
	fmt.Fprintf(stderr, "error: %v\nSee 'kubectl gantry --help' for usage.\n", err)
	return exitUsage
}

// failedError makes run exit 1: a request failed, or doctor found a FAIL
// (then err is nil: the report said it already).
type failedError struct{ err error }

func (e *failedError) Error() string {
	if e.err == nil {
		return "checks failed"
	}
	return e.err.Error()
}

func (e *failedError) Unwrap() error { return e.err }

func failed(err error) error { return &failedError{err: err} }
