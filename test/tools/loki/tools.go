//go:build tools

// Package tools records the main package ../install-loki.sh builds from this
// module, so that `go mod tidy` keeps its dependencies in go.sum.
package tools

import (
	_ "github.com/grafana/loki/cmd/loki"
)
