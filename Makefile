# Two commands do everything on a fresh clone: `make demo` and `make test`.
# Both create the virtualenv and install the project on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test lint bench chaos broker-start broker-stop clean tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP)

# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus rules.
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	      || echo "warning: could not install promtool; its tests will be skipped"; \
	  else echo "warning: promtool missing (apt-get install prometheus); its tests will be skipped"; fi; }

## The whole hub on the local broker and the embedded store, then stops everything.
demo: setup
	$(BIN)/veille demo

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

## Single faults under load (kill -9 router/sink, broker restarts), 5 times each: recovery
## times and data checks (not part of the tests; about 10 minutes).
chaos: setup
	$(BIN)/python -m benchmarks.chaos

broker-start: setup
	$(BIN)/veille broker start
broker-stop: setup
	$(BIN)/veille broker stop

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
