# MonCore: two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM_PYENV := 3.11.7:3.12.1:3.13.0

.PHONY: setup run test lint typecheck unit integration e2e infrastructure bench clean

# ---- setup (idempotent; reuses what is already there)
$(BIN)/.installed: pyproject.toml layers/moncore/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

infra/node_modules/.installed: infra/package.json
	npm --prefix infra install --no-audit --no-fund --loglevel=error
	touch $@

# aws-sam-cli pins its own boto3, so it lives in its own virtualenv (DESIGN.md section 9).
$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli==1.170.0
	touch $@

setup: $(BIN)/.installed infra/node_modules/.installed $(SAM_VENV)/.installed

# ---- the two commands
run: $(BIN)/.installed infra/node_modules/.installed
	$(BIN)/python -m infra.local_stack

test: setup lint typecheck
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

# ---- parts
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/python -m pytest tests/unit

integration: $(BIN)/.installed infra/node_modules/.installed
	$(BIN)/python -m pytest tests/integration

e2e: $(BIN)/.installed infra/node_modules/.installed
	$(BIN)/python -m pytest tests/e2e

infrastructure: setup
	$(BIN)/python -m pytest tests/infrastructure

bench: $(BIN)/.installed infra/node_modules/.installed
	$(BIN)/python -m bench

clean:
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache
