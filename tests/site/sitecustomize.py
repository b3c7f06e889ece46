"""Loaded at start-up by the Python processes tests/test_boundary.py starts (it puts this
folder on PYTHONPATH), to see into a real server process from outside:

- POUNCE_TEST_BLOCK=fastai,torch: those modules can't be imported, as if not installed;
- POUNCE_TEST_MODULES=DIR: at exit, the process writes the names in its sys.modules to
  DIR/<pid>.json.
"""

import atexit
import json
import os
import sys
from pathlib import Path

for name in filter(None, os.environ.get("POUNCE_TEST_BLOCK", "").split(",")):
    sys.modules[name] = None  # importing it raises ModuleNotFoundError; find_spec says None

if os.environ.get("POUNCE_TEST_MODULES"):
    record = Path(os.environ["POUNCE_TEST_MODULES"], f"{os.getpid()}.json")
    atexit.register(lambda: record.write_text(json.dumps(sorted(sys.modules))))
