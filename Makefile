# Two commands on a fresh machine (Python 3.11+, pip, make, apt):
#   make demo   set up .venv and run the main job on its embedded defaults (a real swift run on the CPU)
#   make test   set up .venv and everything the tests need (ms-swift, a local Slurm), lint, type-check, test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint bench slurm-up slurm-down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# the CPU build of torch first: ms-swift would otherwise pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[swift,dev]'
	touch $@

venv: $(STAMP)

demo: venv
	$(BIN)/trainbot demo

lint: venv
	$(BIN)/ruff check bot runner storage tests bench
	$(BIN)/mypy

# Slurm daemons come up for the tests and go down after them, pass or fail.
test: venv lint
	bash scripts/slurm_up.sh up || [ "$$CI" != true ]
	$(BIN)/pytest -ra; rc=$$?; bash scripts/slurm_up.sh down; exit $$rc

bench: venv
	$(BIN)/python -m bench

slurm-up:
	bash scripts/slurm_up.sh up

slurm-down:
	bash scripts/slurm_up.sh down

clean:
	rm -rf $(VENV) .trainbot .trainbot-demo .cache .pytest_cache .mypy_cache .ruff_cache
