"""The serving process never imports torch, torchvision or fastai (nor phones home).

The line is held three ways: no serving module imports the compiler or the
training stack (read from their source); importing every serving module pulls
none of them in; and a real server process, after loading the model and
answering a prediction, has none of them in sys.modules, whether it serves
the shipped compiled file or compiled an export itself (in a child process).
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.inference.metadata import sha256_of
from tests.cache import FOR_THE_COMPILER  # what compiler/ may import of app/
from tests.helpers import CAT_CLASSES, MODEL, ROOT
from tests.live import multipart, request, serve

TRAINING_STACK = {"torch", "torchvision", "fastai", "fasttransform", "fastcore"}
NOT_IMPORTED_BY_SERVING = TRAINING_STACK | {"compiler", "onnx"}
SITE = Path(__file__).resolve().parent / "site"
SERVING_MODULES = sorted((ROOT / "app").rglob("*.py"))


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.unit
@pytest.mark.parametrize("path", SERVING_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_serving_modules_do_not_import_the_compiler(path: Path) -> None:
    assert not imported_names(path) & NOT_IMPORTED_BY_SERVING


def module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def loaded_by_importing(paths: list[Path]) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing `paths`."""
    names = ", ".join(module(path) for path in paths if path.stem != "__main__")
    return loaded_by_running(f"import {names}")


def loaded_by_running(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running `code`."""
    return {name.split(".")[0] for name in modules_after(code)}


def modules_after(code: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running `code`."""
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return set(run.stdout.split())


@pytest.mark.slow
def test_importing_all_of_app_imports_no_training_stack() -> None:
    loaded = loaded_by_importing(SERVING_MODULES)
    assert "onnxruntime" in loaded and not loaded & TRAINING_STACK


# The web side of the server: no part of it may be loaded by the inference side.
WEB = {"starlette", "aiohttp", "uvicorn", "jinja2", "prometheus_client", "multipart", "httptools"}
INFERENCE_SIDE = [
    path for path in SERVING_MODULES if path.relative_to(ROOT).parts[1] in ("inference", "kinds")
]


@pytest.mark.slow
def test_the_inference_side_imports_no_web_framework() -> None:
    """app/inference/ and app/kinds/ (and what they import) load no web framework, so
    compiling never loads Starlette."""
    assert len(INFERENCE_SIDE) >= 10
    loaded = loaded_by_importing(INFERENCE_SIDE)
    assert "onnxruntime" in loaded and not loaded & (WEB | TRAINING_STACK)


@pytest.mark.slow
def test_the_command_line_imports_no_web_framework_until_it_serves() -> None:
    """`python -m app compile` (and --check, which `make run` calls first) loads app/cli.py
    alone: no web framework, no URL fetcher (nor does `feedback export`); `serve` and
    `predict` import theirs. The compiler adds none to what fastai loads by itself (fastai
    2.8's fastprogress imports python-fasthtml, and with it Starlette: theirs, not ours)."""
    assert not loaded_by_importing([ROOT / "app" / "cli.py"]) & WEB
    # `feedback export` reads FEEDBACK_DIR with what app/feedback/ imports: no web either.
    assert not loaded_by_importing(sorted((ROOT / "app" / "feedback").glob("*.py"))) & WEB
    fastprogress = loaded_by_running("import fastprogress")
    assert "starlette" in fastprogress  # if this fails, the exception below can go
    modules = modules_after(  # as `python -m compiler` starts
        "import app.cli\nfrom compiler.torchvision_compat import ensure_torchvision\n"
        "ensure_torchvision()\nimport compiler.main"
    )
    ours = {name.split(".")[0] for name in modules}
    assert "compiler" in ours and not (ours - fastprogress) & WEB
    server = ("app.main", "app.http", "app.intake.fetch", "app.protocols", "app.pipeline")
    assert not [name for name in modules if name.startswith(server)]


@pytest.mark.unit
def test_the_compiler_imports_only_the_inference_side() -> None:
    for path in sorted((ROOT / "compiler").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
                assert node.module.startswith(FOR_THE_COMPILER), f"{path.name}: {node.module}"


def served_modules(
    tmp: Path, model_path: Path, photo: bytes, labels: set[str] = CAT_CLASSES, **env: str
) -> tuple[set, str]:
    """What a real server process had imported by the time it exited, after loading
    `model_path` and answering one prediction (one of `labels`); and its log."""
    record = tmp / "modules"
    record.mkdir(exist_ok=True)
    env = {"PYTHONPATH": str(SITE), "POUNCE_TEST_MODULES": str(record), **env}
    with serve(tmp, MODEL_PATH=str(model_path), **env) as live:
        body, headers = multipart(photo)
        status, payload, _ = request(live.port, "POST", "/api/predict", body, headers)
        assert status == 200 and json.loads(payload)["label"] in labels
        assert live.terminate() == 0
        dump = record / f"{live.process.pid}.json"
        return {name.split(".")[0] for name in json.loads(dump.read_text())}, live.log.read_text()


@pytest.mark.slow
def test_the_served_process_never_imports_torch(tmp_path: Path, chelsea_jpeg: bytes) -> None:
    loaded, _ = served_modules(tmp_path, MODEL, chelsea_jpeg, HOME=str(tmp_path))
    assert "onnxruntime" in loaded and "app" in loaded
    assert not loaded & TRAINING_STACK
    # ONNX Runtime's telemetry is off: it never made its offline store to upload from.
    assert not (tmp_path / ".cache" / "Microsoft").exists()


@pytest.mark.slow
@pytest.mark.smoke  # one of the container test's sample of the slow tier
def test_an_export_is_compiled_in_a_child_and_cached(
    fastai_vision, tmp_path: Path, chelsea_jpeg: bytes
) -> None:
    """An export.pkl with no compiled file beside it (a small one: compiling the default
    network is tests/test_compile.py's): compiled once, in another process, into
    MODEL_CACHE_DIR/<sha256>.onnx; the next start serves that file."""
    from tests.learners import tiny_learner

    source = tiny_learner(tmp_path / "export", [fastai_vision.Resize(64)])
    labels = {f"class {index}" for index in range(10)}
    cache = tmp_path / "cache"
    env = {"MODEL_CACHE_DIR": str(cache)}
    loaded, log = served_modules(tmp_path, source, chelsea_jpeg, labels, **env)
    assert not loaded & TRAINING_STACK
    assert "parity with learn.predict" in log
    compiled = list(cache.glob("*.onnx"))
    assert [path.stem for path in compiled] == [sha256_of(source)]
    _, log = served_modules(tmp_path, source, chelsea_jpeg, labels, **env)
    assert "compiling" not in log


@pytest.mark.slow
def test_without_fastai_an_export_needs_compiling_first(tmp_path: Path) -> None:
    source = tmp_path / "mine.pkl"
    shutil.copy(MODEL, source)
    env = {
        **os.environ,
        "PYTHONPATH": str(SITE),
        "POUNCE_TEST_BLOCK": "fastai,torch",
        "MODEL_PATH": str(source),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "fastai isn't installed here" in lines[0] and "make compile" in lines[0]
    assert "python -m app compile" in lines[0]
