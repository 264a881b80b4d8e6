# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := $(CURDIR)/.demo

.PHONY: install test lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check lamin_integrations snakemake_logger_plugin_lamin tests benchmarks examples
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	rm -rf $(DEMO)
	LAMIN_INTEGRATIONS_DB=sqlite:///$(DEMO)/lineage.db LAMIN_INTEGRATIONS_STORAGE=$(DEMO)/storage DEMO_OUT=$(DEMO) \
		PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(DEMO) .pytest_cache .mypy_cache .ruff_cache
