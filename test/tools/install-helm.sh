#!/usr/bin/env bash
# install-helm.sh builds Helm, which the deploy/ tests run over the chart in
# deploy/helm (helm lint --strict, helm template), into a bin directory
# (`make tools` passes <repo root>/bin):
#
#   helm   helm.sh/helm/v4, pinned by the tools module in helm/ (its
#          dependencies, controller-runtime, oras, wazero, ..., stay out of
#          Gantry's go.mod)
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/helm) records a different recipe, so re-running is cheap. A
# cold build takes a few minutes on 2 cores.
#
# Usage: bash test/tools/install-helm.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=helm
MODULE=helm.sh/helm/v4
PKG=$MODULE/cmd/helm
MODDIR=$HERE/helm

tools_setup

# The version Helm reports (`helm version`) is the one go.mod pins; without
# it Helm calls itself v4.3 (its source's default). The module proxy serves
# no git commit, so gitCommit stays empty.
VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
LDFLAGS="-s -w -X $MODULE/internal/version.version=$VERSION -X $MODULE/internal/version.gitTreeState=clean"
MODSUM=$(module_sum "$MODDIR")
RECIPE="$PKG@$VERSION module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$VERSION"
