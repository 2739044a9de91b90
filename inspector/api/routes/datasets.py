"""Dataset snapshots and pinned golden sets: what training will see, frozen."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from inspector import datasets
from inspector.api.deps import Operator, StoreDep
from inspector.api.schemas import ErrorResponse

router = APIRouter(tags=["datasets"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 422)
}


class GoldenSetIn(BaseModel):
    """Images always held out and scored as their own set."""

    image_ids: list[str] = Field(min_length=1, max_length=100_000)


def _summary(snapshot: datasets.Snapshot) -> dict[str, Any]:
    doc = {k: v for k, v in asdict(snapshot).items() if k != "entries"}
    doc["table"] = snapshot.summary()
    return doc


@router.post(
    "/v1/snapshots", status_code=201, responses=_ERRORS, summary="Freeze the labelled data now"
)
def take_snapshot(store: StoreDep, principal: Operator) -> dict[str, Any]:
    """An immutable snapshot of every labelled image, with its split and counts."""
    return _summary(datasets.take_snapshot(store, by=principal.name))


@router.get("/v1/snapshots/{snapshot_id}", responses=_ERRORS, summary="A snapshot's counts")
def get_snapshot(snapshot_id: str, store: StoreDep, _: Operator) -> dict[str, Any]:
    """Counts per class and split of a stored snapshot."""
    return _summary(datasets.load_snapshot(store, snapshot_id))


@router.put("/v1/golden-sets/{name}", responses=_ERRORS, summary="Pin a golden set")
def pin_golden_set(
    name: str, body: GoldenSetIn, store: StoreDep, principal: Operator
) -> dict[str, Any]:
    """Pin images as a named golden set (immutable; pinning the same images again is a no-op)."""
    return datasets.pin_golden_set(store, name, body.image_ids, principal.name)
