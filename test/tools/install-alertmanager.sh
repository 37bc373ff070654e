#!/usr/bin/env bash
# install-alertmanager.sh makes a real Alertmanager available to the e2e
# alert test (test/e2e/alerts_test.go) as <bin dir>/alertmanager.
#
# Alertmanager cannot be built from the Go module proxy (the module zip lacks
# its built UI), so this takes Debian's prometheus-alertmanager package,
# installing it when /usr/bin/prometheus-alertmanager is missing, and links
# the binary into the bin dir. The package's service is not started.
# Re-running is cheap: an existing binary and link are left alone.
#
# Usage: bash test/tools/install-alertmanager.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
AM=/usr/bin/prometheus-alertmanager
start=$SECONDS

mkdir -p "$BIN"
if [[ -x $AM && -L $BIN/alertmanager && $(readlink "$BIN/alertmanager") == "$AM" ]]; then
	printf '%-24s up to date\n' alertmanager
	exit 0
fi

if [[ ! -x $AM ]]; then
	printf '%-24s installing Debian package prometheus-alertmanager ...\n' alertmanager
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null; then
			echo "alertmanager: not root and no sudo: install prometheus-alertmanager yourself" >&2
			exit 1
		fi
		sudo=(sudo)
	fi
	apt_install() {
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus-alertmanager >/dev/null
	}
	# The package lists may be missing or stale on a fresh machine.
	if ! apt_install; then
		"${sudo[@]}" apt-get update -q >/dev/null
		apt_install
	fi
	if [[ ! -x $AM ]]; then
		echo "alertmanager: package installed but $AM is missing" >&2
		exit 1
	fi
fi

ln -sfn "$AM" "$BIN/alertmanager"
printf '%-24s ready in %s (%s)\n' alertmanager "$(fmt_secs $((SECONDS - start)))" \
	"$("$AM" --version 2>&1 | head -n1)"
