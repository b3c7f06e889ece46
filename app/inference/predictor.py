"""Predicting: decode, preprocess and infer, off the event loop, batching what arrives together.

Decoding and preprocessing run in a thread pool (Pillow, numpy and ONNX Runtime
release the GIL), so they overlap with inference; so does the other work on an image
that a request asks for (`run`: a mask drawn, the page's copy of the photo).
Inference runs on its own workers (threads), each taking what is queued when it comes
free as one batch, up to a maximum: a lone request never waits. The event loop only
moves futures around, so /healthz answers while predictions run.

On a small CPU, independent single-threaded workers beat one multi-threaded
run, and batching doesn't lower ONNX Runtime's cost per image
(docs/benchmarks.md measures both), so the defaults are one worker per core,
one intra-op thread each, batches of up to MICROBATCH_MAX_SIZE. All are
settings.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from app.inference.model import Model
from app.kinds.base import Prediction
from app.settings import Settings

# Told of each forward pass: its seconds and its batch's size (the metrics, app/ops/).
Observer = Callable[[float, int], None]
T = TypeVar("T")


class Predictor:
    """Image bytes to the graph's output for them: decode, preprocess, infer."""

    def __init__(
        self,
        model: Model,
        *,
        max_pixels: int,
        max_batch: int,
        max_wait_ms: float,
        workers: int,
        prep_threads: int,
        observe: Observer | None = None,
    ) -> None:
        self.model = model
        self._max_pixels = max_pixels
        # Images of different sizes can't share a batch: a model without a fixed input
        # size runs each on its own.
        self._max_batch = max_batch if model.input_size else 1
        self._max_wait_s = max_wait_ms / 1000
        self._prep = ThreadPoolExecutor(prep_threads, thread_name_prefix="prep")
        self._observe = observe
        self._workers = workers
        self._infer = ThreadPoolExecutor(workers, thread_name_prefix="infer")
        # Each image's input, whether to explain it, and who waits for it.
        self._queue: asyncio.Queue[tuple[np.ndarray, bool, asyncio.Future[Any]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(
        cls, model: Model, settings: Settings, observe: Observer | None = None
    ) -> "Predictor":
        return cls(
            model,
            max_pixels=settings.max_image_pixels,
            max_batch=settings.microbatch_max_size,
            max_wait_ms=settings.microbatch_max_wait_ms,
            workers=settings.inference_workers,
            prep_threads=settings.prep_threads,
            observe=observe,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._infer, self.model.warm_up)
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._prep.shutdown(wait=False, cancel_futures=True)
        self._infer.shutdown(wait=False, cancel_futures=True)

    async def predict(self, data: bytes, explain: bool = False) -> Prediction:
        """The graph's output for one encoded image, and the photo's size (with `explain`,
        the cells' scores too); raises ApiError for a bad image."""
        loop = asyncio.get_running_loop()
        tensor, sizes = await loop.run_in_executor(self._prep, self._decode_and_preprocess, data)
        result: asyncio.Future[tuple[np.ndarray, np.ndarray | None]] = loop.create_future()
        self._queue.put_nowait((tensor, explain, result))
        output, cells = await result
        return Prediction(output, *sizes, cells=cells)

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """Other CPU work on an image, in decoding's pool, off the event loop: drawing a
        mask, the page's copy of a photo (a 49 MP PNG takes most of a second to decode)."""
        return await asyncio.get_running_loop().run_in_executor(self._prep, work, *args)

    def _decode_and_preprocess(
        self, data: bytes
    ) -> tuple[np.ndarray, tuple[tuple[int, int], tuple[int, int]]]:
        image = self.model.decode(data, self._max_pixels)
        return self.model.preprocess(image), (image.info["photo_size"], image.size)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._max_wait_s > 0 and not self._queue.empty():
                await asyncio.sleep(self._max_wait_s)  # more are coming: let them join
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # Explained and plain images run apart: a plain one doesn't pay for the head.
            for explain in (False, True):
                live = [(x, fut) for x, e, fut in batch if e is explain and not fut.done()]
                if live:  # else all cancelled, or none of this sort
                    await self._forward(live, explain)

    async def _forward(
        self, live: list[tuple[np.ndarray, asyncio.Future[Any]]], explain: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        inputs = [x for x, _ in live]
        try:
            cells: list[np.ndarray | None] = [None] * len(live)
            if explain:
                outputs, explained = await loop.run_in_executor(
                    self._infer, self.model.explain, inputs
                )
                cells = list(explained)
            else:
                outputs = await loop.run_in_executor(self._infer, self.model.infer, inputs)
        except Exception as exc:  # noqa: BLE001 - a failed forward pass fails its batch only
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        if self._observe is not None:
            self._observe(loop.time() - started, len(live))
        for (_, fut), row, row_cells in zip(live, outputs, cells, strict=True):
            if not fut.done():
                fut.set_result((row, row_cells))
