#!/usr/bin/env bash
# install-metrics-server.sh prepares what the kubelet-metrics tests run
# against kwok's simulated kubelets (test/cluster Options.KubeletMetrics),
# in a bin directory (`make tools` passes <repo root>/bin):
#
#   kwok-metrics/     kwok v0.8.0's CRDs (kustomize/crd/bases), its Metric
#                     for kubelet-style /metrics/resource and its
#                     ClusterResourceUsage reading usage from pod
#                     annotations, copied out of the module cache
#   metrics-server    sigs.k8s.io/metrics-server v0.9.0, the baseline the
#                     kubelet collector is measured and checked against
#
# Each is redone only when missing or when its stamp (<bin>/.stamps/<name>)
# records a different recipe, so re-running is cheap. A cold metrics-server
# build takes about two minutes on 2 cores.
#
# Usage: bash test/tools/install-metrics-server.sh <absolute bin dir>
set -euo pipefail

if [[ $# -ne 1 || $1 != /* ]]; then
	echo "usage: $0 <absolute bin dir>" >&2
	exit 2
fi
BIN=$1
STAMPS=$BIN/.stamps
TOOL=metrics-server
MODULE=sigs.k8s.io/metrics-server
VERSION=v0.9.0
PKG=$MODULE/cmd/metrics-server
KWOK_MODULE=sigs.k8s.io/kwok
KWOK_VERSION=v0.8.0

# No ",direct": a module the proxy refuses must fail here, not fall back to
# a VCS fetch that cannot work offline.
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
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

TMP=$(mktemp -d "$BIN/.install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --- kwok's metrics configuration --------------------------------------------

# Copied out of the module cache rather than committed: the files are
# kwok's, and its version is pinned here and in install.sh.
METRICS=$BIN/kwok-metrics
METRICS_RECIPE="$KWOK_MODULE@$KWOK_VERSION kustomize/crd/bases kustomize/metrics/resource/metrics-resource.yaml kustomize/metrics/usage/usage-from-annotation.yaml"
if [[ -d $METRICS && -f $STAMPS/kwok-metrics && $(<"$STAMPS/kwok-metrics") == "$METRICS_RECIPE" ]]; then
	printf '%-24s up to date\n' kwok-metrics
else
	start=$SECONDS
	# Outside any module (the bin dir usually sits inside the repo).
	dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS= GOWORK=off go mod download -json "$KWOK_MODULE@$KWOK_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	if [[ -z $dir || ! -d $dir/kustomize/crd/bases ]]; then
		echo "kwok-metrics: could not locate $KWOK_MODULE@$KWOK_VERSION in the module cache" >&2
		exit 1
	fi
	rm -rf "$METRICS" "$STAMPS/kwok-metrics"
	mkdir -p "$TMP/kwok-metrics/crd"
	# Module cache files are read-only; the copies need not be.
	install -m 0644 "$dir"/kustomize/crd/bases/*.yaml "$TMP/kwok-metrics/crd/"
	install -m 0644 "$dir/kustomize/metrics/resource/metrics-resource.yaml" \
		"$dir/kustomize/metrics/usage/usage-from-annotation.yaml" "$TMP/kwok-metrics/"
	mv "$TMP/kwok-metrics" "$METRICS"
	printf '%s' "$METRICS_RECIPE" >"$STAMPS/kwok-metrics"
	printf '%-24s copied in %s\n' kwok-metrics "$(fmt_secs $((SECONDS - start)))"
fi

# --- metrics-server -----------------------------------------------------------

# The version metrics-server reports (its /version and log) comes from
# component-base, as for the Kubernetes components.
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitTreeState=clean"
RECIPE="$PKG@$VERSION ldflags=$LDFLAGS $(go env GOVERSION)"
if [[ -x $BIN/$TOOL && -f $STAMPS/$TOOL && $(<"$STAMPS/$TOOL") == "$RECIPE" ]]; then
	printf '%-24s up to date\n' "$TOOL"
	exit 0
fi

printf '%-24s building %s ...\n' "$TOOL" "$VERSION"
start=$SECONDS
rm -f "$STAMPS/$TOOL"
# `go install pkg@version` builds outside any module; it rejects -mod.
GOFLAGS= GOBIN=$TMP go install -trimpath -ldflags "$LDFLAGS" "$PKG@$VERSION"
# Atomic move, so an interrupted build never leaves a half-written binary
# behind a valid stamp.
mv -f "$TMP/$TOOL" "$BIN/$TOOL"
printf '%s' "$RECIPE" >"$STAMPS/$TOOL"
printf '%-24s built in %s (%s)\n' "$TOOL" "$(fmt_secs $((SECONDS - start)))" "$(du -h "$BIN/$TOOL" | cut -f1)"
