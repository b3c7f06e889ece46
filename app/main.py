"""The application: its route table, middleware and lifespan.

Read the route table to see where a request goes.
"""

import asyncio
import logging
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import FrameType

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app.feedback.store import FeedbackStore, prune_periodically
from app.http import api, feedback, pages
from app.http.handlers import EXCEPTION_HANDLERS, Unexpected, render_api
from app.http.openapi import openapi_schema
from app.inference.loading import load_model
from app.inference.model import Model, ModelLoadError
from app.limits.admission import Admission
from app.limits.body import BodyLimits
from app.limits.budget import UploadBudget
from app.ops.context import RequestContext
from app.ops.memory import trim_periodically
from app.ops.metrics import Metrics, metrics
from app.pipeline import Pipeline
from app.protocols import open_inference
from app.services import Services, State
from app.settings import ROOT, Settings, load_settings

logger = logging.getLogger("app")

routes = [
    Route("/", pages.home, methods=["GET"], include_in_schema=False, name="home"),
    Route("/api/predict", api.Predict, name="predict"),
    Route("/api/predict/batch", api.predict_batch, methods=["POST"], name="predict_batch"),
    Route("/api/model", api.model_info, methods=["GET"], name="model"),
    Route("/api/feedback", feedback.feedback, methods=["POST"], name="feedback"),
    Route("/api/feedback/export", feedback.export, methods=["GET"], name="feedback_export"),
    Route("/api/feedback/summary", feedback.summary, methods=["GET"], name="feedback_summary"),
    Route("/healthz", api.healthz, methods=["GET"], name="healthz"),
    Route("/readyz", api.readyz, methods=["GET"], name="readyz"),
    # The Open Inference Protocol (KServe V2 REST), with its own routes and error shape.
    *open_inference.routes,
    Route("/metrics", metrics, methods=["GET"], include_in_schema=False, name="metrics"),
    Route("/openapi.json", openapi_schema, include_in_schema=False, name="openapi"),
    Route("/docs", pages.docs, include_in_schema=False, name="docs"),
    Mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger"),
    Mount("/static", StaticFiles(directory=ROOT / "static"), name="static"),
]


def lifespan(
    settings: Settings, metrics: Metrics, budget: UploadBudget, load: Callable[[Settings], Model]
) -> Callable[[Starlette], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[State]:
        """Load and warm the model before serving; release everything on the way out."""
        try:
            model = await anyio.to_thread.run_sync(load, settings)
        except ModelLoadError as exc:
            logger.critical("cannot serve %s: %s", settings.model_path, exc)
            raise ModelLoadError(f"cannot serve {settings.model_path}: {exc}") from None
        store = await open_feedback(settings)
        pipeline = Pipeline.from_settings(model, settings, metrics.observe_inference)
        admission = Admission.from_settings(settings, metrics.queue_wait.observe)
        await pipeline.start()
        tasks = [asyncio.create_task(trim_periodically())]
        if store is not None:
            tasks.append(asyncio.create_task(prune_periodically(store)))
        info = {"name": settings.model_name, **pipeline.describe()}
        services = Services(settings, metrics, budget, pipeline, admission, info, store)
        metrics.watch(admission, budget, info, pipeline.kind)
        drain_on_sigterm(admission)
        logger.info("serving %s (%s) with %s", model.name, info["kind"], info["runtime"]["name"])
        try:
            yield {"services": services}
        finally:
            admission.draining = True
            for task in tasks:
                task.cancel()
            await pipeline.close()
            if store is not None:
                store.close()

    return run


async def open_feedback(settings: Settings) -> FeedbackStore | None:
    """FEEDBACK_DIR's store, opened (made, when new) before serving; None when it is off.
    A folder it can't use stops the server with one line, as a model it can't load does."""
    if settings.feedback_dir is None:
        return None
    try:
        return await anyio.to_thread.run_sync(FeedbackStore.from_settings(settings).open)
    except (OSError, sqlite3.Error) as exc:
        logger.critical("cannot keep feedback in %s: %s", settings.feedback_dir, exc)
        raise ModelLoadError(f"cannot keep feedback in {settings.feedback_dir}: {exc}") from None


def drain_on_sigterm(admission: Admission) -> None:
    """On SIGTERM, turn readiness to 503 and refuse new predictions with 503 (one flag:
    draining), then let uvicorn's own handler drain in-flight requests and exit.

    uvicorn installs its handler before the lifespan runs; this one runs first
    and hands over to it. Signals belong to the main thread: under a test
    client (another thread) there is nothing to install.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    uvicorn_handler = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        admission.draining = True
        logger.info("SIGTERM: draining in-flight requests")
        if callable(uvicorn_handler):
            uvicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def create_app(
    settings: Settings | None = None, load: Callable[[Settings], Model] = load_model
) -> Starlette:
    """Build the app; settings default to the environment's. `load` gives the model:
    bench/ passes its TorchScript baseline, to measure it through this same stack."""
    settings = settings or load_settings()
    logger.setLevel(settings.log_level.upper())
    metrics = Metrics()
    budget = UploadBudget(settings.upload_buffer_bytes)
    middleware = [
        Middleware(RequestContext, metrics=metrics),
        Middleware(
            BodyLimits,
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.body_timeout_s,
            budget=budget,
        ),
        Middleware(Unexpected, render=render_api),
    ]
    if settings.cors_origins:
        middleware.insert(
            1,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
                # Browser code on another origin may read these only when they are exposed.
                expose_headers=["X-Request-ID", "Retry-After"],
            ),
        )
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan(settings, metrics, budget, load),
    )
