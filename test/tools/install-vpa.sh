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

if [[ $# -ne 1 || $1 != /* ]]; then
	echo "usage: $0 <absolute bin dir>" >&2
	exit 2
fi
BIN=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STAMPS=$BIN/.stamps
TOOL=vpa-recommender
CRDS=vpa-crds.yaml
MODULE=k8s.io/autoscaler/vertical-pod-autoscaler
PKG=$MODULE/pkg/recommender
MODDIR=$HERE/vpa

# No ",direct": a module the proxy refuses must fail here, not fall back to
# a VCS fetch that cannot work offline.
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

mkdir -p "$BIN" "$STAMPS"
# Shares install.sh's lock: two installers building at once on 2 cores only
# slow each other down, and the stamps directory is common.
if command -v flock >/dev/null; then
	exec 9>"$BIN/.install.lock"
	flock 9
fi

fmt_secs() {
	local s=$1
	if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

VERSION=$(sed -n "s|^require $MODULE \(v[^ ]*\)\$|\1|p; s|^[[:space:]]*$MODULE \(v[^ ]*\)\$|\1|p" "$MODDIR/go.mod" | head -n1)
if [[ -z $VERSION ]]; then
	echo "$TOOL: no $MODULE requirement in $MODDIR/go.mod" >&2
	exit 1
fi
# The recommender has no version variable to set: its version is the
# module's, which the recipe records.
LDFLAGS="-s -w"
# go.mod and go.sum pin every dependency: hash them into the recipe so a
# bump there rebuilds.
MODSUM=$(cat "$MODDIR/go.mod" "$MODDIR/go.sum" | sha256sum | cut -c1-16)
RECIPE="$PKG@$VERSION module=$MODSUM ldflags=$LDFLAGS crds=deploy/vpa-v1-crd-gen.yaml $(go env GOVERSION)"

if [[ -x $BIN/$TOOL && -f $BIN/$CRDS && -f $STAMPS/$TOOL && $(<"$STAMPS/$TOOL") == "$RECIPE" ]]; then
	printf '%-24s up to date\n' "$TOOL"
	exit 0
fi

TMP=$(mktemp -d "$BIN/.install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

printf '%-24s building %s ...\n' "$TOOL" "$VERSION"
start=$SECONDS
rm -f "$STAMPS/$TOOL"
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
# behind a valid stamp.
mv -f "$TMP/$CRDS" "$BIN/$CRDS"
mv -f "$TMP/$TOOL" "$BIN/$TOOL"
printf '%s' "$RECIPE" >"$STAMPS/$TOOL"
printf '%-24s built in %s (%s)\n' "$TOOL" "$(fmt_secs $((SECONDS - start)))" "$(du -h "$BIN/$TOOL" | cut -f1)"
