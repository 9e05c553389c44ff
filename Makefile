# stateful-conformance: `make e2e` runs the suite on a kind cluster it creates
# (and deletes); `make test` runs the project's own checks and unit tests.
# Settings (environment or make variables):
#   IMAGES=auto|source|upstream   where images come from (default auto)
#   KIND_CONFIG=kind-config.yaml  the kind cluster config
#   CLUSTER_NAME=stateful-conformance
#   KEEP_CLUSTER=true             keep the cluster `make e2e` created
#   SC_CACHE_DIR=...              build cache (default ~/.cache/stateful-conformance)

GO ?= go
IMAGES ?= auto
KIND_CONFIG ?= kind-config.yaml
CLUSTER_NAME ?= stateful-conformance
KEEP_CLUSTER ?= false
E2E_FLAGS ?=
LAB_DIR ?=
export IMAGES KIND_CONFIG CLUSTER_NAME KEEP_CLUSTER

TOOL := $(GO) run ./cmd/stateful-conformance
# The project's own programs that have a module of their own (their
# dependencies stay out of the suite's go.mod); their tests run there.
OWN_MODULES := images/mongo images/pacman

.PHONY: help test lint unit e2e mutation deps node-image cluster addons lab lab-down cluster-down kubeconfig probe-image clean-cache

help:
	@sed -n 's/^# \{0,1\}//p' Makefile | sed -n '1,9p'
	@echo "targets: test lint unit e2e mutation node-image cluster cluster-down kubeconfig probe-image"

## test: formatting, vet and unit tests (no cluster needed).
test: lint unit

lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	for m in $(OWN_MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

unit:
	$(GO) test -count=1 ./pkg/... ./cmd/... ./images/...
	for m in $(OWN_MODULES); do (cd $$m && $(GO) test -count=1 ./...) || exit 1; done

## e2e: the suite against a kind cluster (created, then deleted unless KEEP_CLUSTER=true).
# The kind-config path is relative to the checkout; go test runs in tests/.
e2e: deps
	$(GO) test -count=1 -v -timeout 60m ./tests -args --kind-config=$(abspath $(KIND_CONFIG)) $(E2E_FLAGS)

## mutation: the behaviour features against each broken lab of tests/testdata/broken
# (CASES="a b" for some; BASELINE=_artifacts/results.json reuses a run on the
# correct lab); the cluster is kept between cases and deleted at the end
# unless KEEP_CLUSTER=true.
CASES ?=
BASELINE ?=
mutation: deps
	@status=0; $(TOOL) mutation $(if $(BASELINE),-baseline=$(abspath $(BASELINE))) $(CASES) || status=$$?; \
	  if [ "$(KEEP_CLUSTER)" != true ]; then $(TOOL) cluster down; fi; exit $$status

## deps: what building from source needs beside Go and Docker (Debian packages).
deps:
	@missing=""; \
	  command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	  command -v cc >/dev/null || missing="$$missing gcc libc6-dev"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing$$missing"; \
	      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else \
	      echo "missing:$$missing (needed to build images from source): install them, or use IMAGES=upstream" >&2; \
	      [ "$(IMAGES)" = upstream ]; \
	    fi; \
	  fi

node-image: deps
	$(TOOL) node-image

probe-image:
	$(TOOL) image probe

cluster: deps
	$(TOOL) cluster up

## addons: install the lab's prerequisites (CSI hostpath storage) into the cluster.
addons: cluster
	$(TOOL) addons

## lab: deploy the pacman lab (manifests/lab, or LAB_DIR) and wait until it runs.
lab: addons
	$(TOOL) lab $(LAB_DIR)

lab-down:
	$(TOOL) lab-down $(LAB_DIR)

cluster-down:
	$(TOOL) cluster down

kubeconfig:
	@$(TOOL) cluster kubeconfig

clean-cache:
	rm -rf "$${SC_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/stateful-conformance}"
