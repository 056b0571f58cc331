# Two commands on a fresh machine (Python 3.11+, pip, make, apt):
#   make demo   set up .venv and run the main job on its embedded defaults (a real swift run on the CPU)
#   make test   set up .venv and everything the tests need (ms-swift, a local Slurm), lint, type-check, test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: venv venv-dev venv-vlm demo test lint bench slurm-up slurm-down clean

# The dev extra alone (no torch, no ms-swift): enough for lint and the fast tests (-m "not swift and not slurm and
# not slow").
$(DEV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(STAMP): $(DEV_STAMP)
	@# the CPU build of torch first: ms-swift would otherwise pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[swift,dev]'
	touch $@

venv-dev: $(DEV_STAMP)

venv: $(STAMP)

# Qwen2.5-VL needs torchvision + qwen-vl-utils; PyPI's torchvision does not load beside the CPU torch 2.13 above,
# so the VLM tests run swift from its own venv (as teams may: `swift.bin` can point to any venv's swift).
VLM_VENV  := .venv-vlm
VLM_STAMP := $(VLM_VENV)/.installed
$(VLM_STAMP):
	$(PYTHON) -m venv $(VLM_VENV)
	$(VLM_VENV)/bin/pip install -q --upgrade pip
	$(VLM_VENV)/bin/pip install -q torch==2.14.1 torchvision==0.29.1
	$(VLM_VENV)/bin/pip install -q ms-swift==4.6.0 qwen-vl-utils==0.0.14
	touch $@

venv-vlm: $(VLM_STAMP)

demo: venv
	$(BIN)/python -m demo

lint: venv-dev
	$(BIN)/ruff check bot runner storage tests bench demo
	$(BIN)/ruff format --check bot runner storage tests bench demo
	$(BIN)/mypy

# Slurm daemons come up for the tests and go down after them, pass or fail.
test: venv venv-vlm lint
	bash scripts/slurm_up.sh up || [ "$$CI" != true ]
	bash scripts/browser_up.sh || [ "$$CI" != true ]
	$(BIN)/pytest -ra; rc=$$?; bash scripts/slurm_up.sh down; exit $$rc

bench: venv
	$(BIN)/python -m bench

slurm-up:
	bash scripts/slurm_up.sh up

slurm-down:
	bash scripts/slurm_up.sh down

clean:
	rm -rf $(VENV) $(VLM_VENV) .trainbot .trainbot-demo .cache .pytest_cache .mypy_cache .ruff_cache
