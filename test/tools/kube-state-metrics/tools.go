//go:build tools

// Package tools records the main package ../install-kube-state-metrics.sh
// builds from this module, so that `go mod tidy` keeps its dependencies in
// go.sum.
package tools

import (
	_ "k8s.io/kube-state-metrics/v2"
)
