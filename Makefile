# flowbuilder — the two commands of the quick start, and the benchmarks.
#   make run    set up .venv if needed, lint + compile the examples, then serve the web app on a
#               demo population at http://127.0.0.1:8000 (it prints a login)
#   make test   set up .venv if needed, then ruff, mypy and the whole pytest suite
#   make bench  every benchmark, printed as a table of ratios

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml setup.py dsl/_fused.c | cksum | cut -d' ' -f1)

.PHONY: run test bench lint-examples clean

$(STAMP): pyproject.toml setup.py dsl/_fused.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "flowbuilder needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/flowbuilder report examples/acme
	$(BIN)/flowbuilder serve --demo

test: $(STAMP)
	scripts/system-packages
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --no-cache --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
