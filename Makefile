# Two commands on a fresh clone: `make demo` and `make test`. Both run `setup` first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Thread hygiene on a 2-core machine: one BLAS/OpenMP thread per process unless told otherwise.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
DEMO_DIR ?= data/demo

LOCK := requirements.lock

.PHONY: setup lock demo test test-all lint bench bench-tools clean

setup: $(STAMP)

# Installs exactly the versions in requirements.lock (what CI tested), then the project itself.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
		|| { echo "error: the virtualenv must use Python 3.11 (set PYTHON=/path/to/python3.11 and run 'make clean setup')"; exit 2; }
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q -r $(LOCK) 2>&1 | grep -v "is ignored"; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored"; test $${PIPESTATUS[0]} -eq 0
	@touch $(STAMP)

# Re-resolves every dependency of pyproject.toml (train, serve, dev extras) to today's newest
# allowed versions and rewrites the lock; run `make test` before committing it.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv 2>&1 | grep -v "is ignored" || true
	$(BIN)/uv pip compile pyproject.toml --extra train --extra serve --extra dev \
		--python-version 3.11 -o $(LOCK)

demo: setup
	$(BIN)/recsys demo --out $(DEMO_DIR)

test: setup
	$(BIN)/python -m pytest -m "not slow" -q

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy engine feature_store training serving cli

bench: setup bench-tools
	$(BIN)/python -m pytest -m slow -q
	$(BIN)/python -m benchmarks

# The serving benchmark drives the real server with wrk (a C HTTP load generator, Debian package).
bench-tools:
	@command -v wrk >/dev/null || { \
		echo "installing wrk (apt-get) for the serving benchmark"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q wrk >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q wrk >/dev/null; }; }
	@command -v wrk >/dev/null || { echo "error: wrk is required by benchmarks/bench_serving.py: apt-get install wrk"; exit 2; }

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
