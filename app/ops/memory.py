"""glibc's allocator, set for a server that decodes phone photos: fast, then given back.

glibc keeps memory a process has freed for its next allocations rather than
returning it, and gives each thread that allocates at the same time as another
an arena of its own (up to 8 per core). After a thousand slow clients or a crowd
of uploads had come and gone, a server process held 17-19% more than before
(tests/test_faults.py). Two things keep it at its steady state: one arena for
every thread, set before any thread starts, and malloc_trim every few seconds,
which hands the free pages back (a few milliseconds of a worker thread).

Between those trims, a photo's buffers are reused rather than mapped afresh: by
default glibc maps each buffer over 128 KB-32 MB on its own and returns the heap's
top past twice that, so every 12 MP photo (a 48 MB decode, a 36 MB crop) paid for
page faults on new memory. Buffers up to 32 MB come from the heap, and up to
128 MB of freed heap stays for the next photo: decoding and preprocessing a 12 MP
JPEG went from 107 to 66 ms here (Zen 4 EPYC), the same arrays, and the peak for two at once
fell (342 to 327 MB), since the periodic trim still gives it back when idle.

That was on the main thread; the server decodes in worker threads. With two arenas a
worker thread's arena faulted each of Pillow's 16 MB image blocks in afresh (8,700
page faults a 12 MP photo, 75 ms, as with glibc's defaults); sharing the main arena
it reuses them (58 ms). Over HTTP at c=16 (bench/, Zen 4 EPYC): 12 MP photos 22 to
27 images/s, 2 MP 72-78 to 84-86, and the peak no higher (378-385 to 369-383 MB).
Where the C library isn't glibc, all of it does nothing.
"""

import asyncio
import ctypes
import os

_LIBC = ctypes.CDLL(None)
# mallopt's parameters (glibc's malloc.h), each with the variable glibc reads at start.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
SETTINGS = {
    M_ARENA_MAX: ("MALLOC_ARENA_MAX", 1),
    M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 32 << 20),
    M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 128 << 20),
}
TRIM_EVERY_S = 5.0


def tune_malloc() -> None:
    """For this process (mallopt) and every process it starts: uvicorn's workers
    (WEB_CONCURRENCY > 1) and --reload's server are fresh interpreters, which glibc
    configures from the environment when they start. A variable the operator set wins."""
    mallopt = getattr(_LIBC, "mallopt", None)
    for parameter, (variable, value) in SETTINGS.items():
        chosen = os.environ.setdefault(variable, str(value))
        if mallopt is not None and chosen.isascii() and chosen.isdigit():
            mallopt(parameter, int(chosen))  # glibc ignores a value that isn't a number


async def trim_periodically(every_s: float = TRIM_EVERY_S) -> None:
    """Runs for the app's lifetime (app/main.py's lifespan)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(trim, 0)
