"""What each kind of model answers: one module a kind, found through KINDS.

A new kind is a module here (a `Kind`: app/kinds/base.py), a line in KINDS, its
template partial (templates/kinds/<name>.html), a learner of its kind in the corpus
(tests/helpers.py's KIND_LEARNERS) and its tests; the API, the page, the CLI, the Open
Inference Protocol, the OpenAPI document, the metrics and compiling's parity and INT8
checks all ask the kind, and none of them branches on which kind it is. (Only
compiler/kinds.py, which reads which kind a fastai learner is, names them.)
"""

from collections.abc import Mapping
from typing import Any

from app.kinds.base import Kind, Prediction, Tensor
from app.kinds.keypoints import Keypoints
from app.kinds.multi_label import MultiLabel
from app.kinds.regression import Regression
from app.kinds.segmentation import Segmentation
from app.kinds.single_label import SingleLabel

KINDS: dict[str, type[Kind]] = {
    kind.name: kind for kind in (SingleLabel, MultiLabel, Regression, Keypoints, Segmentation)
}

__all__ = ["KINDS", "Kind", "Prediction", "Tensor", "kind_of"]


def kind_of(info: dict[str, Any], defaults: Mapping[str, float] | None = None) -> Kind:
    """The kind a compiled file's description records; `defaults` (the server's TOP_K and
    MAX_MASK_MEGAPIXELS) are needed to answer, not to decide (compiling's checks)."""
    return KINDS[info["kind"]](info, defaults or {})
