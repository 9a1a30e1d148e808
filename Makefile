# The one entry point: `make run`, `make test`, `make lint`, `make bench`.
# Every target creates or refreshes the virtualenv itself, so a fresh machine with
# Python 3.11 and access to the package index is enough.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: all run test lint bench venv clean readme check-readme

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m jcm_sync demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check jcm_sync tests bench
	$(BIN)/ruff check jcm_sync tests bench
	$(BIN)/mypy --strict jcm_sync
	$(BIN)/lint-imports
	$(BIN)/python -m jcm_sync.cli.reference --check README.md

readme: $(STAMP)
	$(BIN)/python -m jcm_sync.cli.reference --write README.md

check-readme: $(STAMP)
	$(BIN)/python -m jcm_sync.cli.reference --check README.md

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info demo-data
