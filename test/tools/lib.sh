# lib.sh holds what the install-*.sh scripts share. It is sourced, not run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   tools_args "$@"      # BIN=<absolute bin dir>, STAMPS=$BIN/.stamps
#   tools_setup          # Go environment, bin and stamps dirs, the lock
#   ...compute RECIPE...
#   exit_if_up_to_date "$TOOL" "$RECIPE"
#   tools_tmp            # TMP, removed on exit
#   begin_build "$TOOL" "$VERSION"
#   ...build into $TMP/$TOOL...
#   finish_build "$TOOL" "$RECIPE"
#
# or, for a main package built from a tools module, in one step:
#
#   build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$VERSION"
#
# Functions exit the calling script on error (it runs with set -euo pipefail).

# The tools modules (helm/, loki/, ...) live beside this file.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# tools_args "$@": checks the script's only argument, an absolute bin dir,
# and sets BIN and STAMPS.
tools_args() {
	if [[ $# -ne 1 || $1 != /* ]]; then
		echo "usage: $0 <absolute bin dir>" >&2
		exit 2
	fi
	BIN=$1
	STAMPS=$BIN/.stamps
}

# tools_setup: exports the Go environment, creates the bin and stamps
# directories and takes the install lock.
tools_setup() {
	# No ",direct": a module the proxy refuses must fail here, not fall back
	# to a VCS fetch that cannot work offline.
	export GOPROXY=${GOPROXY:-https://proxy.golang.org}
	export GOFLAGS=-mod=mod
	export CGO_ENABLED=0

	mkdir -p "$BIN" "$STAMPS"
	# Shares install.sh's lock: two installers building at once on 2 cores
	# only slow each other down, and the stamps directory is common. The
	# descriptor stays open (and the lock held) until the script exits.
	if command -v flock >/dev/null; then
		exec 9>"$BIN/.install.lock"
		flock 9
	fi
}

# fmt_secs renders a number of seconds as 5m45s / 12s.
fmt_secs() {
	local s=$1
	if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# module_version TOOL MODULE MODDIR: prints the version of MODULE that the
# tools module in MODDIR requires.
module_version() {
	local tool=$1 module=$2 moddir=$3 version
	version=$(sed -n "s|^require $module \(v[^ ]*\)\$|\1|p; s|^[[:space:]]*$module \(v[^ ]*\)\$|\1|p" "$moddir/go.mod" | head -n1)
	if [[ -z $version ]]; then
		echo "$tool: no $module requirement in $moddir/go.mod" >&2
		exit 1
	fi
	printf '%s\n' "$version"
}

# module_sum MODDIR [FILE...]: a short hash of the tools module's go.mod and
# go.sum (which pin every dependency) and of any further FILEs, for the
# recipe, so a change to any of them rebuilds.
module_sum() {
	local moddir=$1
	shift
	cat "$moddir/go.mod" "$moddir/go.sum" "$@" | sha256sum | cut -c1-16
}

# stamp_matches NAME RECIPE: $STAMPS/NAME records exactly RECIPE.
stamp_matches() {
	[[ -f $STAMPS/$1 && $(<"$STAMPS/$1") == "$2" ]]
}

# exit_if_up_to_date TOOL RECIPE: when the binary exists and was built by
# this recipe, says so and ends the script.
exit_if_up_to_date() {
	if [[ -x $BIN/$1 ]] && stamp_matches "$1" "$2"; then
		printf '%-24s up to date\n' "$1"
		exit 0
	fi
}

# tools_tmp: sets TMP to a fresh directory in the bin dir (same file system,
# so moves out of it are atomic), removed when the script exits.
tools_tmp() {
	TMP=$(mktemp -d "$BIN/.install.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
}

# begin_build TOOL [VERSION]: announces the build, starts its clock and
# drops TOOL's stamp.
begin_build() {
	if [[ $# -ge 2 ]]; then
		printf '%-24s building %s ...\n' "$1" "$2"
	else
		printf '%-24s building ...\n' "$1"
	fi
	build_start=$SECONDS
	rm -f "$STAMPS/$1"
}

# finish_build TOOL RECIPE: moves $TMP/TOOL into the bin dir, writes its
# stamp and reports the time since begin_build. The move is atomic, so an
# interrupted build never leaves a half-written binary behind a valid stamp.
finish_build() {
	mv -f "$TMP/$1" "$BIN/$1"
	printf '%s' "$2" >"$STAMPS/$1"
	printf '%-24s built in %s (%s)\n' "$1" "$(fmt_secs $((SECONDS - build_start)))" "$(du -h "$BIN/$1" | cut -f1)"
}

# build_in_module TOOL RECIPE MODDIR PKG LDFLAGS [VERSION]: unless TOOL is up
# to date, builds the main package PKG from the tools module in MODDIR and
# installs it with its stamp.
build_in_module() {
	local tool=$1 recipe=$2 moddir=$3 pkg=$4 ldflags=$5
	shift 5
	exit_if_up_to_date "$tool" "$recipe"
	tools_tmp
	begin_build "$tool" "$@"
	(cd "$moddir" && go build -trimpath -ldflags "$ldflags" -o "$TMP/$tool" "$pkg")
	finish_build "$tool" "$recipe"
}
