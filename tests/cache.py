"""What the tests build, kept between runs: the corpus's learners and their compiled files,
the trained fixture learners, INT8 files, the default model's fresh compile.

Each entry is a folder named by what it is and a key: a hash of everything that
changes it (the files it is made from, the versions of fastai, torch and Python,
the CPU). A lookup under today's key finds the entry only if none of that
changed, so a stale entry is never used; a miss rebuilds, and the entries an
older key left behind are removed. An entry appears whole or not at all: it is
made in a temporary folder, then renamed into place, under a lock, so two runs
at once (a host run and a container run, say) never see half of one.

The cache lives in the checkout (`.test-cache/`, or `POUNCE_TEST_CACHE`); `make
clean` empties it, and a fresh clone starts without one.
"""

import fcntl
import hashlib
import importlib.metadata
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from app.settings import ROOT

# What compiling reads, besides the export: compiler/, the parts of app/ it may import
# (tests/test_boundary.py holds it to these), the photos it proves parity on and
# calibrates INT8 with, and the pinned requirements.
FOR_THE_COMPILER = (
    "app.inference",
    "app.kinds",
    "app.settings",
    "app.errors",
    "app.error_codes",
    "app.intake.integers",  # app/kinds reads top_k with it
)
REQUIREMENTS = ("requirements*.txt",)
COMPILING = (
    "compiler",
    *(name.replace(".", "/") for name in FOR_THE_COMPILER),
    "static/examples",
    *REQUIREMENTS,
)
# What the corpus's learners are built from: its notebook and recipes, and the requirements.
CORPUS = ("tests/corpus", *REQUIREMENTS)


def _files(root: Path, inputs: Iterable[str]) -> list[Path]:
    """Every file the inputs name: a folder's files (no bytecode), a module's file, a glob."""
    found: set[Path] = set()
    for name in inputs:
        for path in root.glob(name) if "*" in name else [root / name]:
            if path.is_dir():
                found |= {
                    p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                }
            elif path.with_suffix(".py").is_file():
                found.add(path.with_suffix(".py"))
            elif path.is_file():
                found.add(path)
    return sorted(found)


def cpu() -> str:
    """The CPU, as far as it changes float results: its model and its vector extensions."""
    model, flags = platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == platform.machine():
                model += " " + line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                vector = ("avx", "fma", "vnni", "amx", "bf16", "f16c", "sse4")
                flags = " ".join(f for f in line.split()[2:] if f.startswith(vector))
    except OSError:
        pass
    return f"{model} [{flags}]"


@cache
def versions() -> dict[str, str]:
    """The versions that change what is built: Python, torch, onnx, ONNX Runtime and both
    fastai lines (2.7's from its overlay), read without importing any of them."""
    from compiler.fastai_lines import LINES

    found = {"python": platform.python_version(), "cpu": cpu()}
    for package in ("torch", "onnx", "onnxruntime", "fastai"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "absent"
    for line, overlay in LINES.items():
        found[f"fastai {line}"] = next(
            (
                d.version
                for d in importlib.metadata.distributions(path=[str(overlay)])
                if d.metadata["Name"] == "fastai"
            ),
            "absent",
        )
    return found


def key(inputs: Iterable[str], facts: Mapping[str, object] = {}, root: Path = ROOT) -> str:
    """The hash of the inputs' files (paths and contents), the facts and the versions."""
    digest = hashlib.sha256()
    for path in _files(root, inputs):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for name, value in sorted({**versions(), **facts}.items()):
        digest.update(f"{name}={value}\0".encode())
    return digest.hexdigest()[:20]


class Cache:
    """Entries under `root`, each `<name>-<key>/`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(os.environ.get("POUNCE_TEST_CACHE", ROOT / ".test-cache"))

    def lookup(self, name: str, entry_key: str) -> Path | None:
        path = self.root / f"{name}-{entry_key}"
        return path if path.is_dir() else None

    @contextmanager
    def _lock(self, name: str):
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def put(self, name: str, entry_key: str, made: Path) -> Path:
        """Move the folder `made` into place as the entry, and drop the name's stale entries."""
        with self._lock(name):
            path = self.root / f"{name}-{entry_key}"
            if path.is_dir():  # another run made it meanwhile
                shutil.rmtree(made, ignore_errors=True)
            else:
                os.replace(made, path)
            for stale in self.root.glob(f"{name}-*"):
                if stale != path and stale.name.rsplit("-", 1)[0] == name:
                    shutil.rmtree(stale, ignore_errors=True)
            return path

    def make(self, name: str, entry_key: str, build: Callable[[Path], None]) -> Path:
        """The entry, built into an empty folder by `build` if it isn't there."""
        found = self.lookup(name, entry_key)
        if found:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        made = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        try:
            build(made)
            return self.put(name, entry_key, made)
        finally:
            shutil.rmtree(made, ignore_errors=True)
