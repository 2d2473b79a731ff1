# vitdeploy developer entry points. `make test` and `make demo` set up .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UNAME := $(shell uname -sm)
# On Linux x86_64 pin the local CPU build of torch; an unpinned torch pulls a multi-GB CUDA build.
ifeq ($(UNAME),Linux x86_64)
CONSTRAINTS := -c constraints-linux-x86_64.txt
endif

.PHONY: install test test-fast test-alt-kernels demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-linux-x86_64.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(CONSTRAINTS) -e '.[test]'
	touch $@

# The full suite, slow conversions included (what CI runs).
test: install
	$(PY) -m pytest -q --runslow --durations=15

# The full suite on other float kernels (no AVX-512, no oneDNN, TFLite without XNNPACK): tests/conftest.py.
test-alt-kernels: install
	VITDEPLOY_TEST_KERNELS=alternate $(PY) -m pytest -q --runslow --durations=15

# Seconds, not minutes: everything not marked slow.
test-fast: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/vitdeploy demo

bench: install
	$(PY) -m pip install -q $(CONSTRAINTS) -e '.[test,bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
