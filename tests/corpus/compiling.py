"""`python -m tests.corpus.compiling`: `python -m compiler`, run on one export after
another in one process of their fastai line, for the corpus.

Each line read from stdin is an export and the file to write, tab-separated; each
line written to stdout is what `python -m compiler EXPORT -o OUT` would have done,
as JSON: its exit status and what it wrote to stderr. The compiler's own code runs
(compiler/__main__.py's `main`), as it does in the process the command line starts:
this process never ran the notebook, so names pickled from `__main__` or from the
training machine's modules are missing here too. Starting that process once a line
instead of once an export spares the corpus most of its compiling time, which is
importing torch and fastai; the command line itself, and how it finds an export's
line, are tested on their own (tests/test_corpus.py, tests/test_cli.py).
"""

import contextlib
import io
import json
import sys
import traceback

from compiler.__main__ import main


def compile_one(export: str, out: str) -> dict:
    """`python -m compiler export -o out`: its exit status and its stderr. The export is
    of this process's line (or the compiler would run itself again in the other one)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            main([export, "-o", out])
            status = 0
        except SystemExit as exit:  # as the interpreter ends the command line's process
            if isinstance(exit.code, str):
                print(exit.code, file=sys.stderr)
            status = exit.code if isinstance(exit.code, int) else 1
        except Exception:  # noqa: BLE001 - the command line's process would print it and exit 1
            traceback.print_exc()
            status = 1
    return {"returncode": status, "stderr": stderr.getvalue()}


def serve() -> None:
    import torch

    torch.set_num_threads(1)  # the lines compile side by side, beside the tests
    for request in sys.stdin:
        export, out = request.rstrip("\n").split("\t")
        print(json.dumps(compile_one(export, out)), flush=True)


if __name__ == "__main__":
    serve()
