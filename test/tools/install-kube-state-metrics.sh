#!/usr/bin/env bash
# install-kube-state-metrics.sh builds kube-state-metrics, which the tests of
# collectors/kubestate run against the local cluster (test/ksm), into a bin
# directory (`make tools` passes <repo root>/bin):
#
#   kube-state-metrics   k8s.io/kube-state-metrics/v2, pinned by the tools
#                        module in kube-state-metrics/ (its k8s.io
#                        dependencies are v0.32: they stay out of Gantry's
#                        go.mod and of the Kubernetes tools module)
#
# `go install k8s.io/kube-state-metrics/v2@v2.16.0` is refused (a version-list
# lookup fails); building the main package from a tools module whose go.sum is
# committed works.
#
# It is rebuilt only when the binary is missing or its stamp
# (<bin>/.stamps/kube-state-metrics) records a different recipe, so
# re-running is cheap. A cold build takes one to two minutes on 2 cores.
#
# Usage: bash test/tools/install-kube-state-metrics.sh <absolute bin dir>
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tools_args "$@"
TOOL=kube-state-metrics
MODULE=k8s.io/kube-state-metrics/v2
PKG=$MODULE
MODDIR=$HERE/kube-state-metrics

tools_setup

# The version kube-state-metrics reports (`kube-state-metrics --version`, its
# User-Agent, kube_state_metrics_build_info) is the one go.mod pins; its
# Makefile sets it through prometheus/common's version package, as here.
VERSION=$(module_version "$TOOL" "$MODULE" "$MODDIR")
LDFLAGS="-s -w -X github.com/prometheus/common/version.Version=$VERSION"
MODSUM=$(module_sum "$MODDIR")
RECIPE="$PKG@$VERSION module=$MODSUM ldflags=$LDFLAGS $(go env GOVERSION)"

build_in_module "$TOOL" "$RECIPE" "$MODDIR" "$PKG" "$LDFLAGS" "$VERSION"
