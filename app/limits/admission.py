"""Bounded admission: shed load with a clear 503 instead of queueing forever.

At most `max_in_flight` images are decoded and predicted at once: a request takes a
slot for each image it carries (a batch of 16 takes 16), and `max_queue` more
requests may wait for their slots. A request with more images than `max_in_flight`
takes every slot, and runs its images that many at a time, so it neither waits for
slots that can't exist nor runs more images than the limit. Waiting requests are
served in order of arrival, so a big batch is not starved by a stream of single
photos. A request that finds the queue full, or that waits longer than
`queue_timeout_s` (well under Heroku's 30 s router timeout), is answered 503 with
Retry-After at once. While the server drains for shutdown, new requests are refused
the same way. Health, readiness and metrics never come here.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from app.errors import Overloaded
from app.settings import Settings

T = TypeVar("T")
R = TypeVar("R")


class Slots:
    """The slots one admitted request holds: its images run at most this many at once."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._limit = asyncio.Semaphore(count)

    async def map(
        self,
        work: Callable[[T], Awaitable[R]],
        items: Iterable[T],
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """`work` on every item, at most `count` at once, each result in its item's place
        (an exception too, with `return_exceptions`). Every item has finished before this
        returns or raises (the first exception, without `return_exceptions`), so no work
        outlives the slots it ran under."""

        async def one(item: T) -> R:
            async with self._limit:
                return await work(item)

        runs = [one(item) for item in items]
        if return_exceptions:
            return await asyncio.gather(*runs, return_exceptions=True)
        return await all_finished(*runs)


async def all_finished(*work: Awaitable[Any]) -> list[Any]:
    """asyncio.gather, except that every one has finished before the first error comes
    out: work run under a request's slots never outlives them."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


class Admission:
    """The prediction slots, one an image. `observe_wait` is told each admitted request's
    seconds in the queue (the metrics, app/ops/metrics.py)."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        max_queue: int,
        queue_timeout_s: float,
        observe_wait: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.observe_wait = observe_wait
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.free = max_in_flight
        self.draining = False
        # The waiting requests, first come first served: the slots each wants, and the
        # future that is given them.
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    @classmethod
    def from_settings(
        cls, settings: Settings, observe_wait: Callable[[float], None]
    ) -> "Admission":
        return cls(
            max_in_flight=settings.max_in_flight,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
            observe_wait=observe_wait,
        )

    @property
    def in_flight(self) -> int:
        """Images holding a slot."""
        return self.max_in_flight - self.free

    @property
    def waiting(self) -> int:
        """Requests waiting for their slots."""
        return len(self._queue)

    @asynccontextmanager
    async def admit(self, images: int = 1) -> AsyncIterator[Slots]:
        """Hold a slot for each of a request's `images` (all of them, when it has more
        than there are), or 503 when the queue is full or the wait too long."""
        if self.draining:
            raise Overloaded("shutting_down", "The server is shutting down; try again shortly.")
        wanted = max(1, min(images, self.max_in_flight))
        if not self._queue and self.free >= wanted:
            self.free -= wanted
            self.observe_wait(0.0)
        elif len(self._queue) >= self.max_queue:
            raise Overloaded("overloaded", "The server is at capacity; try again shortly.")
        else:
            await self._wait(wanted)
        try:
            yield Slots(wanted)
        finally:
            self.free += wanted
            self._wake()

    async def _wait(self, wanted: int) -> None:
        """Queue for `wanted` slots until they are given, or the queue timeout."""
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        granted: asyncio.Future[None] = loop.create_future()
        entry = (wanted, granted)
        self._queue.append(entry)
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await granted
        except BaseException as exc:  # the timeout, or the client gone (cancelled)
            if granted.done() and not granted.cancelled():
                self.free += wanted  # given just as it gave up: pass them on
            elif entry in self._queue:
                self._queue.remove(entry)
            self._wake()  # the next in line may fit now
            if isinstance(exc, TimeoutError):
                raise Overloaded(
                    "queue_timeout",
                    f"The request waited over {self.queue_timeout_s:g} s for a free slot.",
                ) from None
            raise
        self.observe_wait(loop.time() - queued_at)

    def _wake(self) -> None:
        """Give free slots to the waiting requests, in order, while the first fits."""
        while self._queue:
            wanted, granted = self._queue[0]
            if granted.done():  # gave up; its own handler is removing it
                self._queue.popleft()
                continue
            if wanted > self.free:
                return
            self._queue.popleft()
            self.free -= wanted
            granted.set_result(None)
