# Quick start (fresh Linux, Python 3.11):  make demo   |   make test
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo

.PHONY: install install-test demo test test-e2e lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The synthetic set is generated in memory (no TFDS preparation: the demo's time goes to
# training); evaluate then writes report.md and Figure-6/7 PNGs under $(WORKDIR)/eval.
demo: install
	$(PY) -m irstd_jax.main --config=configs/synthetic.py --workdir=$(WORKDIR) \
	  --config.dataset.source=memory
	$(PY) -m irstd_jax.evaluate --checkpoint=$(WORKDIR) --output=$(WORKDIR)/eval \
	  --num_figures=2

# Two pytest-xdist workers, each test file whole on one worker (files share a trained run
# or a compiled model through module fixtures), handed out heaviest file first
# (tests/conftest.py: HEAVIEST_FIRST); TEST_WORKERS=0 runs in this process.
# `make test`: every test but the end-to-end ones (marker e2e, pyproject.toml), which
# `make test-e2e` runs; CI (.ci/run) runs both.
TEST_WORKERS ?= 2
PYTEST := JAX_PLATFORMS=cpu $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: install-test
	$(PYTEST) -m "not e2e" tests

test-e2e: install-test
	$(PYTEST) -m e2e tests

lint: install-test
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs
