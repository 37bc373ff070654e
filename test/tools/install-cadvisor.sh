#!/usr/bin/env bash
# install-cadvisor.sh builds a real cAdvisor, which the test/cadvisor harness
# runs as the container-metrics source of the kubelet collector's tests, into
# a bin directory (`make tools` passes <repo root>/bin):
#
#   cadvisor   our own small main (cadvisor/main.go) on
#              github.com/google/cadvisor/lib, pinned by the tools module in
#              cadvisor/: cAdvisor's cmd module is not served by the proxy,
#              its library is. Container manager, raw cgroup handler and
#              Prometheus collector on a loopback address; pod-like cgroups
#              get the kubelet's namespace/pod/container labels.
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/cadvisor) records a different recipe (the module's go.mod,
# go.sum and main.go are hashed into it), so re-running is cheap. A cold build
# takes about 45 seconds on 2 cores (12 MB).
#
# Usage: bash test/tools/install-cadvisor.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=cadvisor
MODULE=github.com/google/cadvisor/lib
MODDIR=$HERE/cadvisor

tools_setup

VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
# go.mod and go.sum pin every dependency and main.go is ours: hash them into
# the recipe so a change to any of them rebuilds.
MODSUM=$(module_sum "$MODDIR" "$MODDIR/main.go")
LDFLAGS="-s -w"
RECIPE="$MODULE@$VERSION module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" . "$LDFLAGS" "$VERSION"
