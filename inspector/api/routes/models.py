"""The model registry: versions and their states, assessment reports, approvals,
rejections, overrides, rollback, and the audit log."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from inspector import defect_maps, images, promotion, records, registry, report_html, training
from inspector.api.auth import authorize
from inspector.api.deps import EnqueuerDep, InferenceDep, Operator, SettingsDep, StoreDep
from inspector.api.errors import ApiError
from inspector.api.routes import tfserving
from inspector.api.schemas import ErrorResponse
from inspector.defect_maps import DefectMap
from inspector.model_input import InputSpec

log = logging.getLogger("inspector.api.models")
router = APIRouter(tags=["registry"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 422)
}
VersionPath = Annotated[int, Path(ge=1, description="version number")]


class DecisionIn(BaseModel):
    """Why: every registry change records it."""

    reason: str = Field(min_length=1, max_length=1000)
    override: bool = Field(False, description="admins only: promote a version that failed the gate")
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="move the version's threshold on P(defect) (recorded in the audit log)",
    )


class ReasonIn(BaseModel):
    """Why: every registry change records it."""

    reason: str = Field(min_length=1, max_length=1000)


def _model(name: str, settings: SettingsDep) -> None:
    if name != settings.model_name:
        raise ApiError(
            404,
            "model_not_found",
            f"no model {name!r}; this service serves {settings.model_name!r}",
        )


@router.get("/v1/models", summary="Every version with its state (and runs still training)")
def list_models(
    store: StoreDep, enqueuer: EnqueuerDep, settings: SettingsDep, _: Operator
) -> dict[str, Any]:
    """Versions newest first; runs that have not produced a version show as ``training``."""
    training_rows = [
        {
            "version": None,
            "state": "training",
            "run_id": run["run_id"],
            "requested_by": run["requested_by"],
        }
        for run in training.list_runs(store)
        if run["state"] == "queued"
    ]
    state = registry.read_state(store)
    return {
        "model": settings.model_name,
        "aliases": state.aliases,
        "versions": training_rows + promotion.list_views(store),
    }


@router.get("/v1/models/{name}/versions/{version}", responses=_ERRORS, summary="One version")
def show_version(
    name: str,
    version: VersionPath,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    _: Operator,
) -> dict[str, Any]:
    """TF Serving's status of the version, plus the registry's view: state, aliases,
    classes, data, the summary of its latest report, and its shadow-mode results."""
    _model(name, settings)
    return tfserving.version_status(name, version, store, inference)


@router.get(
    "/v1/models/{name}/versions/{version}/report",
    responses=_ERRORS,
    summary="Assessment report (JSON)",
)
def report_json(
    name: str, version: VersionPath, store: StoreDep, settings: SettingsDep, _: Operator
) -> dict[str, Any]:
    """Candidate and production side by side on the same held-out images, and the gate."""
    _model(name, settings)
    return promotion.read_report(store, version)


@router.get(
    "/v1/models/{name}/versions/{version}/defect-maps/{image_id}.png",
    responses=_ERRORS,
    response_class=Response,
    summary="A held-out image with the candidate's defect map from its report",
)
def report_defect_map(
    name: str,
    version: VersionPath,
    image_id: str,
    store: StoreDep,
    settings: SettingsDep,
    _: Operator,
) -> Response:
    """The error gallery's pictures: where this version saw a defect on a held-out image."""
    _model(name, settings)
    report = promotion.read_report(store, version)
    maps = (report.get("candidate") or {}).get("defect_maps") or {}
    if image_id not in maps:
        raise ApiError(
            404,
            "no_defect_map",
            f"the report of version {version} has no defect map for image {image_id}: it keeps "
            "them for the held-out images judged or labelled defective",
        )
    record = records.read_record(store, image_id)
    spec = InputSpec.from_doc(registry.get_version(store, version)["input"])
    image = images.to_uint8(images.decode(store.get_bytes(record.raw_key), record.format))
    grid = DefectMap.from_doc(maps[image_id]).grid()
    return Response(defect_maps.overlay(image, grid, spec), media_type="image/png")


@router.get(
    "/v1/models/{name}/versions/{version}/report.html",
    response_class=HTMLResponse,
    responses=_ERRORS,
    summary="Assessment report (a page for people)",
)
def report_page(
    name: str, version: VersionPath, store: StoreDep, settings: SettingsDep, _: Operator
) -> HTMLResponse:
    """The report with confusion matrices and per-class charts."""
    _model(name, settings)
    return HTMLResponse(report_html.render(promotion.read_report(store, version), model_name=name))


@router.post(
    "/v1/models/{name}/versions/{version}:approve", responses=_ERRORS, summary="Approve a candidate"
)
def approve(
    name: str,
    version: VersionPath,
    body: DecisionIn,
    store: StoreDep,
    settings: SettingsDep,
    principal: Operator,
    inference: InferenceDep,
) -> dict[str, Any]:
    """Promote an approved candidate to production; ``override`` (admins) for a failed gate."""
    _model(name, settings)
    if body.override:
        authorize(principal, ("admin",), f"override the gate for version {version}")
    event = promotion.approve(
        store,
        version,
        actor=principal.name,
        role=principal.role,
        reason=body.reason,
        override=body.override,
        threshold=body.threshold,
    )
    inference.notify_registry_change()
    return {"event": event, "version": promotion.version_view(store, version)}


@router.post(
    "/v1/models/{name}/versions/{version}:reject", responses=_ERRORS, summary="Reject a candidate"
)
def reject(
    name: str,
    version: VersionPath,
    body: ReasonIn,
    store: StoreDep,
    settings: SettingsDep,
    principal: Operator,
    inference: InferenceDep,
) -> dict[str, Any]:
    """Reject a candidate; it never serves."""
    _model(name, settings)
    event = promotion.reject(
        store, version, actor=principal.name, role=principal.role, reason=body.reason
    )
    inference.notify_registry_change()
    return {"event": event, "version": promotion.version_view(store, version)}


@router.post(
    "/v1/models/{name}/versions/{version}:evaluate",
    status_code=202,
    responses=_ERRORS,
    summary="Assess again",
)
def evaluate(
    name: str,
    version: VersionPath,
    store: StoreDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    principal: Operator,
) -> dict[str, Any]:
    """Queue a new assessment (e.g. production changed since the report was made)."""
    _model(name, settings)
    state = registry.read_state(store).state_of(version)
    registry.get_version(store, version)
    if state not in ("awaiting_approval", "gate_failed"):
        raise ApiError(
            409, "illegal_transition", f"version {version} is {state}; only candidates are assessed"
        )
    if not enqueuer.assess(version, principal.name):
        raise ApiError(
            503, "broker_unavailable", "the task queue is unreachable; try again shortly"
        )
    return {"version": version, "queued": True}


@router.post(
    "/v1/models/{name}:rollback",
    responses=_ERRORS,
    summary="Put the previous production version back",
)
def rollback(
    name: str,
    body: ReasonIn,
    store: StoreDep,
    settings: SettingsDep,
    principal: Operator,
    inference: InferenceDep,
) -> dict[str, Any]:
    """One step back: the previous production version serves again."""
    _model(name, settings)
    event = promotion.rollback(store, actor=principal.name, role=principal.role, reason=body.reason)
    inference.notify_registry_change()
    return {"event": event, "aliases": registry.read_state(store).aliases}


@router.get("/v1/audit", summary="Every registry change (append-only)")
def audit(store: StoreDep, _: Operator) -> list[dict[str, Any]]:
    """Who, when, from → to, reason and report, oldest first."""
    return registry.audit_log(store)
