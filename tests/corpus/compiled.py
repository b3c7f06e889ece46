"""The `corpus` fixture (tests/conftest.py): each learner of the corpus by (fastai line,
name), built by its own line, compiled, and kept in the test cache (tests/cache.py).

Lazily: only what the selected tests need is made, and only what the cache lacks. In
the background: as soon as the tests are collected, the session asks for every
learner they will use (`Corpus.prefetch`), and the tests that use one run last, so
the learners are trained and compiled while the rest of the suite runs. The builds and
compiles run at the lowest CPU priority: they take the time the other tests leave
idle, not time those tests measure. Each line has two build processes (`python -m
tests.corpus`: the drawn learners, which train longest, and the classifiers) and a
compiling process (tests/corpus/compiling.py) of its own, so the lines go side by
side, and an export is compiled as soon as it is made.

A learner's entry (its export, learn.predict's answers on the probes, the probes) is
keyed by what builds it: tests/corpus/, the requirements, the versions, the CPU. Its
compiled entry (the .onnx, and what compiling said) by that and by what compiles it
(tests/cache.py's COMPILING), so a change to the compiler recompiles without training.
"""

import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from compiler.fastai_lines import LINES
from tests.cache import COMPILING, CORPUS, Cache, key
from tests.corpus import DRAWN, SIZE, scene
from tests.corpus.catalog import MADE_BY
from tests.helpers import ROOT

FASTAI_LINES = ("2.8", *LINES)  # the compile requirements' line, and the overlays beside it
WAIT_S = 1500  # the longest a test waits for its learner: a whole build of both lines, and more
# compile --int8 of a corpus learner: calibrated on scenes like its training's, checked
# on scenes of another size (folder: (size, count)), all drawn from this seed.
INT8_SCENES = {"calibration": (SIZE, 32), "holdout": ((120, 90), 12)}
INT8_SEED = 5


def line_env(line: str) -> dict[str, str]:
    """The environment of a process that runs `line` (its overlay first on the path)."""
    if line not in LINES:
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(LINES[line]), str(ROOT)])}


@dataclass(frozen=True)
class Compiled:
    """What `python -m compiler` did: its exit status, and what it said on stderr."""

    returncode: int
    stderr: str


@dataclass(frozen=True)
class Built:
    export: Path  # beside it: probes/, the pictures learn.predict was asked about
    onnx: Path
    compile: Compiled
    reference: dict  # learn.predict's answers on the probes, and the line's version


# The builds and compiles run at the lowest CPU priority (`nice`, so no Python runs
# between fork and exec in this threaded process).
NICE = ["nice", "-n", "19", sys.executable]


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Corpus:
    """The corpus, made in the background as it is asked for."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._made: dict[tuple[str, str], Built | str] = {}  # a str says why it failed
        self._asked: set[tuple[str, str]] = set()
        self._changed = threading.Condition()
        self._compiling: dict[str, queue.Queue] = {}
        self._int8: dict[tuple[str, str], Future] = {}
        self._processes: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        self._closing = False

    # --- asking ----------------------------------------------------------------------

    def prefetch(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Start making every (line, name) not asked for yet, in this order."""
        with self._changed:
            todo = [pair for pair in dict.fromkeys(pairs) if pair not in self._asked]
            self._asked.update(todo)
        for line in FASTAI_LINES:
            names = [name for wanted, name in todo if wanted == line]
            # The drawn learners train longest: they are built beside the classifiers.
            drawn = [name for name in names if name in DRAWN]
            for group in (drawn, [name for name in names if name not in drawn]):
                if group:
                    self._background(self._make, line, group)

    def __getitem__(self, pair: tuple[str, str]) -> Built:
        self.prefetch([pair])
        with self._changed:
            if not self._changed.wait_for(lambda: pair in self._made, timeout=WAIT_S):
                raise TimeoutError(f"the corpus's {pair} was not made within {WAIT_S} s")
        made = self._made[pair]
        if isinstance(made, str):
            raise RuntimeError(f"the corpus's {pair} could not be made: {made}")
        return made

    def prefetch_int8(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Start `compile --int8` of each (line, name) as soon as its learner is made."""
        for pair in pairs:
            self._int8_of(pair)

    def int8(self, line: str, name: str) -> tuple[Compiled, Path]:
        """`python -m app compile --int8` of the learner, as a user runs it, on
        INT8_SCENES: what it did, and its folder (the .onnx if written, holdout/)."""
        return self._int8_of((line, name)).result(timeout=WAIT_S)

    def _int8_of(self, pair: tuple[str, str]) -> Future:
        with self._changed:
            if pair not in self._int8:
                self._int8[pair] = Future()
                self._background(self._make_int8, pair, self._int8[pair])
            return self._int8[pair]

    def _make_int8(self, pair: tuple[str, str], future: Future) -> None:
        line, name = pair
        try:
            built = self[pair]
            entry_key = key(
                (*COMPILING, *CORPUS),
                {"line": line, "learner": name, "scenes": INT8_SCENES, "seed": INT8_SEED},
            )

            def make(folder: Path) -> None:
                rng = random.Random(INT8_SEED)
                for sub, (size, count) in INT8_SCENES.items():
                    (folder / sub).mkdir()
                    for index in range(count):
                        scene(size, rng)[0].save(folder / sub / f"{index}.png")
                run = subprocess.run(
                    [
                        *(*NICE, "-m", "app", "compile", str(built.export), "--int8"),
                        *("-o", str(folder / f"{name}-int8.onnx")),
                        *("--calibration", str(folder / "calibration")),
                        *("--holdout", str(folder / "holdout")),
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                said = {"returncode": run.returncode, "stderr": run.stderr}
                (folder / "compile.json").write_text(json.dumps(said))

            folder = self.cache.make(f"corpus-{line}-{name}-int8", entry_key, make)
            said = Compiled(**json.loads((folder / "compile.json").read_text()))
            future.set_result((said, folder))
        except Exception as exc:  # noqa: BLE001 - raised in the test that waits for it
            future.set_exception(exc)

    def close(self) -> None:
        """Stop what is still being made (the session is over)."""
        self._closing = True
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for jobs in self._compiling.values():
            jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    # --- making ----------------------------------------------------------------------

    def _background(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _settle(self, pairs: Iterable[tuple[str, str]], made: Built | str) -> None:
        with self._changed:
            for pair in pairs:
                self._made.setdefault(pair, made)
            self._changed.notify_all()

    def _keys(self, line: str, name: str) -> tuple[str, str]:
        learner = key(CORPUS, {"line": line, "learner": MADE_BY.get(name, name)})
        return learner, key((*COMPILING, *CORPUS), {"line": line, "learner": name})

    def _make(self, line: str, names: list[str]) -> None:
        """Settle each name: from the cache, by compiling a cached learner, or by building."""
        try:
            to_build = []
            for name in names:
                learner_key, compiled_key = self._keys(line, name)
                learner = self.cache.lookup(f"corpus-{line}-{name}", learner_key)
                compiled = self.cache.lookup(f"corpus-{line}-{name}-compiled", compiled_key)
                if learner and compiled:
                    self._settle([(line, name)], self._built(name, learner, compiled))
                elif learner:
                    self._compile(line, name, learner)
                else:
                    to_build.append(name)
            if to_build:
                self._build(line, to_build)
        except Exception as exc:  # noqa: BLE001 - said to the tests that wait, not lost in a thread
            self._settle([(line, name) for name in names], f"{type(exc).__name__}: {exc}")

    def _build(self, line: str, names: list[str]) -> None:
        """One `python -m tests.corpus` of the line for `names`; each learner is kept and
        sent to be compiled as soon as the build says it is exported."""
        recipes = list(dict.fromkeys(MADE_BY.get(name, name) for name in names))
        scratch = Path(tempfile.mkdtemp(prefix=f".build-{line}-", dir=self._root()))
        log = scratch / "build.log"
        try:
            with log.open("w") as output:
                process = subprocess.Popen(
                    [*NICE, "-m", "tests.corpus", str(scratch / "out"), *recipes],
                    cwd=ROOT,
                    env=line_env(line),
                    stdout=subprocess.PIPE,
                    stderr=output,
                    text=True,
                )
                self._processes.append(process)
                for printed in process.stdout:
                    recipe = printed.strip()
                    for name in [n for n in names if MADE_BY.get(n, n) == recipe]:
                        learner = self._keep_learner(line, name, scratch / "out")
                        self._compile(line, name, learner)
                process.wait()
            if process.returncode != 0:
                why = f"building the fastai {line} corpus failed:\n{_tail(log)}"
                self._settle([(line, name) for name in names], why)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _keep_learner(self, line: str, name: str, out: Path) -> Path:
        def copy(folder: Path) -> None:
            for suffix in (".pkl", ".json"):
                shutil.copy(out / f"{name}{suffix}", folder / f"{name}{suffix}")
            shutil.copytree(out / "probes", folder / "probes")

        return self.cache.make(f"corpus-{line}-{name}", self._keys(line, name)[0], copy)

    def _compile(self, line: str, name: str, learner: Path) -> None:
        with self._changed:
            if line not in self._compiling:
                self._compiling[line] = queue.Queue()
                self._background(self._compiler, line, self._compiling[line])
        self._compiling[line].put((name, learner))

    def _compiler(self, line: str, jobs: queue.Queue) -> None:
        """Compile what `jobs` brings, one after another, in one process of the line."""
        process = None
        log = Path(tempfile.mkstemp(prefix=f".compiling-{line}-", dir=self._root())[1])
        try:
            while (job := jobs.get()) is not None and not self._closing:
                name, learner = job
                if process is None or process.poll() is not None:
                    process = self._compiling_process(line, log)
                try:
                    entry = self._compiled(line, name, learner, process)
                    self._settle([(line, name)], self._built(name, learner, entry))
                except OSError as exc:
                    why = f"compiling it stopped ({exc}):\n{_tail(log)}"
                    self._settle([(line, name)], why)
        finally:
            log.unlink(missing_ok=True)

    def _compiling_process(self, line: str, log: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [*NICE, "-m", "tests.corpus.compiling"],
            cwd=ROOT,
            env=line_env(line),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("a"),
            text=True,
        )
        self._processes.append(process)
        return process

    def _compiled(self, line: str, name: str, learner: Path, process: subprocess.Popen) -> Path:
        def compile_it(folder: Path) -> None:
            process.stdin.write(f"{learner / f'{name}.pkl'}\t{folder / f'{name}.onnx'}\n")
            process.stdin.flush()
            answer = process.stdout.readline()
            if not answer:
                raise OSError(f"the compiling process ended with status {process.wait()}")
            (folder / "compile.json").write_text(answer)

        compiled_key = self._keys(line, name)[1]
        return self.cache.make(f"corpus-{line}-{name}-compiled", compiled_key, compile_it)

    def _built(self, name: str, learner: Path, compiled: Path) -> Built:
        return Built(
            learner / f"{name}.pkl",
            compiled / f"{name}.onnx",
            Compiled(**json.loads((compiled / "compile.json").read_text())),
            json.loads((learner / f"{name}.json").read_text()),
        )

    def _root(self) -> Path:
        self.cache.root.mkdir(parents=True, exist_ok=True)
        return self.cache.root
