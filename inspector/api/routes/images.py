"""Images: the camera upload endpoint, image details, and labels."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from inspector import defect_maps, images, records, registry, verdicts
from inspector.api.deps import (
    AnyRole,
    EnqueuerDep,
    InferenceDep,
    Operator,
    SettingsDep,
    StoreDep,
    Uploader,
)
from inspector.api.errors import ApiError
from inspector.api.schemas import (
    ErrorResponse,
    ImageOut,
    LabelEventOut,
    LabelIn,
    LabelOut,
    UploadAccepted,
    VerdictOut,
)
from inspector.defect_maps import DefectMap
from inspector.images import ImageLimits
from inspector.model_input import InputSpec
from inspector.records import UploadMetadata
from inspector.uploads import accept_upload
from storage import NotFound
from workers import inference_queue

log = logging.getLogger("inspector.api.images")
router = APIRouter(prefix="/v1/images", tags=["images"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 403, 413, 415, 422, 503)
}
MetaField = Annotated[str | None, Form()]


@router.post(
    "",
    response_model=UploadAccepted,
    status_code=201,
    responses={
        200: {"model": UploadAccepted, "description": "the same bytes were accepted before"},
        **_ERRORS,
    },
    summary="Upload one part's image (cameras)",
)
def upload_image(
    request: Request,
    response: Response,
    principal: Uploader,
    store: StoreDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    inference: InferenceDep,
    file: Annotated[UploadFile | None, File(description="JPEG, PNG, BMP or TIFF bytes")] = None,
    line: MetaField = None,
    station: MetaField = None,
    camera_id: MetaField = None,
    part_id: MetaField = None,
    captured_at: Annotated[str | None, Form(description="ISO 8601 with timezone")] = None,
    label: Annotated[str | None, Form(description="ground truth, if known")] = None,
) -> UploadAccepted:
    """Store the image durably, queue it for ingest, and answer with its verdict.

    The 2xx is sent only after the bytes and the record are in the object store.
    Re-sending the same bytes returns the same id (200) and stores nothing twice. The
    verdict comes from the production model within the deadline
    (``INSPECTOR_VERDICT_DEADLINE_MS``); past it the answer says ``pending`` and
    ``verdict_url`` gives it once made.
    """
    started = time.monotonic()
    if file is None:
        raise ApiError(
            400, "missing_file", "send multipart/form-data with the image in a part named 'file'"
        )
    metadata = UploadMetadata.parse(
        line=line, station=station, camera_id=camera_id, part_id=part_id, captured_at=captured_at
    )
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"the image is larger than {settings.max_upload_bytes:,} bytes",
        )
    result = accept_upload(
        store,
        data,
        metadata,
        uploaded_by=principal.name,
        label=label or None,
        limits=ImageLimits(settings.max_image_pixels, settings.max_image_side),
    )
    record = result.record
    if result.duplicate and store.exists(records.index_key(record.image_id)):
        ingest = "done"
    else:
        ingest = "queued" if enqueuer.ingest(record.image_id) else "deferred"
    url = f"/v1/images/{record.image_id}"
    response.headers["Location"] = url
    verdict, verdict_status = _verdict(
        store, inference, settings, record, data, result.duplicate, started
    )
    if result.duplicate:
        response.status_code = 200
    request.app.state.metrics.uploads.labels("duplicate" if result.duplicate else "accepted").inc()
    log.info(
        "%s image %s from %s line=%s part=%s (%dx%d %s, %d bytes) ingest=%s verdict=%s",
        "duplicate" if result.duplicate else "accepted",
        record.image_id,
        principal.name,
        record.line,
        record.part_id,
        record.width,
        record.height,
        record.format,
        record.size_bytes,
        ingest,
        f"{verdict['label']} ({verdict['confidence']:.2f}, v{verdict['model_version']})"
        if verdict
        else verdict_status,
    )
    return UploadAccepted(
        image_id=record.image_id,
        duplicate=result.duplicate,
        ingest=ingest,
        received_at=record.received_at,
        label=record.label_at_upload,
        url=url,
        verdict=verdict,
        verdict_status=verdict_status,
        verdict_url=f"{url}/verdict",
    )


def _verdict(
    store: StoreDep,
    inference: InferenceDep,
    settings: SettingsDep,
    record: records.ImageRecord,
    data: bytes,
    duplicate: bool,
    started: float,
) -> tuple[dict[str, Any] | None, str]:
    """The image's verdict, asked of the inference workers within the deadline."""
    if duplicate:
        existing = verdicts.latest(store, record.image_id)
        if existing is not None:
            return existing, "done"
    if inference.serving_version() is None:
        return None, "no_model"
    if record.format == "tiff":  # the SavedModel decodes JPEG, PNG and BMP, not TIFF
        data = images.encode_png(images.decode(data, "tiff"))
    remaining = settings.verdict_deadline_ms / 1000 - (time.monotonic() - started)
    req = inference_queue.request(
        images=[data],
        image_ids=[record.image_id],
        lines=[record.line],
        record=True,
        deadline=time.time() + remaining,
    )
    reply = inference.call(req, timeout=max(remaining, 0.005))
    if reply is None or reply.get("status") != "ok":
        return None, "pending"
    return dict(reply["verdicts"][0]), "done"


@router.get(
    "/{image_id}/verdict",
    response_model=VerdictOut,
    responses=_ERRORS | {404: {"model": ErrorResponse}},
    summary="The verdict on an image (poll this when the upload said pending)",
)
def get_verdict(image_id: str, store: StoreDep, _: AnyRole) -> VerdictOut:
    """The newest verdict, and every version's verdict on this image."""
    records.read_record(store, image_id)
    history = verdicts.history(store, image_id)
    return VerdictOut(
        image_id=image_id,
        verdict_status="done" if history else "pending",
        verdict=history[-1] if history else None,
        history=history,
    )


def _history(store: StoreDep, image_id: str) -> list[LabelEventOut]:
    return [
        LabelEventOut(label=e.label, by=e.by, source=e.source, at=e.at, reason=e.reason)
        for e in records.label_history(store, image_id)
    ]


@router.get(
    "/{image_id}", response_model=ImageOut, responses=_ERRORS | {404: {"model": ErrorResponse}}
)
def get_image(image_id: str, store: StoreDep, _: Operator) -> ImageOut:
    """The upload record, ingest state (pending, done with statistics, or failed) and labels."""
    record = records.read_record(store, image_id)
    ingest: dict[str, Any]
    try:
        ingest = {"state": "done", **records.read_json(store, records.index_key(image_id))}
    except NotFound:
        try:
            ingest = {"state": "failed", **records.read_json(store, records.failure_key(image_id))}
        except NotFound:
            ingest = {"state": "pending"}
    history = _history(store, image_id)
    return ImageOut(
        image_id=image_id,
        record=record.to_doc(),
        ingest=ingest,
        label=history[-1].label if history else None,
        label_history=history,
    )


@router.get(
    "/{image_id}/label",
    response_model=LabelOut,
    responses=_ERRORS | {404: {"model": ErrorResponse}},
)
def get_label(image_id: str, store: StoreDep, _: Operator) -> LabelOut:
    """The current label (the newest event) and the whole history."""
    records.read_record(store, image_id)
    history = _history(store, image_id)
    return LabelOut(
        image_id=image_id, label=history[-1].label if history else None, history=history
    )


@router.put(
    "/{image_id}/label",
    response_model=LabelOut,
    responses=_ERRORS | {404: {"model": ErrorResponse}},
)
def put_label(image_id: str, body: LabelIn, store: StoreDep, principal: Operator) -> LabelOut:
    """Label an image: appends an event; earlier labels stay in the history."""
    event = records.append_label(store, image_id, body.label, principal.name, reason=body.reason)
    log.info("image %s labelled %s by %s", image_id, event.label, principal.name)
    history = _history(store, image_id)
    return LabelOut(image_id=image_id, label=history[-1].label, history=history)


@router.get(
    "/{image_id}/defect-map.png",
    responses=_ERRORS | {404: {"model": ErrorResponse}},
    response_class=Response,
    summary="The image with its defect map drawn over it",
)
def defect_map_png(
    image_id: str, store: StoreDep, _: Operator, version: int | None = None
) -> Response:
    """Where the model saw the defect: the verdict's map over the image (version: that
    version's verdict; default: the newest verdict that has a map)."""
    record = records.read_record(store, image_id)
    found = [
        v
        for v in verdicts.history(store, image_id)
        if "defect_map" in v and (version is None or v["model_version"] == version)
    ]
    if not found:
        raise ApiError(
            404,
            "no_defect_map",
            f"no verdict on image {image_id}{f' by version {version}' if version else ''} has "
            "a defect map: only defective and unsure verdicts carry one",
        )
    verdict = found[-1]
    spec = InputSpec.from_doc(registry.get_version(store, int(verdict["model_version"]))["input"])
    image = images.to_uint8(images.decode(store.get_bytes(record.raw_key), record.format))
    grid = DefectMap.from_doc(verdict["defect_map"]).grid()
    return Response(defect_maps.overlay(image, grid, spec), media_type="image/png")
