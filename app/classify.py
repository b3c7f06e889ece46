"""The one path from an image source to an answer, shared by the API and the CLI.

A source is an image's bytes (an upload, decoded base64, a file the CLI read) or
a URL, fetched here under the URL rules. Getting the bytes is I/O and holds no
prediction slot; classifying them (decode, preprocess, inference, the answer's
shape) is the CPU work the API runs inside an admission slot. `top_k` is checked
here once, for both.
"""

import numpy as np

from app.batching import Predictor
from app.budget import Reservation
from app.errors import ApiError
from app.fetch import Fetcher
from app.metrics import Metrics
from app.model import Model
from app.settings import Settings


class Classifier:
    """The model's predictor and the URL fetcher, started and stopped together."""

    def __init__(self, predictor: Predictor, fetcher: Fetcher, default_top_k: int) -> None:
        self.predictor = predictor
        self.fetcher = fetcher
        self.model = predictor.model
        self.default_top_k = self.model.default_top_k(default_top_k)

    @classmethod
    def from_settings(
        cls, model: Model, settings: Settings, metrics: Metrics | None = None
    ) -> "Classifier":
        predictor = Predictor.from_settings(model, settings, metrics)
        return cls(predictor, Fetcher.from_settings(settings), settings.top_k)

    async def start(self) -> None:
        await self.predictor.start()
        await self.fetcher.start()

    async def close(self) -> None:
        await self.fetcher.close()
        await self.predictor.stop()

    def top_k(self, raw: str | None) -> int:
        """How many classes to list: `raw` as a client or the CLI gave it, or the default."""
        if raw is None:
            return self.default_top_k
        classes = len(self.model.labels)
        if not raw.isdigit() or not 1 <= int(raw) <= classes:
            raise ApiError(
                "invalid_top_k", f"top_k must be an integer from 1 to {classes}, not {raw[:20]!r}."
            )
        return int(raw)

    async def image_bytes(
        self, source: str | bytes, reservation: Reservation | None = None
    ) -> bytes:
        """The image itself: fetched when it is a URL, counted against `reservation`."""
        if isinstance(source, bytes):
            return source
        return await self.fetcher.fetch(source, reservation)

    async def probabilities(self, data: bytes) -> np.ndarray:
        """Decode and run one image: every class's probability."""
        return await self.predictor.predict(data)

    async def classify(self, data: bytes, top_k: int) -> dict:
        """Decode and classify one image: the answer the API and the CLI give."""
        return self.model.result(await self.probabilities(data), top_k)
