# Two commands do everything on a fresh clone: `make demo` and `make test`.
# Both create the virtualenv and install the project on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

ASSETS := veille/web/vendor/VERSIONS

.PHONY: setup demo console test lint bench scale chaos broker-start broker-stop clean tools assets

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The web pages' libraries (Leaflet, uPlot; axe-core for the tests), pinned in web/package.json,
# installed with npm and shipped inside the package: the pages never reach a CDN.
$(ASSETS): web/package.json web/copy_assets.sh
	bash web/copy_assets.sh

assets: $(ASSETS)

setup: $(STAMP) $(ASSETS)

# Debian packages the tests drive: promtool and the Prometheus server (prometheus), and a real
# headless browser for the console and form tests (chromium, chromium-driver).
DEB_TOOLS := prometheus chromium chromium-driver fonts-dejavu-core
tools:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_TOOLS) >/dev/null) \
	      || echo "warning: could not install $(DEB_TOOLS); the tests needing them will be skipped"; \
	  else echo "warning: missing $(DEB_TOOLS) (apt-get install them); the tests needing them will be skipped"; fi; fi

## The whole hub on the local broker and the embedded store, then stops everything.
demo: setup
	$(BIN)/veille demo

## The demo, then the hub and its web console stay up (prints "console: <url>") until Ctrl-C.
console: setup
	$(BIN)/veille demo --keep-running

## Lint, type-check and the test suite (starts one real Kafka broker for the session).
test: setup tools
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

## Throughput and latency numbers (not part of the tests).
bench: setup
	$(BIN)/python -m benchmarks

## How cost grows with the territory: synthetic territories of 6, 350 and 35,000 municipalities
## (load, checks, router start and memory, routing/s, topics and ACLs, intake topics on a broker).
scale: setup
	$(BIN)/python -m benchmarks.scale

## Single faults under load (kill -9 router/sink, broker restarts), 5 times each: recovery
## times and data checks (not part of the tests; about 10 minutes).
chaos: setup
	$(BIN)/python -m benchmarks.chaos
	$(BIN)/python -m benchmarks.chaos_delivery

broker-start: setup
	$(BIN)/veille broker start
broker-stop: setup
	$(BIN)/veille broker stop

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache veille/web/vendor web/node_modules test-artifacts
