"""Liveness and readiness, for compose healthchecks and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from inspector.api.deps import EnqueuerDep, InferenceDep, StoreDep
from storage import StoreError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Liveness: answers as long as the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz", summary="The store and the broker answer")
def readyz(store: StoreDep, enqueuer: EnqueuerDep, inference: InferenceDep) -> JSONResponse:
    """Readiness: uploads need the store; the broker and the inference workers (the
    version each serves and its state, as TF Serving reports it) are reported."""
    checks: dict[str, str] = {}
    try:
        store.ping()
        checks["store"] = "ok"
    except StoreError as exc:
        checks["store"] = f"unavailable: {exc}"
    checks["broker"] = "ok" if enqueuer.ping() else "unavailable (uploads are deferred)"
    workers = inference.workers()
    checks["inference"] = (
        "; ".join(
            f"{name}: version {s['version']} {s['state']}" for name, s in sorted(workers.items())
        )
        or "no inference worker (uploads answer without a verdict)"
    )
    ready = checks["store"] == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Requests and latency by route, uploads by result and reason, queue depths, verdicts
    by class and line, serving versions and swaps, training run durations, drift."""
    return PlainTextResponse(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
