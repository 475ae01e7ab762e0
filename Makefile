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

.PHONY: serve test lint bench soak clean debs
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

test: $(STAMP) $(GEN3_SDK) debs
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
	rm -rf $(VENV) .pytest_cache build *.egg-info
