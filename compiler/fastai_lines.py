"""Which fastai line an export needs, read without unpickling it, and the compiler run in it.

fastai 2.8 moved its transforms from `fastcore.transform` and `fastcore.dispatch` to
`fasttransform` (and plum): a learner exported by fastai 2.0-2.7 pickles references to
the old modules, which fastai 2.8 can't load, and one exported by 2.8 can't be loaded
by 2.7. Nearly every export people have is a 2.7 (or older 2.x) pickle. So an export
is compiled by the fastai line it was made with, which is what parity must be proven
against too: the compile requirements are fastai 2.8, and beside them an overlay of
fastai 2.7.19 with the fastcore and fastprogress it needs (requirements-fastai27.txt,
installed with --no-deps into LINES["2.7"]; everything else, torch included, is
shared). `python -m compiler` reads the module names the export's pickle imports
(pickletools: opcodes only, nothing is run) and, when the export belongs to the other
line, runs itself again with that line first on the path.

This module imports neither fastai nor torch: it decides which of them to import.
"""

import importlib.metadata
import os
import pickletools
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

# The overlay of each line other than the installed one, inside the environment.
LINES = {"2.7": Path(sys.prefix) / "fastai-2.7"}
# Modules only one line's pickles name.
MARKERS = {
    "2.7": ("fastcore.transform", "fastcore.dispatch"),
    "2.8": ("fasttransform",),
}
STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING"}
PUTS = {"BINPUT", "LONG_BINPUT", "PUT"}
GETS = {"BINGET", "LONG_BINGET", "GET"}


class LineError(RuntimeError):
    """The export's fastai line isn't installed here; the message says how to add it."""


def _pickle_of(path: Path) -> bytes:
    """The object pickle inside a torch.save archive (zip), or the file itself."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if names:
                return archive.read(names[0])
    return path.read_bytes()


def pickled_globals(path: Path) -> set[str]:
    """The `module.name`s the export's pickle looks up (GLOBAL and STACK_GLOBAL). Read
    once a process for each state of the file: choosing the line and reading the learner
    both ask, and reading the opcodes of a large pickle takes a while."""
    try:
        stat = Path(path).stat()
    except OSError:
        return set()  # the loader will say what is wrong with it
    return set(_globals(Path(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=16)
def _globals(path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    found: set[str] = set()
    memo: dict[object, object] = {}
    pushed: list[object] = []  # strings as pushed (or fetched from the memo); else None
    try:
        for opcode, arg, _ in pickletools.genops(_pickle_of(path)):
            name = opcode.name
            if name == "GLOBAL":
                found.add(str(arg).replace(" ", ".", 1))
            elif name == "STACK_GLOBAL" and len(pushed) >= 2:
                found.add(f"{pushed[-2]}.{pushed[-1]}")
            elif name in STRINGS:
                pushed.append(arg if isinstance(arg, str) else None)
            elif name == "MEMOIZE" and pushed:
                memo[len(memo)] = pushed[-1]
            elif name in PUTS and pushed:
                memo[arg] = pushed[-1]
            elif name in GETS:
                pushed.append(memo.get(arg))
            else:
                pushed.append(None)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile):
        pass  # not a pickle: the loader will say what it is
    return frozenset(found)


def export_line(path: Path) -> str | None:
    """The fastai line that made the export ("2.7" or "2.8"); None if its pickle says neither."""
    names = pickled_globals(path)
    for line, markers in MARKERS.items():
        if any(name.startswith(marker + ".") for name in names for marker in markers):
            return line
    return None


def installed_line() -> str:
    """The fastai line this process would import (the first on its path)."""
    major, minor = importlib.metadata.version("fastai").split(".")[:2]
    return f"{major}.{minor}" if (int(major), int(minor)) < (2, 8) else "2.8"


def run_in_line(source: Path, argv: list[str]) -> None:
    """Return if this process can read `source`; otherwise run `python -m compiler argv`
    again, in place of this process, with the export's line first on the path."""
    line = export_line(source)
    if line is None or line == installed_line():
        return
    overlay = LINES.get(line)
    if overlay is None or not (overlay / "fastai").is_dir():
        where = overlay or "its own environment"
        raise LineError(
            f"{source.name} was made with fastai {line}, and fastai {line} isn't installed "
            f"beside this one (in {where}): `make compile` installs it (requirements-fastai27.txt)"
        )
    print(f"{source.name} was made with fastai {line}: reading it with that line", file=sys.stderr)
    path = os.pathsep.join(p for p in (str(overlay), os.environ.get("PYTHONPATH")) if p)
    os.execve(
        sys.executable,
        [sys.executable, "-m", "compiler", *argv],
        {**os.environ, "PYTHONPATH": path},
    )
