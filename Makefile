# The front door: `make test` and `make demo` work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Test processes (pytest-xdist); each starts its own Redis, Dovecot and moto. 0: one process.
TEST_WORKERS ?= 2

DURATION ?= 300

.PHONY: help venv system-deps lint test test-unit soak demo worker beat check clean

help:
	@echo "make demo    run the main job on embedded defaults (private Redis + Dovecot, local store)"
	@echo "make test    set up everything (venv, packages) and run lint + the whole test suite"
	@echo "make lint    ruff, mypy --strict, import-linter"
	@echo "make soak    chaos soak: random SIGKILLs of workers and polls (DURATION=300 seconds)"
	@echo "make worker  run a Celery worker for \$$INGEST_CONFIG"
	@echo "make beat    run Celery beat (the dispatcher) for \$$INGEST_CONFIG"
	@echo "make docs    regenerate README's config and CLI references"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

system-deps:
	@sh scripts/system-deps.sh
	@sh scripts/private-servers.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: system-deps venv lint
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

soak: system-deps venv
	INGEST_SOAK_SECONDS=$(DURATION) $(BIN)/pytest tests/faults/test_soak.py -s $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest -n $(TEST_WORKERS) tests/unit $(PYTEST_ARGS)

demo: system-deps venv
	$(BIN)/python -m harness.demo

worker: venv
	$(BIN)/ingest worker

beat: venv
	$(BIN)/ingest beat

check: venv
	$(BIN)/ingest check

# Benchmarks against the peers (issue 6): private Dovecot, Redis and moto S3 on free loopback
# ports; results in bench/out/ (BENCH_ARGS, e.g. --profile or --out DIR, are passed on).
.PHONY: bench bench-full
BENCH_ARGS ?=

bench: system-deps venv
	@sh scripts/bench-deps.sh
	$(BIN)/python -m bench.parse_speed
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-full: system-deps venv
	@sh scripts/bench-deps.sh
	$(BIN)/python -m bench.run --full $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache

# Pinned runtime dependencies of the container image (deploy/docker/constraints.txt): a clean
# venv with the project installed, frozen. Run after changing [project] dependencies.
.PHONY: constraints
constraints:
	rm -rf .constraints-venv && $(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install -q .
	{ sed -n '1,2p' deploy/docker/constraints.txt; \
	  .constraints-venv/bin/pip freeze --exclude-editable | grep -v '^ingest'; } > deploy/docker/constraints.new
	mv deploy/docker/constraints.new deploy/docker/constraints.txt && rm -rf .constraints-venv

# README's config reference (from the pydantic models) and CLI reference (from the --help
# texts), between their markers. Run after adding or changing a config key or a command.
.PHONY: docs
docs: venv
	$(BIN)/python scripts/config_reference.py
