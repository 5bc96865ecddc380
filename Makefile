# Every chore of this project is a target here; `make help` lists them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
SPEC   ?= examples/quickstart.yaml
OUT    ?= runs/quickstart

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

.PHONY: install
install: $(BIN)/python ## Create .venv and install the project with its dev tools, the ONNX export and both native builds
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,onnx]'
	@# The native N:M CPU kernel; without a compiler the product runs its pure-PyTorch path instead.
	-$(BIN)/python -m lbc_core.kernels build
	$(MAKE) --no-print-directory native

.PHONY: native
native: ## Build the fused LBC step (C++); without a compiler LBC keeps its plain PyTorch path
	$(BIN)/python -m lbc_core.sparsity.native.build --optional

.PHONY: serve
serve: install ## Install, then run the service in its embedded default (API + worker + reaper, state in .lbc/)
	$(BIN)/lbc serve

.PHONY: quickstart
quickstart: install ## Install, then learn 2:4 sparsity on the bundled digits set (SPEC=..., OUT=...)
	$(BIN)/lbc train $(SPEC) --out $(OUT)

.PHONY: test
test: install ## Install, then run the architecture contracts and the whole test suite
	$(BIN)/lint-imports
	$(BIN)/pytest

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: format
format: install ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: bench
bench: install ## Print the engine benchmarks (step time, score-state memory)
	$(BIN)/python benchmarks/step_time.py
	$(BIN)/python benchmarks/score_memory.py

.PHONY: clean
clean: ## Remove caches and local runs (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache runs
