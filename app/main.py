"""The application: its route table, middleware and lifespan.

Read the route table to see where a request goes.
"""

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app import api, pages
from app import open_inference as v2
from app.admission import Admission
from app.budget import UploadBudget
from app.classify import Classifier
from app.compiling import load_model
from app.errors import EXCEPTION_HANDLERS
from app.memory import trim_periodically
from app.metrics import Metrics, metrics
from app.middleware import BodyLimits, RequestContext
from app.model import Model, ModelLoadError
from app.openapi import openapi_schema
from app.settings import Settings, load_settings

logger = logging.getLogger("app")

routes = [
    Route("/", pages.home, methods=["GET"], include_in_schema=False, name="home"),
    Route("/api/predict", api.Predict, name="predict"),
    Route("/api/predict/batch", api.predict_batch, methods=["POST"], name="predict_batch"),
    Route("/api/model", api.model_info, methods=["GET"], name="model"),
    Route("/healthz", api.healthz, methods=["GET"], name="healthz"),
    Route("/readyz", api.readyz, methods=["GET"], name="readyz"),
    # The Open Inference Protocol (KServe V2 REST), for standard inference clients.
    Route("/v2", v2.server_metadata, methods=["GET"], include_in_schema=False),
    Route("/v2/health/live", v2.server_live, methods=["GET"], include_in_schema=False),
    Route("/v2/health/ready", v2.server_ready, methods=["GET"], include_in_schema=False),
    Route("/v2/models/{name}", v2.model_metadata, methods=["GET"], include_in_schema=False),
    Route("/v2/models/{name}/ready", v2.model_ready, methods=["GET"], include_in_schema=False),
    Route("/v2/models/{name}/infer", v2.infer, methods=["POST"], include_in_schema=False),
    Route("/metrics", metrics, methods=["GET"], include_in_schema=False, name="metrics"),
    Route("/openapi.json", openapi_schema, include_in_schema=False, name="openapi"),
    Route("/docs", pages.docs, include_in_schema=False, name="docs"),
    Mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="swagger"),
    Mount("/static", StaticFiles(directory=pages.ROOT / "static"), name="static"),
]


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Load and warm the model before serving; release everything on the way out."""
    settings: Settings = app.state.settings
    try:
        model = await anyio.to_thread.run_sync(app.state.load_model, settings)
    except ModelLoadError as exc:
        logger.critical("cannot serve %s: %s", settings.model_path, exc)
        raise ModelLoadError(f"cannot serve {settings.model_path}: {exc}") from None
    classifier = Classifier.from_settings(model, settings, app.state.metrics)
    admission = Admission(
        max_in_flight=settings.max_in_flight,
        max_queue=settings.max_queue,
        queue_timeout_s=settings.queue_timeout_s,
    )
    await classifier.start()
    trimmer = asyncio.create_task(trim_periodically())
    app.state.classifier = classifier
    app.state.admission = admission
    app.state.model_info = {"name": settings.model_name, **model.metadata()}
    app.state.metrics.watch(admission, app.state.budget, app.state.model_info)
    drain_on_sigterm(app)
    app.state.ready = True
    logger.info(
        "serving %s (%d classes) with %s",
        model.name,
        len(model.labels),
        app.state.model_info["runtime"]["name"],
    )
    try:
        yield
    finally:
        app.state.ready = False
        trimmer.cancel()
        await classifier.close()


def drain_on_sigterm(app: Starlette) -> None:
    """On SIGTERM, turn readiness to 503 and refuse new predictions with 503,
    then let uvicorn's own handler drain in-flight requests and exit.

    uvicorn installs its handler before the lifespan runs; this one runs first
    and hands over to it. Signals belong to the main thread: under a test
    client (another thread) there is nothing to install.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    uvicorn_handler = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        app.state.ready = False
        app.state.admission.draining = True
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
    budget = UploadBudget(settings.upload_buffer_bytes)
    middleware = [
        Middleware(RequestContext),
        Middleware(
            BodyLimits,
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.body_timeout_s,
            budget=budget,
        ),
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
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.budget = budget
    app.state.load_model = load
    app.state.metrics = Metrics()
    app.state.ready = False
    return app
