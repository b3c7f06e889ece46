"""Bounded admission: shed load with a clear 503 instead of queueing forever.

At most `max_in_flight` predictions run at once and `max_queue` more wait for a
slot. A request that finds the queue full, or that waits longer than
`queue_timeout_s` (well under Heroku's 30 s router timeout), is answered 503
with Retry-After at once. While the server drains for shutdown, new requests
are refused the same way. Health, readiness and metrics never come here.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from app.errors import Overloaded
from app.settings import Settings


class Admission:
    """The prediction slots. `observe_wait` is told each admitted request's seconds in
    the queue (the metrics, app/ops/metrics.py)."""

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
        self.in_flight = 0
        self.waiting = 0
        self.draining = False
        self._slots = asyncio.Semaphore(max_in_flight)

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

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one of the in-flight slots for a prediction request (503 when full)."""
        if self.draining:
            raise Overloaded("shutting_down", "The server is shutting down; try again shortly.")
        if self._slots.locked() and self.waiting >= self.max_queue:
            raise Overloaded("overloaded", "The server is at capacity; try again shortly.")
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(
                "queue_timeout",
                f"The request waited over {self.queue_timeout_s:g} s for a free slot.",
            ) from None
        finally:
            self.waiting -= 1
        self.in_flight += 1
        self.observe_wait(loop.time() - queued_at)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
