# Pounce container image, three stages:
#   build   - a virtualenv in /opt/venv with the pinned runtime requirements
#   dev     - build + test/lint tools; mount the source at /app; uvicorn --reload
#   runtime - slim: the venv (pruned) and what serving needs, as a non-root user.
#             The last stage, so a plain `docker build .` makes it.
#
#   docker build -t pounce .
#   docker run -p 8000:8000 pounce
#
# The base image is an argument so a build can start from a local image (CI has
# no Docker Hub). Any Debian-like image with python3.11 and python3-venv works;
# build and runtime must use the same one (the venv links its interpreter).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# CPU-only torch: the CUDA wheels add gigabytes and do nothing on a CPU host.
# Empty means PyPI only (CI puts a local CPU wheel in docker/wheels instead).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every requirement is a wheel or pure Python, so no compiler is needed; one
# would be installed here, in this stage only. The optional pip_cert secret is
# a CA bundle for networks that intercept TLS; a secret never lands in a layer.
RUN --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --find-links /wheels \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -r /tmp/requirements.txt

# Serving never uses these; removing them is what keeps the image under 1 GB:
# - spaCy and its dependencies (fastai's text side pulls them in);
# - networkx (torch needs it only to compile graphs) and pygments (rich needs it
#   only to colour code);
# - torch's C++ headers, test binaries and the symbol tables of its two big
#   libraries (90 MB);
# - torchvision's compiled ops, which can't load beside CPU torch anyway (see
#   app/torchvision_compat.py);
# - parts of packages nothing here imports: sympy's physics, statistics and
#   vector modules, torch.compile's code generator (inductor), sample data;
# - test suites, type stubs and C/Cython sources shipped in wheels;
# - bytecode for the thousands of modules serving never imports: it is made
#   again for just what the app imports while loading and warming the model, so
#   the cold start stays fast.
# docker/container-test.sh proves the runtime image serves without them.
FROM build AS pruned
COPY app/ /tmp/probe/app/
COPY templates/ /tmp/probe/templates/
COPY static/ /tmp/probe/static/
COPY export.pkl /tmp/probe/
# binutils (for strip) comes from whichever Debian the base image is, in this
# throwaway stage only, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/* \
    && pip uninstall -y \
        spacy spacy-legacy spacy-loggers thinc blis cymem preshed murmurhash srsly \
        wasabi weasel confection catalogue cloudpathlib smart-open typer shellingham \
        pydantic pydantic-core annotated-types typing-inspection wrapt networkx pygments \
    && python -m pip uninstall -y pip setuptools \
    && site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && rm -rf "$site/torch/include" "$site/torch/test" \
    && find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -delete \
    && find /opt/venv -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
    && find /opt/venv -type f \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' \
        -o -name '*.c' -o -name '*.cpp' -o -name '*.h' \) -delete \
    && rm -f "$site"/torch/lib/lib*test*.so "$site"/torch/lib/libbackend_with_compiler.so \
    && strip --strip-unneeded "$site"/torch/lib/libtorch_cpu.so "$site"/torch/lib/libtorch_python.so \
    && rm -rf "$site"/torchvision/*.so "$site"/torchvision.libs \
    && rm -rf "$site"/sympy/physics "$site"/sympy/stats "$site"/sympy/vector \
        "$site"/torch/_inductor/codegen "$site"/matplotlib/mpl-data/sample_data \
        "$site"/sklearn/datasets/data "$site"/sklearn/datasets/images "$site"/sklearn/datasets/descr \
    && PYTHONPATH=/tmp/probe python -c "import pathlib, app.cli, app.main, uvicorn.main, \
uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl, uvicorn.lifespan.on; \
app.main.Classifier.load(pathlib.Path('/tmp/probe/export.pkl')).warm_up()" \
    && rm -rf /tmp/probe

FROM build AS dev
ENV PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000
COPY requirements-dev.txt /tmp/requirements-dev.txt
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install -r /tmp/requirements-dev.txt ipykernel==7.4.0
WORKDIR /app
EXPOSE 8000
# The source is bind-mounted at /app (docker-compose.yml does it).
CMD ["python", "-m", "app", "serve", "--reload"]

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_PATH=/app/export.pkl
RUN groupadd --system --gid 10001 pounce \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin pounce
WORKDIR /app
COPY --from=pruned /opt/venv /opt/venv
COPY app/ app/
COPY templates/ templates/
COPY static/ static/
COPY export.pkl ./
RUN python -m compileall -q app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# Exec form: the server is PID 1 and gets SIGTERM itself (it drains, then exits 0).
CMD ["python", "-m", "app", "serve"]
