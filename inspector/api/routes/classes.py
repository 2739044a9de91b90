"""The class vocabulary: which labels exist. Operators extend it as new defects appear."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response

from inspector import records
from inspector.api.deps import AnyRole, Operator, StoreDep
from inspector.api.schemas import ClassIn, ClassOut, ErrorResponse

router = APIRouter(prefix="/v1/classes", tags=["classes"])


@router.get("", response_model=list[ClassOut], summary="List the class vocabulary")
def list_classes(store: StoreDep, _: AnyRole) -> list[ClassOut]:
    """Every class a label may name."""
    return [ClassOut(**asdict(c)) for c in records.list_classes(store)]


@router.post(
    "",
    response_model=ClassOut,
    status_code=201,
    responses={200: {"model": ClassOut}, 422: {"model": ErrorResponse}},
    summary="Add a class (idempotent)",
)
def add_class(body: ClassIn, store: StoreDep, principal: Operator, response: Response) -> ClassOut:
    """Add a defect class; 201 if new, 200 if it already existed (nothing changes)."""
    cls, created = records.add_class(store, body.name, body.description, principal.name)
    if not created:
        response.status_code = 200
    return ClassOut(**asdict(cls))
