# mlgate: `make run` serves on the embedded broker; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PROTOS := $(wildcard protos/mlgate/v1/*.proto) $(wildcard protos/mlgate/oip/*.proto)
CONTRACT := protos/v1-release.binpb
# The client distribution (clients/pyproject.toml) ships the generated code beside mlgate_client.
GEN_DIR := clients
GEN := $(GEN_DIR)/mlgate/v1/__init__.py
PORT ?= 50051
HOST ?= 127.0.0.1
DATA_DIR ?= data
PYTEST_ARGS ?=

.PHONY: help install gen tables run lint release-contract typecheck test test-fast services bench clean
.DEFAULT_GOAL := help

# `make` alone lists every target with the text after its `##`.
help: ## list these targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "make %-17s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# Two editable installs: the client distribution (clients/) and the product that depends on it.
# An editable install maps the packages that exist when it runs: the generated ones must exist
# (empty until `make gen`) or processes started elsewhere cannot import them.
$(STAMP): pyproject.toml clients/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	mkdir -p $(GEN_DIR)/mlgate/v1 $(GEN_DIR)/mlgate/oip
	touch $(GEN_DIR)/mlgate/v1/__init__.py $(GEN_DIR)/mlgate/oip/__init__.py
	$(BIN)/python -m pip install --quiet -e ./clients -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP) ## create .venv and install mlgate with its dev tools

# Generated code is built, not committed: protos/ is the single source of truth. Each proto file
# lands in the Python module of the same path (mlgate/v1/jobs.proto: mlgate.v1.jobs_pb2); the
# Open Inference Protocol keeps its wire package, inference, in mlgate/oip/. (mlgate/v1 and
# inference/ at the top are where earlier versions generated it: removed so they cannot shadow it.)
$(GEN): $(STAMP) $(PROTOS)
	rm -rf $(GEN_DIR)/mlgate mlgate/v1 inference
	mkdir -p $(GEN_DIR)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) --mypy_out=$(GEN_DIR) \
	  --mypy_grpc_out=$(GEN_DIR) $(PROTOS)
	touch $(GEN_DIR)/mlgate/oip/__init__.py $(GEN_DIR)/mlgate/oip/py.typed $(GEN_DIR)/mlgate/v1/py.typed
	touch $@

gen: $(GEN) ## generate the gRPC code (clients/mlgate/v1, clients/mlgate/oip) from protos/

# What the gateway knows of scikit-learn without importing it (tests/unit/test_tables.py holds
# the committed files equal to a fresh run): renew after upgrading scikit-learn.
tables: gen ## regenerate mlgate's scikit-learn tables (after upgrading scikit-learn)
	$(BIN)/python -m workers.tables

# A port that answers is taken: said here in make's terms (PORT=), not mlgate's (--port).
run: gen ## serve a gateway and workers on the embedded broker (PORT=50051 HOST=127.0.0.1 DATA_DIR=data)
	@if (exec 3<>/dev/tcp/$(HOST)/$(PORT)) 2>/dev/null; then \
	  echo "make run: port $(PORT) is in use; stop what listens there, or choose another port: make run PORT=$$(( $(PORT) + 1 ))" >&2; \
	  exit 1; \
	fi
	$(BIN)/mlgate serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: gen ## ruff, ruff format --check, buf lint and buf breaking
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd protos && ../$(BIN)/buf lint
	cd protos && ../$(BIN)/buf breaking --against ../$(CONTRACT)

# The released contract `buf breaking` holds protos/ to. Rebuild it only when cutting a release.
release-contract: install ## rebuild the released contract buf breaking checks against (at a release)
	cd protos && ../$(BIN)/buf build --exclude-source-info -o ../$(CONTRACT)

typecheck: gen ## mypy --strict
	$(BIN)/mypy

services: ## install and start RabbitMQ, Redis and PostgreSQL on loopback if they are not running
	bash scripts/ensure-services.sh

test: gen lint typecheck services ## lint, types, then the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: gen ## the test suite without the slow fault-injection tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: gen services ## measure predict latency and throughput, training rate, watcher fan-out and job stores
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.drift
	$(BIN)/python -m bench.shadow
	$(BIN)/python -m bench.scoring

clean: ## remove .venv (and the bench's .venv-mlserver), the generated code and tool caches
	rm -rf $(VENV) .venv-mlserver $(GEN_DIR)/mlgate mlgate/v1 inference .mypy_cache .ruff_cache .pytest_cache
