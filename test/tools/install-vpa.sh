#!/usr/bin/env bash
# install-vpa.sh builds the Vertical Pod Autoscaler's recommender, which the
# e2e tests run against the local cluster to show it consumes what Gantry
# serves (test/vpa), into a bin directory (`make tools` passes <repo root>/bin):
#
#   vpa-recommender   k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender,
#                     pinned by the tools module in vpa/
#   vpa-crds.yaml     the VerticalPodAutoscaler and VerticalPodAutoscalerCheckpoint
#                     CRDs, copied from the same module version
#                     (deploy/vpa-v1-crd-gen.yaml), so the objects the
#                     recommender reads and writes match its client
#
# `go install .../pkg/recommender@v1.8.1` is refused: the autoscaler's go.mod
# has exclude directives. Building the main package from a tools module works.
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/vpa-recommender) records a different recipe, so re-running is
# cheap. A cold build takes one to two minutes on 2 cores.
#
# Usage: bash test/tools/install-vpa.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=vpa-recommender
CRDS=vpa-crds.yaml
MODULE=k8s.io/autoscaler/vertical-pod-autoscaler
PKG=$MODULE/pkg/recommender
MODDIR=$HERE/vpa

tools_setup

VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
# The recommender has no version variable to set: its version is the
# module's, which the recipe records.
LDFLAGS="-s -w"
# go.mod and go.sum pin every dependency: hash them into the recipe so a
# bump there rebuilds.
MODSUM=$(module_sum "$MODDIR")
RECIPE="$PKG@$VERSION module=$MODSUM ldflags=$LDFLAGS crds=deploy/vpa-v1-crd-gen.yaml $(go env GOVERSION)"

if [[ -f $BIN/$CRDS ]]; then
	exit_if_up_to_date "$TOOL" "$RECIPE"
fi

tools_tmp

begin_build "$TOOL" "$VERSION"
(cd "$MODDIR" && go build -trimpath -ldflags "$LDFLAGS" -o "$TMP/$TOOL" "$PKG")
# The CRDs of exactly this version, from the module cache the build just
# filled (`go list -m` downloads the module if the cache lacks it).
SRC=$(cd "$MODDIR" && go list -m -f '{{.Dir}}' "$MODULE")
if [[ -z $SRC || ! -f $SRC/deploy/vpa-v1-crd-gen.yaml ]]; then
	echo "$TOOL: no deploy/vpa-v1-crd-gen.yaml in $MODULE@$VERSION (${SRC:-not in the module cache})" >&2
	exit 1
fi
cp "$SRC/deploy/vpa-v1-crd-gen.yaml" "$TMP/$CRDS"
chmod 0644 "$TMP/$CRDS"
# Atomic moves, so an interrupted build never leaves a half-written file
# behind a valid stamp; the binary and its stamp last.
mv -f "$TMP/$CRDS" "$BIN/$CRDS"
finish_build "$TOOL" "$RECIPE"
