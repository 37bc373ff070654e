#!/usr/bin/env bash
# install-loki.sh builds Loki, which the collectors/loki integration tests and
# the LogQL e2e tests run as a real single-binary server (test/loki), into a
# bin directory (`make tools` passes <repo root>/bin):
#
#   loki   github.com/grafana/loki/v3/cmd/loki, pinned by the tools module in
#          loki/ (which repeats Loki's replace directives: `go install
#          ...@version` refuses a module that has them)
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/loki) records a different recipe, so re-running is cheap. A
# cold build takes about ten minutes on 2 cores.
#
# Usage: bash test/tools/install-loki.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=loki
MODULE=github.com/grafana/loki/v3
PKG=$MODULE/cmd/loki
MODDIR=$HERE/loki

tools_setup

# The version Loki reports (`loki -version`, /loki/api/v1/status/buildinfo)
# is the one go.mod pins, without the leading v as Loki's releases print it;
# without it Loki reports an empty version.
VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
LDFLAGS="-s -w -X $MODULE/pkg/util/build.Version=${VERSION#v}"
MODSUM=$(module_sum "$MODDIR")
RECIPE="$PKG@$VERSION module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$VERSION"
