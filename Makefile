# newsflow — two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NEWSFLOW := $(VENV)/bin/newsflow
STAMP := $(VENV)/.installed
SHARED ?= ../shared
export NEWSFLOW_SHARED ?= $(abspath $(SHARED))
# Make's children must not inherit a developer's venv by accident.
unexport VIRTUAL_ENV

.PHONY: help setup run demo test test-unit test-integration lint eval bench bench-e2e chaos stack-up stack-down status kibana clean

help:
	@echo "make run    - set up, start the local Kafka + OpenSearch, run the pipeline on config/feeds.yaml"
	@echo "make demo   - the same pipeline on bundled sample feeds served locally, then a summary"
	@echo "make test   - set up and run the test suite (starts the local stack when needed)"
	@echo "make lint | eval | bench | chaos | kibana | stack-up | stack-down | status | clean"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "newsflow needs Python >= 3.11"' \
	  || { echo "newsflow: Python 3.11+ is required (set PYTHON=...)"; exit 1; }
	@echo "setup: creating $(VENV) and installing newsflow with its dependencies (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip && $(PY) -m pip install -e ".[dev]"; } > $(VENV)/install.log 2>&1 \
	  || { tail -25 $(VENV)/install.log; echo "setup: pip install failed (full log: $(VENV)/install.log)"; exit 1; }
	@echo "setup: done"
	@touch $(STAMP)

setup: $(STAMP)

stack-up: setup
	@$(NEWSFLOW) stack up

stack-down: setup
	@$(NEWSFLOW) stack down

status: setup
	@$(NEWSFLOW) status

run: stack-up
	@$(NEWSFLOW) run

demo: stack-up
	@$(NEWSFLOW) demo

test: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-integration: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests/integration

# Many rounds of SIGKILLs (worker, indexer, poller); prints lost / doubled counts per round.
chaos: stack-up
	@$(PY) -m pipeline.evaluation.chaos --rounds $${ROUNDS:-10}

lint: setup
	@$(VENV)/bin/ruff check pipeline tests
	@$(VENV)/bin/mypy pipeline
	@$(PY) -m pipeline.evaluation.layout

eval: setup
	@$(PY) -m pipeline.evaluation.clusters
	@$(PY) -m pipeline.evaluation.entities
	@$(PY) -m pipeline.evaluation.feeds_robustness

bench: setup
	@$(PY) -m pipeline.evaluation.bench_clustering
	@$(PY) -m pipeline.evaluation.bench_entities
	@$(PY) -m pipeline.evaluation.bench_indexer
	@$(PY) -m pipeline.evaluation.bench_poller
	@$(PY) -m pipeline.evaluation.bench_e2e

# poller -> Kafka -> worker(s) -> indexer -> OpenSearch on synthetic loopback feeds (WORKERS=2 for two workers).
bench-e2e: stack-up
	@$(PY) -m pipeline.evaluation.bench_e2e --workers $${WORKERS:-1}

kibana: setup
	@$(NEWSFLOW) kibana import

clean:
	-@test -x $(NEWSFLOW) && $(NEWSFLOW) stack down
	rm -rf .newsflow .pytest_cache .mypy_cache .ruff_cache
