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

if [[ $# -ne 1 || $1 != /* ]]; then
	echo "usage: $0 <absolute bin dir>" >&2
	exit 2
fi
BIN=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STAMPS=$BIN/.stamps
TOOL=loki
MODULE=github.com/grafana/loki/v3
PKG=$MODULE/cmd/loki
MODDIR=$HERE/loki

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

# The version Loki reports (`loki -version`, /loki/api/v1/status/buildinfo)
# is the one go.mod pins, without the leading v as Loki's releases print it;
# without it Loki reports an empty version.
VERSION=$(sed -n "s|^require $MODULE \(v[^ ]*\)\$|\1|p; s|^[[:space:]]*$MODULE \(v[^ ]*\)\$|\1|p" "$MODDIR/go.mod" | head -n1)
if [[ -z $VERSION ]]; then
	echo "$TOOL: no $MODULE requirement in $MODDIR/go.mod" >&2
	exit 1
fi
LDFLAGS="-s -w -X $MODULE/pkg/util/build.Version=${VERSION#v}"
# go.mod and go.sum pin every dependency: hash them into the recipe so a
# bump there rebuilds.
MODSUM=$(cat "$MODDIR/go.mod" "$MODDIR/go.sum" | sha256sum | cut -c1-16)
RECIPE="$PKG@$VERSION module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

if [[ -x $BIN/$TOOL && -f $STAMPS/$TOOL && $(<"$STAMPS/$TOOL") == "$RECIPE" ]]; then
	printf '%-24s up to date\n' "$TOOL"
	exit 0
fi

TMP=$(mktemp -d "$BIN/.install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

printf '%-24s building %s ...\n' "$TOOL" "$VERSION"
start=$SECONDS
rm -f "$STAMPS/$TOOL"
(cd "$MODDIR" && go build -trimpath -ldflags "$LDFLAGS" -o "$TMP/$TOOL" "$PKG")
# Atomic move, so an interrupted build never leaves a half-written binary
# behind a valid stamp.
mv -f "$TMP/$TOOL" "$BIN/$TOOL"
printf '%s' "$RECIPE" >"$STAMPS/$TOOL"
printf '%-24s built in %s (%s)\n' "$TOOL" "$(fmt_secs $((SECONDS - start)))" "$(du -h "$BIN/$TOOL" | cut -f1)"
