"""The one path from an image source to an answer, shared by the API, the Open Inference
Protocol and the CLI.

Its steps, each with one name in the code, the docs and the metrics:

- **fetch**: a URL's bytes, under the URL rules (app/intake/fetch.py); I/O, holding no
  prediction slot. (An upload, base64 or a file the CLI read are bytes already.)
- **predict**: decode the image, preprocess it and infer, micro-batched off the event
  loop (app/inference/predictor.py): the graph's output. The API runs this inside an
  admission slot.
- **answer**: the model's kind turns that output into the answer (app/kinds/), with the
  request's options (`top_k`), which the kind reads and checks once for every surface;
  with `explain`, the map of where the network looked for it is drawn over the photo
  (app/inference/explanation.py) and added as `explanation`.
  A kind whose answers draw images (`Kind.draws_images`: a mask) draws them in the prep
  pool, off the event loop, as decoding is; the API holds the admission slot until then.
"""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from app.errors import ApiError
from app.inference.explanation import Explainer
from app.inference.model import Model
from app.inference.predictor import Observer, Predictor
from app.intake.fetch import Fetcher
from app.intake.flags import boolean
from app.kinds import Kind, Prediction, kind_of
from app.limits.budget import Reservation
from app.settings import Settings

T = TypeVar("T")


class Pipeline:
    """The model's predictor, its kind and the URL fetcher, started and stopped together."""

    def __init__(
        self, predictor: Predictor, fetcher: Fetcher, kind: Kind, explainer: Explainer
    ) -> None:
        self.predictor = predictor
        self.fetcher = fetcher
        self.kind = kind
        self.explainer = explainer
        self.model = predictor.model

    @classmethod
    def from_settings(
        cls, model: Model, settings: Settings, observe: Observer | None = None
    ) -> "Pipeline":
        return cls(
            Predictor.from_settings(model, settings, observe),
            Fetcher.from_settings(settings),
            kind_of(model.info, settings.kind_defaults),
            Explainer(model.preprocessor, settings.max_heatmap_megapixels * 1_000_000),
        )

    async def start(self) -> None:
        await self.predictor.start()
        await self.fetcher.start()

    async def close(self) -> None:
        await self.fetcher.close()
        await self.predictor.stop()

    def options(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The request's options (a query string, or the CLI's flags), checked by the kind;
        `explain` here, for every kind."""
        options = self.kind.options(query)
        if boolean(query, "explain", False):
            self._check_explains()
            options["explain"] = True
        return options

    @property
    def explains(self) -> bool:
        """Whether `explain` can be asked of this model: its kind's answers can be explained
        and its compiled file carries the head that does it (/v2 lists `heatmap` then)."""
        return self.kind.explains and self.model.explains

    def _check_explains(self) -> None:
        if not self.kind.explains:
            raise ApiError(
                "explain_not_applicable",
                f"A {self.kind.name} model's answer is already a place in the photo: "
                "explain is for classifiers and regression.",
            )
        if not self.model.explains:
            reason = (self.model.info.get("explanation") or {}).get("refused", "")
            raise ApiError(
                "explain_unavailable", f"This model can't explain its answers: {reason}."
            )

    async def fetch(self, source: str | bytes, reservation: Reservation | None = None) -> bytes:
        """The image itself: fetched when it is a URL, counted against `reservation`."""
        if isinstance(source, bytes):
            return source
        return await self.fetcher.fetch(source, reservation)

    async def predict(self, data: bytes, explain: bool = False) -> Prediction:
        """Decode, preprocess and infer one image: the graph's output, and the photo's
        frame; with `explain`, each output's score per cell of the feature map too."""
        return await self.predictor.predict(data, explain)

    async def answer(self, data: bytes, options: dict[str, Any]) -> dict[str, Any]:
        """Predict, and the kind's answer: what the API and the CLI give."""
        explain = options.get("explain", False)
        prediction = await self.predict(data, explain)
        return await self.draw(self._answer, prediction, options, drawing=explain)

    def _answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        answer = self.kind.answer(prediction, options)
        if options.get("explain"):
            index, target = self.kind.explain_target(prediction.output, options)
            answer["explanation"] = self.explainer.explain(prediction, index, target)
        return answer

    async def draw(self, work: Callable[..., T], *args: object, drawing: bool = False) -> T:
        """Work on predictions that may draw images: in the prep pool for a kind that
        draws them (`Kind.draws_images`: a 12 MP photo's mask takes about 66 ms) or when
        `drawing` (a heatmap), here otherwise (a classifier's answer takes microseconds:
        not worth queueing behind decodes)."""
        if self.kind.draws_images or drawing:
            return await self.predictor.run(work, *args)
        return work(*args)

    async def offload(self, work: Callable[..., T], *args: object) -> T:
        """Other CPU work on an image (the page's copy of the photo), in the prep pool."""
        return await self.predictor.run(work, *args)

    def describe(self) -> dict[str, Any]:
        """What /api/model says: the compiled file, and the kind's own."""
        return {**self.model.metadata(), **self.kind.describe()}
