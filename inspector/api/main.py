"""The FastAPI app factory: assembles settings, store, queue, error handlers and routes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from inspector import records
from inspector.api import errors
from inspector.api.metrics import Metrics, RequestMetrics
from inspector.api.middleware import BodySizeLimit
from inspector.api.queue import CeleryEnqueuer, Enqueuer
from inspector.api.routes import (
    classes,
    console,
    datasets,
    health,
    images,
    models,
    review,
    tfserving,
    training,
)
from inspector.config import Settings, get_settings, open_configured_store
from storage import ObjectStore, StoreError

log = logging.getLogger("inspector.api")

# Multipart framing and metadata fields ride on top of the image itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def create_app(
    settings: Settings | None = None,
    *,
    store: ObjectStore | None = None,
    enqueuer: Enqueuer | None = None,
    inference: Any = None,
) -> FastAPI:
    """Build the API. Without arguments everything comes from the environment."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Inspector",
        summary="Industrial quality inspection that keeps learning.",
        version="0.1.0",
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    app.state.settings = settings
    app.state.store = store or open_configured_store(settings)
    app.state.enqueuer = enqueuer or CeleryEnqueuer(settings)
    if inference is None:
        from workers.inference_queue import InferenceClient

        inference = InferenceClient(settings.resolved_redis_url, settings.enqueue_timeout_seconds)
    app.state.inference = inference
    app.state.metrics = Metrics(app.state.store, inference)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    errors.install(app)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for module in (health, images, review, classes, datasets, training, models, tfserving, console):
        app.include_router(module.router)
    try:
        # Seed the vocabulary now, so that no request (not even a rejected one) writes it.
        records.class_names(app.state.store)
    except StoreError as exc:
        log.warning(
            "object store not reachable at startup (%s); uploads answer 503 until it is", exc
        )
    log.info("API ready: store %s, broker %s", app.state.store.url, settings.resolved_redis_url)
    return app
