# dockyard: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test test-postgres lint typecheck unit integration e2e bench clean

help:
	@echo "make demo   set up, start a server with embedded defaults, deploy and run an example"
	@echo "make test   install what the tests need and run lint, types and every test"
	@echo "            (database tests on SQLite and PostgreSQL, servers on SQLite)"
	@echo "make test-postgres   every test with every server on PostgreSQL"
	@echo "make bench  run the benchmarks in bench/ (figures go to docs/benchmarks.md)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dockyard needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet -p $(BIN)/python -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	examples/demo.sh

# the database tests (those taking `engine`: unit, integration, security) run on SQLite and on a
# throwaway PostgreSQL (tests/pg.py); servers started by tests use SQLite
test: $(STAMP)
	tests/setup_machine.sh
	$(MAKE) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

# the whole suite with every server (and every database test) on PostgreSQL
test-postgres: $(STAMP)
	tests/setup_machine.sh
	DOCKYARD_TEST_DB=postgresql $(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check dockyard tests bench
	$(BIN)/ruff format --check dockyard tests bench
	$(BIN)/lint-imports --no-cache --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .dockyard-demo .mypy_cache .ruff_cache dist build
