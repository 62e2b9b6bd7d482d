# mlgate: `make run` serves on the embedded broker; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PROTOS := $(wildcard protos/mlgate/v1/*.proto) $(wildcard protos/inference/*.proto)
CONTRACT := protos/v1-release.binpb
GEN := mlgate/v1/__init__.py
PORT ?= 50051
HOST ?= 127.0.0.1
DATA_DIR ?= data
PYTEST_ARGS ?=

.PHONY: help install gen tables run lint release-contract typecheck test test-fast services bench clean

help:
	@echo "make run      set up and serve mlgate on port $(PORT) (embedded broker)"
	@echo "make test     set up and run lint, types and the whole test suite"
	@echo "make bench    measure predict latency/throughput, training rate and watcher fan-out"

# The editable install maps the top-level packages that exist when it runs: the generated
# inference package must exist (empty until `make gen`) or processes started elsewhere cannot
# import it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	mkdir -p inference && touch inference/__init__.py
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Generated code is built, not committed: protos/ is the single source of truth. Each proto
# package lands in the Python package of the same path (mlgate.v1, inference).
$(GEN): $(STAMP) $(PROTOS)
	rm -rf mlgate/v1 inference/*
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)
	touch inference/__init__.py
	touch $@

gen: $(GEN)

# What the gateway knows of scikit-learn without importing it (tests/unit/test_tables.py holds
# the committed files equal to a fresh run): renew after upgrading scikit-learn.
tables: gen
	$(BIN)/python -m workers.tables

run: gen
	$(BIN)/mlgate serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: gen
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint
	cd protos && ../$(BIN)/buf breaking --against ../$(CONTRACT)

# The released contract `buf breaking` holds protos/ to. Rebuild it only when cutting a release.
release-contract: install
	cd protos && ../$(BIN)/buf build --exclude-source-info -o ../$(CONTRACT)

typecheck: gen
	$(BIN)/mypy

services:
	bash scripts/ensure-services.sh

test: gen lint typecheck services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: gen
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: gen services
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.fanout

clean:
	rm -rf $(VENV) mlgate/v1 inference .mypy_cache .ruff_cache .pytest_cache
