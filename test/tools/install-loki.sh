#!/usr/bin/env bash
# install-loki.sh builds Loki, which the collectors/loki integration tests and
# the LogQL e2e tests run as a real single-binary server (test/loki), into a
# bin directory (`make tools` passes <repo root>/bin):
#
#   loki   github.com/grafana/loki/cmd/loki 2.2.1, pinned by the tools module
#          in loki/ (which repeats Loki's replace directives: `go install
#          ...@version` refuses a module that has them)
#
# 2.2.1 is the last Apache-2.0 Loki; later releases are AGPL-3.0, which this
# project does not take (see loki/go.mod).
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/loki) records a different recipe, so re-running is cheap. A
# cold build takes about two and a half minutes on 2 cores (empty build
# cache), plus about two for downloading Loki's modules; the binary is 52 MB.
#
# Usage: bash test/tools/install-loki.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=loki
MODULE=github.com/grafana/loki
PKG=$MODULE/cmd/loki
MODDIR=$HERE/loki
# The proxy serves the v2.2.1 tag only as a pseudo-version of the commit it
# names (see loki/go.mod); the release and commit Loki reports are stated here
# and checked against that pin.
RELEASE=2.2.1
PSEUDO=v1.6.2-0.20210406003638-babea82ef558

tools_setup

VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
if [[ $VERSION != "$PSEUDO" ]]; then
	echo "$TOOL: loki/go.mod pins $MODULE $VERSION, but this script names $PSEUDO as Loki $RELEASE; update RELEASE and PSEUDO together" >&2
	exit 1
fi
# What `loki -version` and /loki/api/v1/status/buildinfo report: Loki 2 sets
# Prometheus' version package from its own pkg/build variables, which are
# empty unless the linker fills them, as Loki's Makefile does.
LDFLAGS="-s -w -X $MODULE/pkg/build.Version=$RELEASE -X $MODULE/pkg/build.Revision=${PSEUDO##*-}"
MODSUM=$(module_sum "$MODDIR")
# The recipe names the release, the import path (no /v3) and the ldflags, so
# a binary built by an earlier recipe (Loki 3) is rebuilt.
RECIPE="$PKG@$VERSION release=$RELEASE module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$RELEASE ($VERSION)"
