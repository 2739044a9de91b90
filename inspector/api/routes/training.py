"""Training runs: operators start one now; anyone with an operator token watches it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, ValidationError

from inspector import registry, training
from inspector.api.deps import EnqueuerDep, InferenceDep, Operator, SettingsDep, StoreDep
from inspector.api.errors import ApiError
from inspector.api.schemas import ErrorResponse
from inspector.config import Settings
from inspector.train_config import config_from_settings

log = logging.getLogger("inspector.api.training")
router = APIRouter(prefix="/v1/training-runs", tags=["training"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 422, 503)
}


class TrainingRunIn(BaseModel):
    """Start a run: from the production model (default), a version number, or from scratch."""

    parent: str = Field("production", examples=["production", "none", "3"])
    reason: str = Field("", max_length=500)
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='overrides of the training configuration, e.g. {"epochs": 10}',
        examples=[{"epochs": 10}],
    )


def default_config(settings: Settings, overrides: dict[str, Any]) -> training.TrainConfig:
    """The settings' training defaults with the request's overrides."""
    try:
        return config_from_settings(settings, overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_training_config", problems) from exc


def _view(run: dict[str, Any], inference: InferenceDep, store: StoreDep) -> dict[str, Any]:
    view = dict(run)
    if run["state"] == "queued":
        progress = inference.get_json(training.progress_key(run["run_id"]))
        if progress:
            view["state"] = "running"
            view["progress"] = progress
    result = run.get("result") or {}
    if result.get("version"):
        view["version"] = registry.get_version(store, int(result["version"]))
    return view


@router.post("", status_code=202, responses=_ERRORS, summary="Start a training run now")
def start_run(
    body: TrainingRunIn,
    store: StoreDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    principal: Operator,
) -> dict[str, Any]:
    """Record the request and queue it for the train worker; poll the returned URL."""
    config = default_config(settings, body.config)
    run = training.request_run(
        store, by=principal.name, config=config, parent=body.parent, reason=body.reason
    )
    if not enqueuer.train(run["run_id"]):
        training.record_failure(
            store,
            run["run_id"],
            "broker_unavailable",
            "the task queue is unreachable; start the run again",
        )
        raise ApiError(
            503,
            "broker_unavailable",
            "the task queue is unreachable; nothing will run: try again shortly",
        )
    log.info(
        "training run %s requested by %s (parent %s)", run["run_id"], principal.name, body.parent
    )
    return {**run, "url": f"/v1/training-runs/{run['run_id']}"}


@router.get("", summary="List training runs, newest first")
def list_runs(store: StoreDep, inference: InferenceDep, _: Operator) -> list[dict[str, Any]]:
    """Every run with its state (queued, running, succeeded, failed)."""
    return [_view(run, inference, store) for run in training.list_runs(store)]


@router.get("/{run_id}", responses=_ERRORS, summary="One training run with its progress")
def get_run(run_id: str, store: StoreDep, inference: InferenceDep, _: Operator) -> dict[str, Any]:
    """State, live progress (epoch, batch, loss, ETA) while running, and the result."""
    return _view(training.read_run(store, run_id), inference, store)
