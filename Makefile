# Two commands do all set-up on a fresh machine:
#   make serve   – virtualenv + install, then run the embedded default on http://127.0.0.1:8080
#   make test    – virtualenv + install (+ chromium, wrk, nginx from Debian), then every test
#   make bench   – the proxy benchmark against Envoy, nginx and configurable-http-proxy
#   make soak    – reliability figures: 10 min of mixed traffic from 200 clients, a 60 s
#                  Kubernetes API outage, restarts with 1,000 routes (loopback only; e.g.
#                  SOAK_ARGS="--minutes 2 --outage-seconds 20" for a short run)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench soak clean debs cluster peers
DEBS := chromium wrk nginx-light golang-go bubblewrap

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The Gen3 SDK in its own virtualenv, as a workspace would have it: its pins (jsonschema <= 4.23
# through dictionaryutils) fight moto's and Jupyter's in one resolver for over 15 minutes.
GEN3_SDK := $(VENV)/gen3-sdk/bin/python
$(GEN3_SDK): | $(PY)
	$(PY) -m venv $(VENV)/gen3-sdk
	$(GEN3_SDK) -m pip install -q 'gen3>=4.25'

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Run as root, hatchway keeps local users apart with bubblewrap: serve installs it too.
serve: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory debs DEBS=bubblewrap || \
	  echo "bubblewrap could not be installed: workspaces run with uid isolation only"; fi
	$(VENV)/bin/hatchway serve

# Debian packages the tests drive for real (the browser test, the benchmark harness's tests,
# and Go, which proves option ids and names against encoding/json itself).
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The tests' control plane (tests/cluster/): kube-apiserver from the k8s.io/kubernetes module at
# the release its go.mod pins, and etcd from the embed package of the release that one pins, built
# into .build/bin (ignored). Make rebuilds one only when its module's files change; Go's build
# cache (the default, shared by every checkout) makes even that a link. Go >= 1.26 is needed: the
# machine's /usr/local/go, not Debian's golang-go.
GO ?= go
CLUSTER_BIN := .build/bin
CLUSTER_BINS := $(CLUSTER_BIN)/kube-apiserver $(CLUSTER_BIN)/etcd
K8S_RELEASE = $(shell grep -oE 'k8s.io/kubernetes v[0-9.]+' tests/cluster/apiserver/go.mod | cut -d' ' -f2)
K8S_VERSION_PKG := k8s.io/component-base/version
GO_BUILD := GOFLAGS='-trimpath -mod=readonly -buildvcs=false' $(GO) build

K8S_VERSION_FLAGS = -X $(K8S_VERSION_PKG).gitVersion=$(K8S_RELEASE) \
	  -X $(K8S_VERSION_PKG).gitTreeState=clean \
	  -X $(K8S_VERSION_PKG).gitMajor=$(word 1,$(subst ., ,$(K8S_RELEASE:v%=%))) \
	  -X $(K8S_VERSION_PKG).gitMinor=$(word 2,$(subst ., ,$(K8S_RELEASE:v%=%)))

$(CLUSTER_BIN)/kube-apiserver: tests/cluster/apiserver/go.mod tests/cluster/apiserver/go.sum
	cd tests/cluster/apiserver && $(GO_BUILD) -ldflags "-s -w $(K8S_VERSION_FLAGS)" \
	  -o $(CURDIR)/$@ k8s.io/kubernetes/cmd/kube-apiserver

$(CLUSTER_BIN)/etcd: tests/cluster/etcd/go.mod tests/cluster/etcd/go.sum tests/cluster/etcd/main.go
	cd tests/cluster/etcd && $(GO_BUILD) -ldflags "-s -w" -o $(CURDIR)/$@ .

# kubectl, for the tests that run deploy/README.md's commands as written (tests/helm): the
# k8s.io/kubectl module's command at the kube-apiserver's release (tests/cluster/kubectl).
$(CLUSTER_BIN)/kubectl: tests/cluster/kubectl/go.mod tests/cluster/kubectl/go.sum tests/cluster/kubectl/main.go
	cd tests/cluster/kubectl && $(GO_BUILD) -ldflags "-s -w $(K8S_VERSION_FLAGS)" -o $(CURDIR)/$@ .

# The Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) from its Go module, for the
# chart's install test: fetched here, outside the test session's network namespace.
PROMETHEUS_OPERATOR := github.com/prometheus-operator/prometheus-operator@v0.94.0
CRDS := .build/crds
$(CRDS)/.fetched:
	mkdir -p $(CRDS)
	dir=$$($(GO) mod download -json $(PROMETHEUS_OPERATOR) | $(PYTHON) -c \
	  'import json, sys; d = json.load(sys.stdin); sys.exit(d["Error"]) if "Error" in d else print(d["Dir"])') && \
	for kind in servicemonitors prometheusrules; do \
	  cp $$dir/example/prometheus-operator-crd/monitoring.coreos.com_$$kind.yaml $(CRDS)/; done
	chmod u+w $(CRDS)/*.yaml && touch $@

cluster: $(CLUSTER_BINS) $(CLUSTER_BIN)/kubectl $(CRDS)/.fetched

# The benchmark peers that install themselves (configurable-http-proxy from npm), before pytest
# and as `make bench` would: the test session runs in a network namespace of its own
# (tests/cluster/podnetwork.py) that reaches no registry. A peer that cannot be had is said
# here and skipped by its test.
peers: $(STAMP)
	@$(PY) -c "from benchmarks.peers import ALL_PEERS; \
	  [print(f'benchmark peer {n}: {w}') for n, p in ALL_PEERS.items() if (w := p().prepare())]"

test: $(STAMP) $(GEN3_SDK) debs cluster peers
	$(VENV)/bin/ruff check proxy launcher tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

bench: $(STAMP) debs
	$(PY) -m benchmarks.run $(BENCH_ARGS)

soak: $(STAMP)
	$(PY) -m benchmarks.soak $(SOAK_ARGS)

# helm for the chart's tests (deploy/helm/hatchway): built from the helm.sh/helm/v4 module that
# tests/helm/tool/go.mod pins, into .build/bin (ignored). Rebuilt only when that go.mod changes;
# Go's module and build caches make a rebuild after `make clean` a link (cold: ~5 min on 2 cores).
HELM_GO ?= go
HELM := .build/bin/helm
HELM_RELEASE = $(shell grep -oE 'helm.sh/helm/v4 v[0-9.]+' tests/helm/tool/go.mod | cut -d' ' -f2)
$(HELM): tests/helm/tool/go.mod tests/helm/tool/go.sum
	cd tests/helm/tool && GOFLAGS='-trimpath -mod=readonly -buildvcs=false' $(HELM_GO) build \
	  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_RELEASE)" \
	  -o $(CURDIR)/$@ helm.sh/helm/v4/cmd/helm
.PHONY: helm
helm: $(HELM)
test: $(HELM)

lint: $(STAMP)
	$(VENV)/bin/ruff check proxy launcher tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache build .build *.egg-info
