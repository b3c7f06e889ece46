"""The allocator's settings (app/ops/memory.py) make decoding faster, never different:
the same JPEG variants decode and preprocess to the same bytes in a process left at
glibc's defaults and in one set as the server sets it, and a truncated file is the
same clear error in both."""

import json
import os
import subprocess
import sys

import pytest

from app.ops.memory import SETTINGS
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def digests(tuned: bool) -> dict[str, str]:
    """In a fresh process, with the server's settings in the environment glibc reads at
    start (as uvicorn's worker processes get them), or with none."""
    variables = dict(SETTINGS.values())
    env = {k: v for k, v in os.environ.items() if k not in variables}
    env |= {k: str(v) for k, v in variables.items()} if tuned else {}
    command = [sys.executable, "-m", "tests.allocator_check"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_the_allocator_changes_no_decoded_byte() -> None:
    glibc, tuned = digests(tuned=False), digests(tuned=True)
    assert glibc == tuned
    assert glibc["truncated"] == "corrupt_image"
    # Restart markers change the file, not the pixels; every other variant decodes apart.
    assert glibc["restart markers"] == glibc["baseline 4:2:0"]
    assert len({glibc[name] for name in glibc if name != "truncated"}) == 5
