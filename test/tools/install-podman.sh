#!/usr/bin/env bash
# install-podman.sh makes podman available to the image e2e test
# (test/e2e/image_test.go), which loads the image `make image` builds and
# runs Gantry from it.
#
# podman and runc come from Debian (apt), installed when missing. crun, the
# package's default runtime, fails on these machines (setrlimit
# RLIMIT_NOFILE: Operation not permitted, then "cgroups in hybrid mode not
# supported"), so this writes <bin dir>/containers.conf selecting runc with
# fixed ulimits; the test passes it to podman through CONTAINERS_CONF. A
# wrapper <bin dir>/podman sets CONTAINERS_CONF and runs /usr/bin/podman, so
# toolbin finds it like any other tool. Re-running is cheap: an installed
# podman and an up-to-date stamp are left alone.
#
# Usage: bash test/tools/install-podman.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
PODMAN=/usr/bin/podman
RUNC=/usr/bin/runc
CONF=$BIN/containers.conf
WRAPPER=$BIN/podman
start=$SECONDS

conf() {
	cat <<CONF
# Written by test/tools/install-podman.sh: crun fails here, runc works.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
}

wrapper() {
	cat <<WRAPPER
#!/bin/sh
# Written by test/tools/install-podman.sh: Debian's podman with runc.
CONTAINERS_CONF=\${CONTAINERS_CONF:-$CONF}
export CONTAINERS_CONF
exec $PODMAN "\$@"
WRAPPER
}

mkdir -p "$BIN/.stamps"
recipe=$( { conf; wrapper; } | sha256sum | cut -c1-16)
if [[ -x $PODMAN && -x $RUNC && -x $WRAPPER && -f $CONF && $(cat "$BIN/.stamps/podman" 2>/dev/null) == "$recipe" ]]; then
	printf '%-24s up to date\n' podman
	exit 0
fi

if [[ ! -x $PODMAN || ! -x $RUNC ]]; then
	printf '%-24s installing Debian packages podman, runc ...\n' podman
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			echo "podman: not root and no sudo: install podman and runc yourself" >&2
			exit 1
		fi
		sudo=(sudo)
	fi
	apt_install() {
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc >/dev/null
	}
	# The package lists may be missing or stale on a fresh machine.
	if ! apt_install; then
		"${sudo[@]}" apt-get update -q >/dev/null
		apt_install
	fi
	for f in "$PODMAN" "$RUNC"; do
		if [[ ! -x $f ]]; then
			echo "podman: packages installed but $f is missing" >&2
			exit 1
		fi
	done
fi

conf >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
wrapper >"$WRAPPER.tmp" && chmod 0755 "$WRAPPER.tmp" && mv "$WRAPPER.tmp" "$WRAPPER"
printf '%s\n' "$recipe" >"$BIN/.stamps/podman"
printf '%-24s ready in %s (%s)\n' podman "$(fmt_secs $((SECONDS - start)))" \
	"$("$WRAPPER" --version 2>&1 | head -n1)"
