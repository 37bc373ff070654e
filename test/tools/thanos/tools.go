//go:build tools

// Package tools records the main package ../install-thanos.sh builds from
// this module, so that `go mod tidy` keeps its dependencies in go.sum.
package tools

import (
	_ "github.com/thanos-io/thanos/cmd/thanos"
)
