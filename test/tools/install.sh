#!/usr/bin/env bash
# install.sh builds the real components Gantry's integration and e2e tests
# run, once, into a bin directory (`make tools` passes <repo root>/bin):
#
#   prometheus, promtool       Prometheus 3.16.0 (module v0.316.0, -tags remove_all_sd)
#   etcd, kube-apiserver,      Kubernetes v1.37.2, from the tools module in k8s/
#   kube-controller-manager,   (k8s.io/kubernetes cannot be `go install`ed: its
#   kubectl                    go.mod replaces the staging modules)
#   kwok                       sigs.k8s.io/kwok v0.8.0, plus its "fast" node and
#                              pod stages copied into kwok-stages/
#
# A tool is rebuilt only when its binary is missing or its stamp
# (<bin>/.stamps/<tool>) records a different recipe, so re-running is cheap.
# Everything comes from the Go module proxy; nothing needs a VCS.
#
# Usage: bash test/tools/install.sh <absolute bin dir>
set -euo pipefail

if [[ $# -ne 1 || $1 != /* ]]; then
	echo "usage: $0 <absolute bin dir>" >&2
	exit 2
fi
BIN=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STAMPS=$BIN/.stamps

PROM_MODULE=github.com/prometheus/prometheus
PROM_MODVERSION=v0.316.0
PROM_VERSION=3.16.0
K8S_VERSION=v1.37.2
KWOK_MODULE=sigs.k8s.io/kwok
KWOK_VERSION=v0.8.0

# No ",direct": a module the proxy refuses must fail here, not fall back to
# a VCS fetch that cannot work offline.
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

mkdir -p "$BIN" "$STAMPS"
# Two `make tools` at once would build the same binaries twice and race on
# the stamps; the second waits for the first and then finds everything done.
if command -v flock >/dev/null; then
	exec 9>"$BIN/.install.lock"
	flock 9
fi

TMP=$(mktemp -d "$BIN/.install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

GO_VERSION=$(go env GOVERSION)

# fmt_secs renders a number of seconds as 5m45s / 12s.
fmt_secs() {
	local s=$1
	if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# up_to_date TOOL RECIPE: the binary exists and was built by this recipe.
up_to_date() {
	[[ -x $BIN/$1 && -f $STAMPS/$1 && $(<"$STAMPS/$1") == "$2" ]]
}

# build TOOL RECIPE CMD...: runs CMD (which must leave the binary at
# $TMP/TOOL) unless TOOL is up to date, then moves it into place and writes
# the stamp. The move is atomic, so an interrupted build never leaves a
# half-written binary behind a valid stamp.
build() {
	local tool=$1 recipe=$2
	shift 2
	if up_to_date "$tool" "$recipe"; then
		printf '%-24s up to date\n' "$tool"
		return
	fi
	printf '%-24s building ...\n' "$tool"
	local start=$SECONDS
	rm -f "$STAMPS/$tool"
	"$@"
	mv -f "$TMP/$tool" "$BIN/$tool"
	printf '%s' "$recipe" >"$STAMPS/$tool"
	printf '%-24s built in %s (%s)\n' "$tool" "$(fmt_secs $((SECONDS - start)))" "$(du -h "$BIN/$tool" | cut -f1)"
}

# --- Prometheus --------------------------------------------------------------

# A plain build fails: one service-discovery dependency is not served by the
# proxy. Gantry only needs static targets, so leave every SD out.
PROM_LDFLAGS="-s -w -X github.com/prometheus/common/version.Version=$PROM_VERSION"
prom_install() {
	# `go install pkg@version` builds outside any module; it rejects -mod.
	GOFLAGS= GOBIN=$TMP go install -trimpath -tags remove_all_sd -ldflags "$PROM_LDFLAGS" \
		"$PROM_MODULE/cmd/$1@$PROM_MODVERSION"
}
for tool in prometheus promtool; do
	build "$tool" "$PROM_MODULE/cmd/$tool@$PROM_MODVERSION tags=remove_all_sd ldflags=$PROM_LDFLAGS $GO_VERSION" \
		prom_install "$tool"
done

# --- Kubernetes control plane -------------------------------------------------

# The same version variables Kubernetes' own hack/lib/version.sh sets, so the
# components and kubectl report v1.37.2 instead of v0.0.0-master.
K8S_MINOR=${K8S_VERSION#v1.}
K8S_MINOR=${K8S_MINOR%%.*}
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR -X $pkg.gitTreeState=clean"
done
# The tools module's go.mod and go.sum pin every dependency: hash them into
# the recipe so a bump there rebuilds.
K8S_MODSUM=$(cat "$HERE/k8s/go.mod" "$HERE/k8s/go.sum" | sha256sum | cut -c1-16)
k8s_build() {
	(cd "$HERE/k8s" && go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$TMP/$1" "$2")
}
while read -r tool pkg; do
	build "$tool" "$pkg k8s-module=$K8S_MODSUM ldflags=$K8S_LDFLAGS $GO_VERSION" k8s_build "$tool" "$pkg"
done <<EOF
etcd                    go.etcd.io/etcd/server/v3
kube-apiserver          k8s.io/kubernetes/cmd/kube-apiserver
kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
kubectl                 k8s.io/kubernetes/cmd/kubectl
EOF

# --- kwok ---------------------------------------------------------------------

KWOK_LDFLAGS="-s -w"
kwok_install() {
	GOFLAGS= GOBIN=$TMP go install -trimpath -ldflags "$KWOK_LDFLAGS" "$KWOK_MODULE/cmd/kwok@$KWOK_VERSION"
}
build kwok "$KWOK_MODULE/cmd/kwok@$KWOK_VERSION ldflags=$KWOK_LDFLAGS $GO_VERSION" kwok_install

# kwok simulates nothing without stages; the module ships the "fast" ones
# (nodes Ready at once, pods Running and Ready at once). Copy them out of the
# module cache rather than committing a copy. kustomization.yaml is not a
# stage, so it stays behind.
STAGES=$BIN/kwok-stages
STAGES_RECIPE="$KWOK_MODULE@$KWOK_VERSION kustomize/stage/{node,pod}/fast"
if [[ -d $STAGES && -f $STAMPS/kwok-stages && $(<"$STAMPS/kwok-stages") == "$STAGES_RECIPE" ]]; then
	printf '%-24s up to date\n' kwok-stages
else
	start=$SECONDS
	# Outside any module (the bin dir usually sits inside the repo).
	dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS= GOWORK=off go mod download -json "$KWOK_MODULE@$KWOK_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	if [[ -z $dir || ! -d $dir/kustomize/stage ]]; then
		echo "kwok-stages: could not locate $KWOK_MODULE@$KWOK_VERSION in the module cache" >&2
		exit 1
	fi
	rm -rf "$STAGES" "$STAMPS/kwok-stages"
	mkdir -p "$TMP/kwok-stages"
	for kind in node pod; do
		for f in "$dir/kustomize/stage/$kind/fast/"*.yaml; do
			[[ $(basename "$f") == kustomization.yaml ]] && continue
			# Module cache files are read-only; the copies need not be.
			install -m 0644 "$f" "$TMP/kwok-stages/"
		done
	done
	mv "$TMP/kwok-stages" "$STAGES"
	printf '%s' "$STAGES_RECIPE" >"$STAMPS/kwok-stages"
	printf '%-24s copied in %s (%s)\n' kwok-stages "$(fmt_secs $((SECONDS - start)))" "$(cd "$STAGES" && echo *.yaml)"
fi
