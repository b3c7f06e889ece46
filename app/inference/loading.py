"""Which compiled file serves MODEL_PATH; compiling a fastai export first when it must.

MODEL_PATH may name a compiled `.onnx` (served as it is) or a fastai
`export.pkl`. An export is served by the compiled file whose metadata records
the export's sha256: the `.onnx` beside it (the repo ships `export.onnx` beside
`export.pkl`), else `MODEL_CACHE_DIR/<sha256>.onnx`. When neither matches and
fastai is installed, `python -m compiler` compiles it into the cache in a child
process, so this process never imports torch. Where fastai is not installed,
the error says in one line how to compile.
"""

import importlib.util
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from app.inference.metadata import sha256_of
from app.inference.model import Model, ModelLoadError, read_info
from app.settings import ROOT, Settings

logger = logging.getLogger("app")


def candidates(source: Path, cache_dir: Path, sha256: str) -> list[Path]:
    return [source.with_suffix(".onnx"), cache_dir / f"{sha256}.onnx"]


def find_compiled(source: Path, cache_dir: Path, sha256: str) -> Path | None:
    """The compiled file made from exactly this export (`sha256`), if there is one."""
    for candidate in candidates(source, cache_dir, sha256):
        if not candidate.is_file():
            continue
        try:
            if read_info(candidate)["source"]["sha256"] == sha256:
                return candidate
        except ModelLoadError as exc:  # unreadable or of another format: compile afresh
            logger.warning("not using %s: %s", candidate, exc)
    return None


def compile_in_child(
    source: Path,
    out: Path,
    say: Callable[[str], object] = lambda line: logger.info("%s", line),
    options: Sequence[str] = (),
) -> None:
    """Run the compiler in a process of its own, passing on its progress as it comes.
    `options`: more of `python -m compiler`'s arguments (--int8 and its photos)."""
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "compiler",
            str(source.resolve()),
            "-o",
            str(out.resolve()),
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        last = "compiling failed"
        assert child.stderr is not None  # stderr=PIPE
        for line in child.stderr:
            if line.strip():
                last = line.strip()
                if not last.startswith("error: "):  # the error is raised, not said twice
                    say(last)
    if child.returncode != 0:
        raise ModelLoadError(last.removeprefix("error: "))


def can_compile() -> bool:
    """Whether fastai is installed, without importing it."""
    return importlib.util.find_spec("fastai") is not None


def how_to_compile(source: Path) -> str:
    return (
        f"compile it where fastai and torch are installed: `make compile MODEL={source}`, or "
        f"`python -m app compile {source} -o {source.with_suffix('.onnx')}`"
    )


def compiled_model_path(settings: Settings) -> Path:
    """The .onnx file to serve for MODEL_PATH, compiled first if none matches."""
    source = settings.model_path
    if source.suffix.lower() == ".onnx":
        read_info(source)  # a file that can't be served says why now, in one line
        return source
    sha256 = sha256_of(source)
    found = find_compiled(source, settings.model_cache_dir, sha256)
    if found is not None:
        return found
    if not can_compile():
        raise ModelLoadError(
            f"{source} is a fastai export with no compiled model made from it, and fastai "
            f"isn't installed here: {how_to_compile(source)}"
        )
    out = candidates(source, settings.model_cache_dir, sha256)[1]
    logger.info("compiling %s into %s (once; later starts use it)", source, out)
    compile_in_child(source, out)
    return out


def load_model(settings: Settings) -> Model:
    """The model MODEL_PATH names, ready to serve: the one path the server and CLI share."""
    return Model.load(
        compiled_model_path(settings), settings.intra_op_threads, settings.memory_arena
    )
