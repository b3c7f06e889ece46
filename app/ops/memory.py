"""Giving memory back to the system after a burst.

glibc keeps memory a process has freed for its next allocations rather than
returning it, and gives each thread that allocates at the same time as another
an arena of its own (up to 8 per core). After a thousand slow clients or a crowd
of uploads had come and gone, a server process held 17-19% more than before
(tests/test_faults.py). Two things keep it at its steady state: two arenas,
set before any thread starts, and malloc_trim every few seconds, which hands
the free pages back (a few milliseconds of a worker thread). Where the C
library isn't glibc, both do nothing.
"""

import asyncio
import ctypes
import os

_LIBC = ctypes.CDLL(None)
M_ARENA_MAX = -8  # mallopt's parameter (glibc's malloc.h)
TRIM_EVERY_S = 5.0


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """For this process (mallopt) and every process it starts: uvicorn's workers
    (WEB_CONCURRENCY > 1) and --reload's server are fresh interpreters, which glibc
    configures from MALLOC_ARENA_MAX when they start."""
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, arenas)


async def trim_periodically(every_s: float = TRIM_EVERY_S) -> None:
    """Runs for the app's lifetime (app/main.py's lifespan)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(trim, 0)
