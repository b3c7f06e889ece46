"""Prometheus metrics, with prometheus-client, one registry per app.

With WEB_CONCURRENCY > 1 each process counts its own requests: scrape each
process, or run one process per container.
"""

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from app.kinds import Kind
from app.limits.admission import Admission
from app.limits.budget import UploadBudget

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pounce_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "pounce_http_request_duration_seconds",
            "Time to answer a request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "pounce_predictions_in_flight",
            "Images holding a prediction slot (a request holds one an image).",
            registry=r,
        )
        self.queued = Gauge(
            "pounce_predictions_queued", "Prediction requests waiting for their slots.", registry=r
        )
        self.upload_buffer = Gauge(
            "pounce_upload_buffer_bytes",
            "Bytes of request bodies and fetched images held at once (UPLOAD_BUFFER_MB).",
            registry=r,
        )
        self.queue_wait = Histogram(
            "pounce_queue_wait_seconds",
            "Time a prediction request waited for a slot.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "pounce_inference_seconds",
            "Time to infer one batch (the forward pass).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "pounce_batch_size",
            "Images per forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.model = Info("pounce_model", "The model being served.", registry=r)
        self.feedback = Counter(
            "pounce_feedback",
            "Feedback kept, by kind: an answer confirmed, or corrected.",
            ["kind"],
            registry=r,
        )
        self.feedback_holds = Counter(
            "pounce_feedback_holds",
            "Answered photos held for feedback (FEEDBACK_DIR), or not: over FEEDBACK_HOLD_MB.",
            ["outcome"],
            registry=r,
        )
        for kind in ("confirmed", "corrected"):
            self.feedback.labels(kind)
        for outcome in ("held", "too_large"):
            self.feedback_holds.labels(outcome)

    def observe_inference(self, seconds: float, batch: int) -> None:
        """One forward pass (app/inference/predictor.py tells it)."""
        self.inference.observe(seconds)
        self.batch_size.observe(batch)

    def watch(
        self, admission: Admission, budget: UploadBudget, model_info: dict[str, Any], kind: Kind
    ) -> None:
        """Read the gauges from the admission control and the upload budget; describe
        the model (its kind adds what it says of it: a classifier, its class count)."""
        self.in_flight.set_function(lambda: admission.in_flight)
        self.queued.set_function(lambda: admission.waiting)
        self.upload_buffer.set_function(lambda: budget.used)
        self.model.info(
            {
                "file": model_info["file"],
                "sha256": model_info["sha256"],
                "architecture": model_info["architecture"],
                "kind": kind.name,
                **kind.metric_labels(),
                "runtime": f"{model_info['runtime']['name']} {model_info['runtime']['version']}",
                "source_file": model_info["source"]["file"],
                "source_sha256": model_info["source"]["sha256"],
            }
        )


async def metrics(request: Request) -> Response:
    """Prometheus text format; exempt from admission, like the health checks."""
    registry = request.state.services.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
