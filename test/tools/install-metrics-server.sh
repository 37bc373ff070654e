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

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=metrics-server
MODULE=sigs.k8s.io/metrics-server
VERSION=v0.9.0
PKG=$MODULE/cmd/metrics-server
KWOK_MODULE=sigs.k8s.io/kwok
KWOK_VERSION=v0.8.0

# Both go commands below set GOFLAGS= themselves (they build outside any
# module), so tools_setup's -mod=mod does not reach them.
tools_setup
tools_tmp

# --- kwok's metrics configuration --------------------------------------------

# Copied out of the module cache rather than committed: the files are
# kwok's, and its version is pinned here and in install.sh.
METRICS=$BIN/kwok-metrics
METRICS_RECIPE="$KWOK_MODULE@$KWOK_VERSION kustomize/crd/bases kustomize/metrics/resource/metrics-resource.yaml kustomize/metrics/usage/usage-from-annotation.yaml"
if [[ -d $METRICS ]] && stamp_matches kwok-metrics "$METRICS_RECIPE"; then
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

# The version metrics-server reports (its /version and log): its own
# Makefile sets client-go's version variables.
LDFLAGS="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$VERSION -X k8s.io/client-go/pkg/version.gitTreeState=clean"
RECIPE="$PKG@$VERSION ldflags=$LDFLAGS $(go env GOVERSION)"
exit_if_up_to_date "$TOOL" "$RECIPE"

begin_build "$TOOL" "$VERSION"
# `go install pkg@version` builds outside any module; it rejects -mod.
GOFLAGS= GOBIN=$TMP go install -trimpath -ldflags "$LDFLAGS" "$PKG@$VERSION"
finish_build "$TOOL" "$RECIPE"
