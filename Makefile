# Doppelganger Studio. `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv sysdeps demo test lint protos check-protos up clean bench bench-check load deploy-check fuzz secrets

all: test

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
		|| $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

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

## lint: ruff, mypy, a check that the generated stubs match protos/, and one that the library's
## models and migrations agree (alembic check on a temporary SQLite; no server needed)
lint: venv check-protos
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services bench testkit doppel tests
	$(BIN)/python -m services.script.library check

## protos: regenerate shared/gen from protos/
protos: venv
	PYTHON=$(BIN)/python scripts/gen_protos.sh shared/gen

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

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
