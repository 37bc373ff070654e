#!/usr/bin/env bash
# install-cortex.sh builds Cortex, which the test/cortex harness runs as a
# single-process, multi-tenant server on local block storage, into a bin
# directory (`make tools` passes <repo root>/bin):
#
#   cortex   github.com/cortexproject/cortex/cmd/cortex, pinned by the tools
#            module in cortex/ (which repeats Cortex' replace and exclude
#            directives: `go install ...@version` refuses a module that has
#            them)
#
# Built with the tags Cortex' own Makefile uses, netgo and slicelabels: Cortex
# casts its wire labels ([]cortexpb.LabelAdapter) to Prometheus' labels.Labels
# through unsafe.Pointer, which is sound only in the slice layout.
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/cortex) records a different recipe, so re-running is cheap.
# A cold build takes about four minutes on 2 cores (about 140 MB).
#
# Usage: bash test/tools/install-cortex.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=cortex
MODULE=github.com/cortexproject/cortex
PKG=$MODULE/cmd/cortex
MODDIR=$HERE/cortex
TAGS=netgo,slicelabels

tools_setup
# build_in_module runs `go build` without -tags; GOFLAGS carries them.
export GOFLAGS="$GOFLAGS -tags=$TAGS"

# `cortex -version` and cortex_build_info report the version go.mod pins,
# without the leading v, as Cortex' releases do (its main package copies
# main.Version into Prometheus' version package).
VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
LDFLAGS="-s -w -X main.Version=${VERSION#v}"
MODSUM=$(module_sum "$MODDIR")
RECIPE="$PKG@$VERSION module=$MODSUM tags=$TAGS ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$VERSION"
