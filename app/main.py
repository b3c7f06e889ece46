"""The application: its route table, middleware and lifespan.

Read the route table to see where a request goes.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app import api, pages
from app.batching import Predictor
from app.errors import EXCEPTION_HANDLERS
from app.fetch import Fetcher
from app.middleware import BodySizeLimit
from app.model import Classifier, ModelLoadError
from app.openapi import openapi_schema
from app.settings import Settings, load_settings

logger = logging.getLogger("app")

routes = [
    Route("/", pages.home, methods=["GET"], name="home"),
    Route("/api/predict", api.Predict, name="predict"),
    Route("/api/predict/batch", api.predict_batch, methods=["POST"], name="predict_batch"),
    Route("/api/model", api.model_info, methods=["GET"], name="model"),
    Route("/healthz", api.healthz, methods=["GET"], name="healthz"),
    Route("/readyz", api.readyz, methods=["GET"], name="readyz"),
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
        classifier = await anyio.to_thread.run_sync(
            Classifier.load, settings.model_path, settings.torch_threads
        )
    except ModelLoadError as exc:
        logger.critical("cannot serve %s: %s", settings.model_path, exc)
        raise ModelLoadError(f"cannot serve {settings.model_path}: {exc}") from None
    predictor = Predictor.from_settings(classifier, settings)
    fetcher = Fetcher.from_settings(settings)
    await predictor.start()
    await fetcher.start()
    app.state.predictor = predictor
    app.state.fetcher = fetcher
    app.state.model_info = classifier.metadata()
    app.state.ready = True
    logger.info(
        "serving %s (%d classes, TorchScript: %s)",
        settings.model_path,
        len(classifier.labels),
        classifier.torchscript,
    )
    try:
        yield
    finally:
        app.state.ready = False
        await fetcher.close()
        await predictor.stop()


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; settings default to the environment's."""
    settings = settings or load_settings()
    logger.setLevel(settings.log_level.upper())
    middleware = [Middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)]
    if settings.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
            ),
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ready = False
    return app
