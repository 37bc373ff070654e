# Gantry — build, test and run the local demo.
#
#   make unit   the fast tier: tests that need no built tool, with -race
#   make test   unit tier, then integration (real Prometheus) and e2e (real control plane) tests
#   make demo   a local cluster + Prometheus + Gantry with an HPA that scales
#
# Real components the tests need are built once into bin/ (ignored) by `make tools`.

SHELL        := /bin/bash
GO           ?= go
BIN          := $(CURDIR)/bin
GANTRY       := $(BIN)/gantry
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export GOPROXY ?= https://proxy.golang.org
export GOFLAGS ?= -mod=mod
export GANTRY_BIN_DIR := $(BIN)

.PHONY: all build test unit lint tools image demo clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(GANTRY) ./cmd/gantry
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN)/kubectl-gantry ./cmd/kubectl-gantry

tools:
	@bash test/tools/install.sh $(BIN)
	@bash test/tools/install-alertmanager.sh $(BIN)
	@bash test/tools/install-helm.sh $(BIN)
	@bash test/tools/install-metrics-server.sh $(BIN)
	@bash test/tools/install-kube-state-metrics.sh $(BIN)
	@bash test/tools/install-cadvisor.sh $(BIN)
	@bash test/tools/install-vpa.sh $(BIN)
	@bash test/tools/install-loki.sh $(BIN)
	@bash test/tools/install-thanos.sh $(BIN)
	@bash test/tools/install-cortex.sh $(BIN)
	@bash test/tools/install-podman.sh $(BIN)

# The unit tier: every test that needs no built tool, with the race detector,
# on a fresh clone (no bin/). Tests that run a real component skip under
# -short only (toolbin.Require); without -short a missing tool fails them.
unit:
	$(GO) test -short -race -count=1 ./...

# Everything: the unit tier with -race, then every test against the real
# components.
test: lint tools build
	$(GO) test -short -race -count=1 ./...
	$(GO) test -count=1 -timeout 60m ./...

lint:
	@out=$$(gofmt -l cmd adapter collectors dashboards deploy test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The OCI image without a Docker engine (deploy/image): linux/amd64 and
# linux/arm64 in an OCI layout (bin/image/oci), a docker-archive tarball and a
# CycloneDX SBOM per platform, and the index digest in bin/image/digest.
# Two builds of one commit give the same digest. With Docker instead:
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(VERSION) .
image:
	$(GO) run ./deploy/image/gantry-image build -version $(VERSION) -out $(BIN)/image

# Push the index `make image` wrote: make push IMAGE=ghcr.io/gantry-dev/gantry:v1.2.3
# (credentials from ~/.docker/config.json, as docker login writes them).
.PHONY: push
push:
	@if [ -z "$(IMAGE)" ]; then echo "usage: make push IMAGE=registry/name:tag (after make image)"; exit 2; fi
	$(GO) run ./deploy/image/gantry-image push -layout $(BIN)/image/oci $(IMAGE)

demo: tools build
	$(GO) run ./test/demo $(DEMO_ARGS)

# Benchmark on the local stack (test/bench): JSON per scenario, then a table.
# Not part of `make test`. Quick run: make bench BENCH_ARGS="-pods 100 -requests 50 -value-cache-ttl 5s"
# Thanos Query over two Prometheus replicas (overhead, then the failover of an HA
# set of two queriers; off unless asked, a second stack per TTL):
#   make bench BENCH_ARGS="-pods 1000 -requests 200 -value-cache-ttl 0 -thanos-pods 1000"
.PHONY: bench
bench: tools build
	$(GO) run ./test/bench $(BENCH_ARGS)

# Go benchmarks at BASE and in the working tree, compared with benchstat:
#   make bench-compare BASE=HEAD~1 PKG=./adapter/codec BENCH=Encode
.PHONY: bench-compare
bench-compare:
	@bash test/tools/bench-compare.sh

clean:
	rm -rf $(BIN)
