#!/usr/bin/env bash
# bench-compare.sh runs Go benchmarks at a base revision and in the working
# tree, then prints the difference with benchstat (golang.org/x/perf), so a
# change's effect on speed and allocations is measured, not guessed:
#
#   make bench-compare BASE=HEAD~1 PKG=./adapter/codec BENCH=Encode
#
# BASE is checked out into a temporary git worktree (removed afterwards);
# COUNT runs of each benchmark (default 8) give benchstat its confidence
# intervals. Everything runs on this machine: compare on a quiet one.
set -euo pipefail

BASE=${BASE:?set BASE to the revision to compare against, e.g. BASE=HEAD~1}
PKG=${PKG:?set PKG to the package(s), e.g. PKG=./adapter/codec}
BENCH=${BENCH:-.}
COUNT=${COUNT:-8}
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

ROOT=$(git rev-parse --show-toplevel)
TMP=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$TMP/base" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT

git -C "$ROOT" worktree add --detach "$TMP/base" "$BASE" >/dev/null
run() { # dir out
	(cd "$1" && go test -run '^$' -bench "$BENCH" -benchmem -count "$COUNT" $PKG) | tee "$2" >&2
}
echo "== $BASE" >&2
run "$TMP/base" "$TMP/old.txt"
echo "== working tree" >&2
run "$ROOT" "$TMP/new.txt"
GOFLAGS= go run "$BENCHSTAT" "$TMP/old.txt" "$TMP/new.txt"
