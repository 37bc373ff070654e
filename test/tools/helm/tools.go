//go:build tools

// Package tools records the main package ../install-helm.sh builds from this
// module, so that `go mod tidy` keeps its dependencies in go.sum.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
