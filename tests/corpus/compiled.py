"""The corpus, built by each fastai line and compiled as a user compiles: what the
`corpus` fixture (tests/conftest.py) gives the tests, by (fastai line, learner name)."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from compiler.fastai_lines import LINES
from tests.corpus import WINDOWS
from tests.corpus.classifiers import SHAPES
from tests.corpus.others import OTHERS
from tests.helpers import ROOT

FASTAI_LINES = ("2.8", *LINES)  # the compile requirements' line, and the overlays beside it
NAMES = [*SHAPES, WINDOWS, *OTHERS]


def line_env(line: str) -> dict[str, str]:
    """The environment of a process that runs `line` (its overlay first on the path)."""
    if line not in LINES:
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(LINES[line]), str(ROOT)])}


@dataclass
class Built:
    export: Path
    onnx: Path
    compile: subprocess.CompletedProcess
    reference: dict


def _compile(export: Path) -> subprocess.CompletedProcess:
    """`python -m app compile`, in a fresh process of the compile requirements' line."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "compile",
            str(export),
            "-o",
            str(export.with_suffix(".onnx")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def build(root: Path) -> dict[tuple[str, str], Built]:
    """Every learner, built by each fastai line (side by side), then compiled two at a
    time, each in a fresh process; by (line, name)."""
    builds = {
        line: subprocess.Popen(
            [sys.executable, "-m", "tests.corpus", str(root / line)],
            cwd=ROOT,
            env=line_env(line),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in FASTAI_LINES
    }
    for line, build in builds.items():
        output, _ = build.communicate(timeout=1200)
        assert build.returncode == 0, f"building the fastai {line} corpus failed:\n{output}"
    exports = [root / line / f"{name}.pkl" for line in FASTAI_LINES for name in NAMES]
    with ThreadPoolExecutor(2) as pool:
        compiled = list(pool.map(_compile, exports))
    return {
        (export.parent.name, export.stem): Built(
            export,
            export.with_suffix(".onnx"),
            run,
            json.loads(export.with_suffix(".json").read_text()),
        )
        for export, run in zip(exports, compiled, strict=True)
    }
