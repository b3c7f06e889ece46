# Pounce container image:
#   serving - a virtualenv in /opt/venv with the serving requirements only (ONNX Runtime,
#             no torch)
#   build   - serving + the compile requirements (CPU torch, fastai 2.8 and 2.7, onnx); compiles
#             the model (build argument MODEL, default export.pkl; an export of fastai 2.7 or
#             2.8) into /opt/model/model.onnx,
#             proving parity with learn.predict as it does (a mismatch fails the build)
#   dev     - build + test/lint tools, chromium and nginx, for training, compiling and
#             testing; mount the source at /app; uvicorn --reload
#   runtime - slim: the serving venv, the app and the compiled model, as a non-root user;
#             no torch, no fastai, no pip. The last stage, so `docker build .` makes it.
#
#   docker build -t pounce .
#   docker build --build-arg MODEL=models/cougar.pkl -t cougar .   # another export
#   docker build --build-arg PRECISION=int8 -t pounce:int8 .        # INT8 (see compile --int8)
#   docker run -p 8000:8000 pounce
#
# The base image is an argument so a build can start from a local image (CI has
# no Docker Hub). Any Debian-like image with python3.11 and python3-venv works;
# all stages must use the same one (the venv links its interpreter).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS serving
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every requirement is a wheel or pure Python, so no compiler is needed. The optional
# pip_cert secret is a CA bundle for networks that intercept TLS; a secret never lands
# in a layer.
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install -r /tmp/requirements.txt

FROM serving AS build
# CPU-only torch: the CUDA wheels add gigabytes and do nothing on a CPU host.
# Empty means PyPI only (CI puts a local CPU wheel in docker/wheels instead).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements-compile.txt requirements-fastai27.txt /tmp/
# fastai 2.7 beside 2.8, for exports made with fastai 2.0-2.7 (compiler/fastai_lines.py).
RUN --mount=type=bind,source=docker/wheels,target=/wheels \
    --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --find-links /wheels \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -r /tmp/requirements-compile.txt \
    && pip install --no-deps --target /opt/venv/fastai-2.7 -r /tmp/requirements-fastai27.txt
WORKDIR /src
COPY app/ app/
COPY compiler/ compiler/
# The parity check's photos are the page's example photos.
COPY static/examples/ static/examples/
ARG MODEL=export.pkl
COPY ${MODEL} model/
# PRECISION=int8 quantizes it (compile --int8), calibrated on the photos in CALIBRATION
# (a folder in the build context; default the example photos: pass your own) and
# checked against fp32 on held-out photos; too little agreement fails the build.
ARG PRECISION=fp32
ARG CALIBRATION=static/examples
COPY ${CALIBRATION} calibration/
RUN set --; \
    case "$PRECISION" in \
        fp32) ;; \
        int8) set -- --int8 --calibration calibration ;; \
        *) echo "PRECISION must be fp32 or int8, not $PRECISION" >&2; exit 1 ;; \
    esac; \
    python -m compiler "model/$(basename "$MODEL")" -o /opt/model/model.onnx "$@"

FROM build AS dev
ENV PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000
# Debian's chromium, which the browser tests drive (Playwright can't download its own),
# libatomic1, which Playwright's own Node.js driver needs, and nginx, the TLS proxy the proxy
# test puts in front of the server. Debian's versions are the ones to have, so they aren't
# pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium libatomic1 nginx \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-dev.txt /tmp/requirements-dev.txt
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install -r /tmp/requirements-dev.txt ipykernel==7.4.0
WORKDIR /app
EXPOSE 8000
# The source is bind-mounted at /app (docker-compose.yml does it).
CMD ["python", "-m", "app", "serve", "--reload"]

FROM serving AS serving-slim
# pip and setuptools: nothing in the runtime image installs anything.
RUN python -m pip uninstall -y pip setuptools

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_PATH=/app/model.onnx
RUN groupadd --system --gid 10001 pounce \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin pounce \
    && mkdir -p /data/feedback && chown pounce:pounce /data/feedback
# FEEDBACK_DIR's usual place: a volume mounted here starts out the server user's (docs/deploy.md).
WORKDIR /app
COPY --from=serving-slim /opt/venv /opt/venv
COPY app/ app/
COPY templates/ templates/
COPY static/ static/
COPY --from=build /opt/model/model.onnx ./
RUN python -m compileall -q app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# Exec form: the server is PID 1 and gets SIGTERM itself (it drains, then exits 0).
CMD ["python", "-m", "app", "serve"]
