# Two commands: `make run` starts the service on embedded defaults, `make test` runs the suite.
# Both create .venv and install the project on first use; nothing else to install by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help setup run test lint fmt unit bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its dev tools

# `make run` judges candidates with the shipped gate policy unless told otherwise; the
# code's own default is no policy, which blesses nothing.
run: export INSPECTOR_GATE_POLICY ?= $(CURDIR)/deploy/gate-policy.toml
run: $(STAMP)  ## start API, workers, beat, embedded Redis and a local store (Ctrl-C stops all)
	$(BIN)/inspector run

fmt: $(STAMP)  ## format the code and apply safe lint fixes
	$(BIN)/ruff format inspector workers storage tests bench
	$(BIN)/ruff check --fix inspector workers storage tests bench

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check inspector workers storage tests bench
	$(BIN)/mypy

test: $(STAMP) lint  ## lint, then the whole suite against real Redis, S3 and Celery workers
	$(BIN)/pytest

unit: $(STAMP)  ## only the fast tests (no worker processes, no whole service)
	$(BIN)/pytest -m "not integration and not e2e"

bench: $(STAMP)  ## upload benchmark (see BENCHMARKS.md)
	$(BIN)/python bench/ingest.py

clean:  ## remove the virtual environment and caches (keeps ./data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
