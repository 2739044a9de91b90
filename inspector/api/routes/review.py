"""The review queue: verdicts the model was unsure of, waiting for an operator's label."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from inspector import images, records, verdicts
from inspector.api.deps import Operator, StoreDep

router = APIRouter(tags=["review"])


@router.get("/v1/review", summary="Unsure verdicts waiting for a label")
def review_queue(
    store: StoreDep, _: Operator, limit: int = Query(50, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """Least confident first; an image leaves the queue when it is labelled
    (PUT /v1/images/{id}/label), and its label feeds the next training run."""
    items = verdicts.review_queue(store, limit)
    for item in items:
        item["image_url"] = f"/v1/images/{item['image_id']}/raw"
    return items


@router.get(
    "/v1/images/{image_id}/raw", summary="The bytes the camera sent", response_class=Response
)
def raw_image(image_id: str, store: StoreDep, _: Operator) -> Response:
    """The original image, for review and the console."""
    record = records.read_record(store, image_id)
    return Response(store.get_bytes(record.raw_key), media_type=images.CONTENT_TYPES[record.format])
