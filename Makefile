# Doppelganger Studio. `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all help venv sysdeps demo test test-fast lint fmt config-table protos check-protos up clean bench bench-check load deploy-check fuzz secrets

all: test

## help: this list of targets
help:
	@awk '/^## [A-Za-z_-]+:/ { line = $$0; sub(/^## /, "", line); n = index(line, ":"); \
		printf "  %-14s %s\n", substr(line, 1, n - 1), substr(line, n + 2); next } \
		/^## / { line = $$0; sub(/^## /, "", line); printf "  %-14s %s\n", "", line }' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
		|| $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

## venv: the virtualenv (.venv) with the pinned requirements, reinstalled when they change
venv: $(STAMP)

## sysdeps: Debian packages some tests drive (installed only when missing; see the script)
sysdeps:
	scripts/system_deps.sh

## demo: start the stack, write an episode into out/, print its paths, trace id and health, stop
demo: venv
	$(BIN)/doppel demo --out out

## test: every test (unit, integration, end to end)
test: venv sysdeps
	$(BIN)/python -m pytest

## test-fast: the unit tests but those marked slow, in under a minute (the edit-test loop)
test-fast: venv
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

## lint: ruff, module size (800 lines), declared dependencies, import layering and cycles
## (lint-imports; contracts in pyproject.toml), the README's configuration table, mypy, the
## generated stubs against protos/, and the library's models against its migrations
lint: venv check-protos
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_module_size.py
	$(BIN)/python scripts/check_dependencies.py
	$(BIN)/lint-imports
	$(BIN)/python -m shared.config.table --check
	$(BIN)/mypy shared services bench testkit doppel scripts tests
	$(BIN)/python -m services.script.library check

## fmt: format the code and apply ruff's safe fixes (then `make lint` should pass)
fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## config-table: rewrite the README's configuration table from the settings' declarations
config-table: venv
	$(BIN)/python -m shared.config.table

## protos: regenerate shared/gen from protos/
protos: venv
	PYTHON=$(BIN)/python scripts/gen_protos.sh shared/gen

## check-protos: fail when shared/gen is not what protos/ generate
check-protos: venv
	PYTHON=$(BIN)/python scripts/check_protos.sh

## bench: benchmarks on the real stack; results, charts and a summary in bench/results/
bench: venv
	$(BIN)/doppel bench

## bench-check: benchmarks compared with bench/baseline.json by ratios; exits 1 on a regression
bench-check: venv
	$(BIN)/doppel bench --check

## load: steady, ramp, spike and soak load against a real stack; finds the breaking point
load: venv
	$(BIN)/doppel load $(if $(FAULTS),--faults $(FAULTS)) $(LOAD_ARGS)

## fuzz: every RPC fuzzed with 10,000 generated requests (make test runs 100 each)
fuzz: venv
	DOPPEL_FUZZ_EXAMPLES=$${DOPPEL_FUZZ_EXAMPLES:-10000} $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/integration/test_fuzz_rpcs.py

## deploy-check: validate Dockerfile, compose, Kubernetes, collector, Prometheus and Grafana configs
deploy-check: venv sysdeps
	$(BIN)/python -m pytest -q tests/deploy

## secrets: tokens and passwords for docker compose into .secrets/ and .env (never committed;
## FORCE=1 replaces existing ones). Kubernetes: docs/deploy.md
secrets: venv
	$(BIN)/python -m doppel.local_tokens compose $(if $(FORCE),--force)

## up: run the whole stack in the foreground (Ctrl-C stops it)
up: venv
	$(BIN)/doppel up

## clean: remove the virtualenv, out/ and tool caches
clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
