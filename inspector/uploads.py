"""Accepting a camera's upload: validate, then write payload first and pointer last.

Once :func:`accept_upload` returns, the image is durable: its bytes and its record
are in the object store. A crash half-way leaves at most unreferenced payload (a raw
object or an upload label with no record), which readers ignore and a retry of the
same upload completes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from inspector import images, records
from inspector.records import ImageRecord, UploadMetadata
from storage import NotFound, ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadResult:
    """What the camera is told."""

    record: ImageRecord
    duplicate: bool


def _existing(store: ObjectStore, image_id: str) -> ImageRecord | None:
    try:
        return ImageRecord.from_doc(records.read_json(store, records.record_key(image_id)))
    except NotFound:
        return None


def accept_upload(
    store: ObjectStore,
    data: bytes,
    metadata: UploadMetadata,
    *,
    uploaded_by: str,
    label: str | None = None,
    limits: images.ImageLimits = images.ImageLimits(),
) -> UploadResult:
    """Validate ``data`` and store it with its record; a re-sent upload stores nothing new."""
    info = images.inspect_upload(data, limits)
    if label is not None:
        records.require_known_label(store, label)

    existing = _existing(store, info.image_id)
    if existing is not None:
        return UploadResult(existing, duplicate=True)

    record = ImageRecord(
        image_id=info.image_id,
        format=info.format,
        width=info.width,
        height=info.height,
        channels=info.channels,
        size_bytes=info.size_bytes,
        raw_key=records.raw_key(info.image_id, images.EXTENSIONS[info.format]),
        line=metadata.line,
        station=metadata.station,
        camera_id=metadata.camera_id,
        part_id=metadata.part_id,
        captured_at=metadata.captured_at.isoformat(),
        received_at=records.now_utc().isoformat(),
        uploaded_by=uploaded_by,
        label_at_upload=label,
    )
    store.put_if_absent(record.raw_key, data, images.CONTENT_TYPES[info.format])
    if label is not None:
        event = records.label_event_for_upload(info.image_id, label, uploaded_by)
        store.put_if_absent(event.key, records.to_json(asdict(event)), "application/json")
    created = store.put_if_absent(
        records.record_key(info.image_id), records.to_json(record.to_doc()), "application/json"
    )
    if not created:  # a concurrent copy of the same upload won the race
        return UploadResult(_existing(store, info.image_id) or record, duplicate=True)
    return UploadResult(record, duplicate=False)
