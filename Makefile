# Every target creates or reuses .venv and first installs into it what it needs, from the lock
# files in requirements/ (see "Installing" below).
# `make help` lists the targets; `make train-<project>` exists for every folder in projects/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROJECTS := $(notdir $(patsubst %/config.toml,%,$(wildcard projects/*/config.toml)))
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-dev install-backends lock serve test test-slow test-scaling mutation lint format bench docs screenshots clean list $(addprefix train-,$(PROJECTS)) \
	$(addprefix evaluate-,$(PROJECTS)) $(addprefix demo-,$(PROJECTS)) $(addprefix export-,$(PROJECTS)) \
	$(addprefix config-,$(PROJECTS))

help: ## List the targets
	@grep -hE '^[^#[:space:]].*:.*## ' $(MAKEFILE_LIST) \
		| sed -E 's/^\$$\(addprefix ([a-z]+)-,[^:]*: [a-z]+-%/\1-<project>/' \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-20s %s\n", $$1, $$2}'
	@echo "  <project> is one of: $(PROJECTS)"

# Installing. Every target installs what it needs into .venv, from the lock files in
# requirements/: each pins every distribution it brings, with its hashes, so every machine gets
# the same versions. runtime.txt is what running needs (train, evaluate, demo, serve); there is
# one file per extra of pyproject.toml (dev.txt: tests and linters, export.txt: the converters,
# jax.txt, torch.txt...), each with the runtime it goes with; tools.txt pins uv, pip and
# setuptools themselves; no-deps.txt the packages installed without their dependencies.
# `make lock` writes them from pyproject.toml, whose ranges stay for installing the package into
# an environment of one's own.
LOCK := requirements
UV := $(BIN)/uv
# pyproject.toml's optional-dependencies groups: `make lock` writes a lock file for each, so an
# extra added there needs only `make lock`, and `$(VENV)/.extra-NAME` installs it.
EXTRAS = $(shell $(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {}))')
# Where uv finds the CPU build of torch that the lock pins (requirements/constraints.in says why):
# a wheel folder pip is told of (PIP_FIND_LINKS or pip's find-links setting), else PyTorch's own
# page of CPU wheels. uv reads no pip configuration, hence the hand-over.
TORCH_WHEELS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),https://download.pytorch.org/whl/cpu/torch/)
TORCH_LINKS = $(addprefix --find-links ,$(TORCH_WHEELS))

# uv, pip and setuptools at their locked versions, by pip, the one installer a new venv has.
$(VENV)/.tools: $(LOCK)/tools.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)/tools.txt
	@touch $@

# Makes .venv exactly the lock: `uv pip sync` installs the listed files' distributions at their
# locked versions and hashes, removes whatever is not listed (a package that left the lock, or one
# installed by hand), and adds no dependency of its own accord, which keeps no-deps.txt's without
# theirs. The listed files are the runtime's and those of the extras named in $(VENV)/.extras,
# the ones some target has asked for so far. The project itself then goes in, editable.
define sync
	@extras=$$(sed 's|.*|$(LOCK)/&.txt|' $(VENV)/.extras); \
	links=; grep -qx torch $(VENV)/.extras && links="$(TORCH_LINKS)"; \
	echo "$(UV) pip sync $(LOCK)/tools.txt $(LOCK)/runtime.txt $(LOCK)/no-deps.txt" $$extras; \
	$(UV) pip sync --python $(BIN)/python --require-hashes $$links \
		$(LOCK)/tools.txt $(LOCK)/runtime.txt $(LOCK)/no-deps.txt $$extras
	$(UV) pip install --python $(BIN)/python --quiet --no-deps --no-build-isolation -e .
endef

# What running needs: the runtime alone, no test or export tools (2.1 GB on disk, TensorFlow 1.2 GB
# of it; the test and export tools add 0.26 GB).
$(STAMP): $(VENV)/.tools $(LOCK)/runtime.txt $(LOCK)/no-deps.txt pyproject.toml
	@$(PYTHON) $(LOCK)/fingerprint.py --check || true
	@echo "Setting up $(VENV) from the lock files in $(LOCK)/ (about 2 GB on disk, a minute or more the first time)..."
	@touch $(VENV)/.extras
	$(sync)
	@touch $@
	@echo "$(VENV) is ready."

# One extra of pyproject.toml on top of the runtime, from its lock file: $(VENV)/.extra-dev.
# Precious: a stamp is the record that its extra is in, never a leftover for make to delete.
.PRECIOUS: $(VENV)/.extra-%
$(VENV)/.extra-%: $(STAMP) $(LOCK)/%.txt
	@echo "Adding the $* extra to $(VENV) from $(LOCK)/$*.txt..."
	@grep -qx '$*' $(VENV)/.extras || echo '$*' >> $(VENV)/.extras
	$(sync)
	@touch $@

# What each kind of target needs beyond the runtime. The fast suite runs the export tests and
# MLflow's (the dev extra has its client), so testing brings the export extra too.
DEV := $(addprefix $(VENV)/.extra-,dev export)
EXPORT := $(VENV)/.extra-export
BACKENDS := $(addprefix $(VENV)/.extra-,jax torch)

install: $(STAMP) ## Create .venv with what running needs (every other target adds what it needs)

install-dev: $(DEV) ## Add the test, lint and export tools (make test does it)

# JAX and PyTorch for KERAS_BACKEND=jax|torch: the CPU builds the lock pins (about 1.5 GB).
install-backends: $(BACKENDS) ## Add JAX and PyTorch, Keras' other backends (KERAS_BACKEND=jax|torch)

# Any other extra by name: make install-mlflow.
install-%: $(VENV)/.extra-% ;

# Re-resolves every lock file from pyproject.toml, keeping each locked version its ranges still
# allow (ARGS=--upgrade takes the newest of everything). Each extra's file is resolved with
# all.txt, the resolution of every extra at once, as constraints, so that any mix of them agrees.
# Universal: one file serves Python 3.11 and newer on every platform, with markers where the
# versions differ; Linux x86-64 is the platform the project is tested on. The extras' files are
# written afresh, so that one of an extra no longer in pyproject.toml goes.
LOCK_COMPILE = $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(ARGS)
lock: $(VENV)/.tools ## Write the lock files in requirements/ from pyproject.toml (ARGS=--upgrade for the newest)
	$(LOCK_COMPILE) $(LOCK)/tools.in -o $(LOCK)/tools.txt
	rm -f $(filter-out $(addprefix $(LOCK)/,all.txt runtime.txt tools.txt no-deps.txt),$(wildcard $(LOCK)/*.txt))
	$(LOCK_COMPILE) $(TORCH_LINKS) -c $(LOCK)/constraints.in --all-extras pyproject.toml -o $(LOCK)/all.txt
	$(LOCK_COMPILE) $(TORCH_LINKS) -c $(LOCK)/all.txt pyproject.toml -o $(LOCK)/runtime.txt
	@for extra in $(EXTRAS); do echo "$(LOCK)/$$extra.txt"; \
		$(LOCK_COMPILE) $(TORCH_LINKS) -c $(LOCK)/all.txt --extra $$extra pyproject.toml -o $(LOCK)/$$extra.txt || exit 1; done
	$(LOCK_COMPILE) --no-deps $(LOCK)/no-deps.in -o $(LOCK)/no-deps.txt
	$(PYTHON) $(LOCK)/fingerprint.py > $(LOCK)/lock.sha256

list: $(STAMP) ## List the projects and their configs
	$(BIN)/python -m common list

$(addprefix config-,$(PROJECTS)): config-%: $(STAMP) ## Every config key of a project, its value and where it comes from: make config-mnist ARGS="--config projects/mnist/classic.toml"
	$(BIN)/python -m common config $* $(ARGS)

# COMMON_MAKE_TARGET tells the command line which target started it, so that a command it prints
# to run next (the --resume after Ctrl-C) reads `make train-mnist ARGS="..."`, which runs as
# printed, rather than `python -m common ...`, which needs .venv active (common/core/commands.py).
$(addprefix train-,$(PROJECTS)): train-%: $(STAMP) ## Train a project: make train-mnist ARGS="--set train.epochs=3"
	COMMON_MAKE_TARGET=$@ $(BIN)/python -m common train $* $(ARGS)

$(addprefix evaluate-,$(PROJECTS)): evaluate-%: $(STAMP) ## Score the promoted (else shipped) model on its test split: make evaluate-mnist ARGS="--set data.path=..."
	COMMON_MAKE_TARGET=$@ $(BIN)/python -m common evaluate $* $(ARGS)

$(addprefix export-,$(PROJECTS)): export-%: $(EXPORT) ## Export the promoted (else shipped) model, checked in its runtime: make export-mnist FORMAT=onnx
	COMMON_MAKE_TARGET=$@ $(BIN)/python -m common export $* --format $(or $(FORMAT),onnx) $(ARGS)

$(addprefix demo-,$(PROJECTS)): demo-%: $(STAMP) ## Open a project's interactive demo: make demo-mnist
	COMMON_MAKE_TARGET=$@ $(BIN)/python -m common demo $* $(ARGS)

# A project that is not in projects/ (make train-mnsit): one line naming the projects, and the
# closest name, instead of make's "No rule to make target". The command line's own line (`runs`,
# which reads and changes nothing) once .venv is installed; before that, make's, rather than
# installing 2 GB to answer a typo.
UNKNOWN_PROJECT = $(error $(or $(if $(wildcard $(STAMP)),$(shell $(BIN)/python -m common runs $* 2>&1 >/dev/null \
	| grep -m 1 '^error: unknown project')),error: unknown project '$*'; available projects: $(PROJECTS)) \
	(make $(1)-<project>))
train-%:
	$(call UNKNOWN_PROJECT,train)
evaluate-%:
	$(call UNKNOWN_PROJECT,evaluate)
export-%:
	$(call UNKNOWN_PROJECT,export)
demo-%:
	$(call UNKNOWN_PROJECT,demo)

serve: $(STAMP) ## Serve every model: web pages and HTTP API on http://127.0.0.1:8000/ (ARGS="--port 8001")
	$(BIN)/python -m common serve $(ARGS)

# The fast suite on TEST_WORKERS processes (pytest-xdist); TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2
test: $(DEV) ## Run the fast test suite (about 13 minutes on 2 cores: docs/testing.md)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(ARGS)

test-slow: $(DEV) ## Run the slow checks too (real data, longer trainings)
	$(BIN)/python -m pytest -q -m "slow or not (slow or scaling)" $(ARGS)

test-scaling: $(DEV) $(BACKENDS) ## Every project under TensorFlow, JAX and PyTorch; data-parallel and mixed precision
	$(BIN)/python -m pytest -q -m scaling $(ARGS)

mutation: $(DEV) ## Would the fast suite catch a one-line bug? A sample of mutants per module (docs/testing.md)
	$(BIN)/python -m tests.mutation $(ARGS)

lint: $(VENV)/.extra-dev ## Check formatting and lint with ruff, and types with mypy
	$(BIN)/ruff check common projects tests bench docs/tools docs/tutorials
	$(BIN)/ruff format --check common projects tests bench docs/tools docs/tutorials
	$(BIN)/mypy

format: $(VENV)/.extra-dev ## Format the code with ruff
	$(BIN)/ruff check --fix common projects tests bench docs/tools docs/tutorials
	$(BIN)/ruff format common projects tests bench docs/tools docs/tutorials

# Each benchmark runs even when one before it fails (e.g. its data is missing); the target fails at the end.
bench: $(DEV) ## Run the benchmarks and record them in bench/results/*.md (--write)
	@failed=""; for script in bench/*.py; do name=$$(basename $$script .py); [ $$name = __init__ ] && continue; \
		echo "== bench.$$name"; $(BIN)/python -m bench.$$name --write || failed="$$failed $$name"; done; \
		if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

# The tutorials run at every build: small (seconds of training each) unless TUTORIAL_SIZE=full.
# NO_MKDOCS_2_WARNING: Material for MkDocs prints a notice about its successor at every build.
TUTORIAL_SIZE ?= small
docs: $(VENV)/.extra-docs ## Build the documentation site into site/ (strict), running the tutorials (TUTORIAL_SIZE=full: longer trainings)
	TUTORIAL_SIZE=$(TUTORIAL_SIZE) NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "The site is in site/: open site/index.html, or serve it: $(BIN)/python -m http.server -d site"

# The pictures of docs/serving.md are taken by the browser tests, with the shipped models.
screenshots: $(DEV) ## Retake docs/screenshots/ from the web app in a headless Chromium (apt-get install chromium)
	@$(BIN)/python -c "from tests.browser import find_chromium; import sys; sys.exit(find_chromium() is None)" \
		|| { echo "make screenshots needs Chromium: apt-get install chromium"; exit 2; }
	SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -n 0 tests/test_serve_browser.py

clean: ## Remove .venv, caches and the built site (keeps models/ and data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache site
