"""What every kind of model says about itself: the interface app/kinds/ modules fill in.

A compiled file records its kind (`info["kind"]`); the kind's module is the one place
that knows what the graph's output means: what `learn.predict` would decode from it
(`decide`, and `from_fastai` for what fastai itself decoded, which compiling's parity
check and INT8's agreement check compare), the answer the API, the batch endpoint, the
page and the CLI give (`answer`, rendered on the page by templates/kinds/<name>.html),
the query options it takes, its Open Inference Protocol outputs, what /api/model says
of it (`describe`), the OpenAPI schemas of both (`schemas`, `description`), and the few
words compiling, the page and the metrics name it by (`summary`, `metric_labels`). No
web framework is imported here: compiler/ uses kinds too.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """The graph's output for one image; the size of the upright photo it was predicted
    from (what answers in the photo's own frame map back to), and the size it was
    decoded at (smaller, for a JPEG decoded in draft mode), which preprocessing saw."""

    output: np.ndarray
    size: tuple[int, int]
    decoded: tuple[int, int]
    # Each output's score with one cell of the feature map kept [rows, columns, outputs],
    # when the prediction was asked to explain itself (app/inference/explanation.py).
    cells: np.ndarray | None = None


@dataclass(frozen=True)
class Tensor:
    """One Open Inference Protocol output: numbers as an array, BYTES as a list of str
    (or of bytes, sent as base64 in JSON)."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[str] | list[bytes]


class Kind:
    """One kind of model, made from a compiled file's description (`info`)."""

    name: ClassVar[str]
    # The answer's OpenAPI schema, by name (then the schemas it refers to), an example of
    # it, and the query parameters the kind takes.
    schemas: ClassVar[dict[str, dict[str, Any]]]
    example: ClassVar[dict[str, Any]]
    # What `describe` adds to /api/model beside `kind`, as OpenAPI properties (all present).
    description: ClassVar[dict[str, dict[str, Any]]] = {}
    parameters: ClassVar[list[dict[str, Any]]] = []
    # Whether the page draws the answer on the photo (it then carries a copy of it).
    draws_on_photo: ClassVar[bool] = False
    # Whether answering draws an image (a mask): tens of milliseconds for a big photo,
    # so the pipeline runs `answer` and `tensors` in the prep pool, off the event loop.
    draws_images: ClassVar[bool] = False
    # Whether a map of where the network looked can explain an answer (app/kinds/explanation.py).
    explains: ClassVar[bool] = False
    # The field a correction of an answer names (`label`, `labels`, `values`: app/feedback/),
    # or None for a kind whose answers are not corrected here (a place in the photo).
    corrected_by: ClassVar[str | None] = None
    # Whether what corrects it is numbers, not classes: the export gives each its own
    # column (fastai's RegressionBlock reads one number a column), the summary no class.
    corrected_by_numbers: ClassVar[bool] = False

    def __init__(self, info: dict[str, Any], defaults: Mapping[str, float]) -> None:
        """`defaults`: the server's settings the kinds read (TOP_K, MAX_MASK_MEGAPIXELS)."""
        self.info = info
        self.defaults = defaults

    @property
    def template(self) -> str:
        """The page's partial for this kind's answer."""
        return f"kinds/{self.name}.html"

    @classmethod
    def answer_schema(cls) -> str:
        """The name of the answer's schema: the first of `schemas`."""
        return next(iter(cls.schemas))

    @classmethod
    def answer_fields(cls) -> list[str]:
        """The answer's fields but `kind`, and `explanation` (only asked for with explain=true):
        the page's code snippet reads them."""
        fields = cls.schemas[cls.answer_schema()]["properties"]
        return [name for name in fields if name not in ("kind", "explanation")]

    @classmethod
    def model_schema(cls) -> dict[str, Any]:
        """The OpenAPI schema of what `describe` says (/api/model adds the file's own)."""
        kind = {"type": "string", "enum": [cls.name], "description": "The model's kind."}
        return {
            "type": "object",
            "required": ["kind", *cls.description],
            "properties": {"kind": kind, **cls.description},
        }

    def bound_parameters(self) -> list[dict[str, Any]]:
        """`parameters`, bounded by this model (the OpenAPI document of a server)."""
        return self.parameters

    def options(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The request's options for `answer` (a query string, or the CLI's flags)."""
        return {}

    def decide(self, output: np.ndarray) -> object:
        """What `learn.predict` would decode from one image's output (in the model's frame):
        labels, a mask, or the numbers themselves."""
        raise NotImplementedError

    def from_fastai(self, decoded: np.ndarray, output: np.ndarray) -> object:
        """What `learn.predict` decoded (its second value, as numpy), in `decide`'s form, for
        one image whose raw output was `output`: by default fastai's decoding is `decide`'s
        on that same output."""
        return self.decide(output)

    def agrees(self, ours: object, theirs: object) -> bool:
        """Whether two decisions are the same answer (parity, INT8's agreement)."""
        return ours == theirs

    def answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        """One image's answer, as the API, the batch endpoint and the CLI give it."""
        raise NotImplementedError

    def explain_target(self, output: np.ndarray, options: dict[str, Any]) -> tuple[int, str]:
        """Which output an explanation of this answer maps: its index in one image's output,
        and its name; ApiError when the request's choice can't be explained (for a kind
        that `explains`)."""
        raise NotImplementedError

    def outputs(self) -> list[dict[str, Any]]:
        """The Open Inference Protocol outputs: name, datatype and shape of each."""
        raise NotImplementedError

    def tensor(
        self, name: str, predictions: list[Prediction], parameters: dict[str, Any]
    ) -> Tensor:
        """One Open Inference Protocol output for a batch's predictions; ValueError with a
        message for the client when `parameters` can't be met."""
        raise NotImplementedError

    def tensors(
        self, requested: Mapping[str, dict[str, Any]], predictions: list[Prediction]
    ) -> list[Tensor]:
        """The outputs a request asks for (name: its parameters), in its order. A kind
        whose outputs share work (a mask) does it once here, for all of them."""
        return [self.tensor(name, predictions, params) for name, params in requested.items()]

    def predicted(self, answer: dict[str, Any]) -> tuple[list[str], float | None]:
        """What an answer said, as the feedback store keeps it (for a kind `corrected_by`):
        its labels or values as text, and its probability where it has one."""
        raise NotImplementedError

    def correction(self, value: object, new_labels: bool) -> list[str]:
        """A correction's `corrected_by` field, checked and in `predicted`'s form; ApiError
        `invalid_label` for a label the model lacks (unless `new_labels` lets a well-formed
        new one in) or values it can't have."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What /api/model says of the kind: `kind` and `description`'s fields."""
        return {"kind": self.name}

    def summary(self) -> str:
        """The kind in a few words: compiling's first line and the page's footer say it."""
        raise NotImplementedError

    def metric_labels(self) -> dict[str, str]:
        """What the pounce_model metric says of the model besides its kind."""
        return {}
