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

if [[ $# -ne 1 || $1 != /* ]]; then
	echo "usage: $0 <absolute bin dir>" >&2
	exit 2
fi
BIN=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STAMPS=$BIN/.stamps
TOOL=cadvisor
MODULE=github.com/google/cadvisor/lib
MODDIR=$HERE/cadvisor

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
# go.mod and go.sum pin every dependency and main.go is ours: hash them into
# the recipe so a change to any of them rebuilds.
MODSUM=$(cat "$MODDIR/go.mod" "$MODDIR/go.sum" "$MODDIR/main.go" | sha256sum | cut -c1-16)
LDFLAGS="-s -w"
RECIPE="$MODULE@$VERSION module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

if [[ -x $BIN/$TOOL && -f $STAMPS/$TOOL && $(<"$STAMPS/$TOOL") == "$RECIPE" ]]; then
	printf '%-24s up to date\n' "$TOOL"
	exit 0
fi

TMP=$(mktemp -d "$BIN/.install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

printf '%-24s building %s ...\n' "$TOOL" "$VERSION"
start=$SECONDS
rm -f "$STAMPS/$TOOL"
(cd "$MODDIR" && go build -trimpath -ldflags "$LDFLAGS" -o "$TMP/$TOOL" .)
# Atomic move, so an interrupted build never leaves a half-written binary
# behind a valid stamp.
mv -f "$TMP/$TOOL" "$BIN/$TOOL"
printf '%s' "$RECIPE" >"$STAMPS/$TOOL"
printf '%-24s built in %s (%s)\n' "$TOOL" "$(fmt_secs $((SECONDS - start)))" "$(du -h "$BIN/$TOOL" | cut -f1)"
