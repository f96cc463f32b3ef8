# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-services test lint typecheck unit lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## run: migrate, seed the demo, and serve everything on http://127.0.0.1:8000
run: $(STAMP)
	$(BIN)/jisr run

## run-services: the production topology as processes here (this machine's PostgreSQL and
## Redis, two Orthancs, coturn, each service on its own port, worker, beat, nginx on :8080)
run-services: $(STAMP)
	$(BIN)/jisr run-services $(RUN_SERVICES_ARGS)

## test: lint, type-check, and the whole suite
test: $(STAMP) lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check shared services jisr tests migrations bench
	$(BIN)/ruff format --check shared services jisr tests migrations bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

## lock: re-resolve requirements.lock after changing pyproject.toml
lock:
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
