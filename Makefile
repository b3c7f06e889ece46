# `make run` serves the default model at http://127.0.0.1:8000; `make test` runs the suite.
# Both create .venv and install the pinned requirements first (only when they changed).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check --quiet

.PHONY: run test lint format model bench container-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PIP) -r requirements-dev.txt
	touch $@

$(VENV)/.bench: requirements-bench.txt $(VENV)/.dev
	$(PIP) -r requirements-bench.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m app serve

test: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Measures this server beside the in-process ceiling, a naive server and LitServe
# (about 10 minutes); writes docs/benchmarks.md and docs/benchmarks.png.
bench: $(VENV)/.bench
	$(PY) -m bench.run

model: $(VENV)/.dev
	PYTHONPATH=. $(PY) scripts/build_default_model.py --out export.pkl

# Builds and checks both images and the deploy files (needs root: installs docker.io).
container-test:
	bash docker/container-test.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
