"""Liveness and readiness, for compose healthchecks and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

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
