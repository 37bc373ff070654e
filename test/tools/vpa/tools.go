//go:build tools

// Package tools records the main package ../install-vpa.sh builds from this
// module, so that `go mod tidy` keeps its dependencies in go.sum.
package tools

import (
	_ "k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender"
)
