#!/usr/bin/env bash
# install-dashboard-linter.sh builds Grafana's dashboard-linter, which the
# dashboards/ tests run over every generated dashboard, into a bin directory
# (`make tools` passes <repo root>/bin):
#
#   dashboard-linter   github.com/grafana/dashboard-linter, pinned by the tools
#                      module in dashboard-linter/ (it pins Prometheus v0.55 and
#                      Loki v3.3, so it cannot share Gantry's go.mod)
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/dashboard-linter) records a different recipe, so re-running is
# cheap. A cold build takes about 3 minutes on 2 cores.
#
# Usage: bash test/tools/install-dashboard-linter.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=dashboard-linter
PKG=github.com/grafana/dashboard-linter
MODDIR=$HERE/dashboard-linter

tools_setup

# The tools module's go.mod and go.sum pin every dependency: hash them into
# the recipe so a bump there rebuilds.
MODSUM=$(module_sum "$MODDIR")
LDFLAGS="-s -w"
RECIPE="$PKG module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS"
