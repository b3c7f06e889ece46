"""What a request may use, typed: built once by the lifespan (app/main.py) and handed to
every request as `request.state.services` (Starlette's lifespan state)."""

from dataclasses import dataclass
from typing import Any, TypedDict

from app.feedback.store import FeedbackStore
from app.limits.admission import Admission
from app.limits.budget import UploadBudget
from app.ops.metrics import Metrics
from app.pipeline import Pipeline
from app.settings import Settings


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    budget: UploadBudget
    pipeline: Pipeline
    admission: Admission
    model_info: dict[str, Any]  # what /api/model says
    feedback: FeedbackStore | None = None  # FEEDBACK_DIR's store, when feedback is on

    @property
    def ready(self) -> bool:
        """Readiness, from one flag: loaded (these exist), and not draining to stop."""
        return not self.admission.draining


class State(TypedDict):
    """The lifespan's state, as each request's `request.state` carries it."""

    services: Services
