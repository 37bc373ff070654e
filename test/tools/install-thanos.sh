#!/usr/bin/env bash
# install-thanos.sh builds Thanos, which the test/thanos harness runs as
# sidecars over Prometheus replicas, a deduplicating and tenancy-enforcing
# querier and a multi-tenant receiver, into a bin directory (`make tools`
# passes <repo root>/bin):
#
#   thanos   github.com/thanos-io/thanos/cmd/thanos, pinned by the tools module
#            in thanos/ (which repeats Thanos' replace directives: `go install
#            ...@version` refuses a module that has them)
#
# The slicelabels build tag is not optional: without it `thanos receive`
# panics decoding the labels of a remote write. netgo as in Thanos' releases.
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/thanos) records a different recipe, so re-running is cheap.
# A cold build takes about seven minutes on 2 cores (about 140 MB).
#
# Usage: bash test/tools/install-thanos.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=thanos
MODULE=github.com/thanos-io/thanos
PKG=$MODULE/cmd/thanos
MODDIR=$HERE/thanos
TAGS=netgo,slicelabels

tools_setup
# build_in_module runs `go build` without -tags; GOFLAGS carries them.
export GOFLAGS="$GOFLAGS -tags=$TAGS"

# `thanos --version` and thanos_build_info report the version go.mod pins,
# without the leading v, as Thanos' releases do.
VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
LDFLAGS="-s -w -X github.com/prometheus/common/version.Version=${VERSION#v}"
MODSUM=$(module_sum "$MODDIR")
RECIPE="$PKG@$VERSION module=$MODSUM tags=$TAGS ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$VERSION"
