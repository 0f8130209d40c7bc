# wm_bench — `make help` lists the targets. Every target works on a fresh machine (it creates .venv).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCALE ?= auto
OP ?= ssd
WORKERS ?= 1
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup smoke test test-interpret test-gpu lint format reproduce-figure-mqar reproduce-figure-speed reproduce-table1 reproduce-table2 reproduce-table3 reproduce-mqar-dma reproduce-passkey report pdf clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-24s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0  # the CPU wheel on disk here; on a GPU box keep your CUDA torch
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the package with its dev tools (CPU torch)

smoke: $(STAMP) ## one quick training run of the cheems preset on CPU (about a minute)
	$(VENV)/bin/wm-bench train --preset cheems --size tiny --steps 60 --batch-size 8 --seq-len 64 --force

test: $(STAMP) ## the CPU test suite (what CI runs)
	$(PY) -m pytest -q -m "not gpu and not interpret" $(PYTEST_ARGS)

test-interpret: $(STAMP) ## Triton kernels under TRITON_INTERPRET=1 on the CPU (tiny fp32 shapes)
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m interpret $(PYTEST_ARGS)

test-gpu: $(STAMP) ## GPU-marked tests (needs CUDA)
	$(PY) -m pytest -q -m gpu $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## run one kernel benchmark: make bench OP=ssd
	$(VENV)/bin/wm-bench bench $(OP)

lint: $(STAMP) ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff autofix + format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

reproduce-figure-mqar: $(STAMP) ## MQAR accuracy grid + report (SCALE=smoke|cpu|small|paper|auto, WORKERS=N)
	$(VENV)/bin/wm-bench reproduce mqar --scale $(SCALE) --workers $(WORKERS)

reproduce-figure-speed: $(STAMP) ## expert-retrieval speed grid + report (SCALE=smoke|cpu|small|paper|auto)
	$(VENV)/bin/wm-bench reproduce expert_speed --scale $(SCALE)

reproduce-table1: $(STAMP) ## RoPE-in-SSD perplexity table + report (SCALE=smoke|cpu|small|paper|auto, WORKERS=N)
	$(VENV)/bin/wm-bench reproduce rope --scale $(SCALE) --workers $(WORKERS)

reproduce-table2: $(STAMP) ## FFN comparison table + report (SCALE=smoke|cpu|small|paper|auto, WORKERS=N)
	$(VENV)/bin/wm-bench reproduce ffn --scale $(SCALE) --workers $(WORKERS)

reproduce-table3: $(STAMP) ## the main job: architecture comparison (Table 3) + downstream tasks + report (SCALE=auto: small with CUDA, smoke without)
	$(VENV)/bin/wm-bench reproduce arch --scale $(SCALE) --workers $(WORKERS)

reproduce-mqar-dma: $(STAMP) ## DMA-on-MQAR ablation + report (SCALE=smoke|cpu|small|paper|auto, WORKERS=N)
	$(VENV)/bin/wm-bench reproduce mqar_dma --scale $(SCALE) --workers $(WORKERS)

reproduce-passkey: $(STAMP) ## needle-in-a-haystack passkey grid + heat maps (SCALE=smoke|cpu|small|paper|auto, WORKERS=N)
	$(VENV)/bin/wm-bench reproduce passkey --scale $(SCALE) --workers $(WORKERS)

.PHONY: sweep
NAME ?= smoke
sweep: $(STAMP) ## a sweep + its report: make sweep NAME=smoke [WORKERS=N] [STORAGE=url] (docs/sweeps.md)
	$(VENV)/bin/wm-bench sweep $(NAME) --workers $(WORKERS) $(if $(STORAGE),--storage $(STORAGE))

report: $(STAMP) ## regenerate reports/*.md and figures from results/
	$(VENV)/bin/wm-bench report

pdf: $(STAMP) ## render every report into reports/report.pdf
	$(VENV)/bin/wm-bench report --pdf

clean: ## remove caches and outputs/ (never results/)
	rm -rf outputs .pytest_cache .ruff_cache lightning_logs

# --- GPU readiness: the sm_90a compile check, the offline bundle, the suite on the GPU machine -
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
SECTIONS ?= all
BUNDLE ?= .carry/bundle
PYVER ?= 3.12
.PHONY: gpu-compile gpu-bundle gpu-suite

gpu-compile: $(STAMP) ## compile every Triton kernel for sm_90a on the CPU; ptxas registers/spills/smem
	$(PY) -m wm_bench.gpu.compile

gpu-bundle: $(STAMP) ## gather the wheels + data an offline GPU machine lacks into $(BUNDLE) (≤ 64 MiB)
	$(PY) -m wm_bench.gpu.bundle --out $(BUNDLE) --python-version $(PYVER)

gpu-suite: ## on a GPU machine, offline: install the bundle, GPU tests, benchmarks, MQAR small (≤ 9 min)
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} SECTIONS=$(SECTIONS) \
	  $(GPU_PY) -m wm_bench.gpu.suite --bundle $(BUNDLE) $(if $(ARCHIVE),--archive $(ARCHIVE))
