"""Ingest: turn an accepted upload into a training-ready, indexed image.

Idempotent by construction: every output is a pure function of the image id, and
the index entry (written last, create-if-absent) is what marks an image ingested.
Running it twice, or in two workers at once, stores nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from inspector import images, records
from inspector.errors import ImageNotFound, ImageRejected, IngestFailed
from storage import NotFound, ObjectStore

log = logging.getLogger(__name__)

INGEST_VERSION = 1


@dataclass(frozen=True)
class CanonicalSpec:
    """How the training copy is made."""

    size: int = 256
    color: str = "rgb"


@dataclass(frozen=True)
class IngestResult:
    """What one ingest call did."""

    image_id: str
    status: str  # "ingested" or "already"
    entry: dict[str, Any] = field(default_factory=dict)


def _fail(store: ObjectStore, image_id: str, code: str, message: str) -> IngestFailed:
    doc = {
        "image_id": image_id,
        "code": code,
        "message": message,
        "at": records.now_utc().isoformat(),
    }
    store.put_if_absent(records.failure_key(image_id), records.to_json(doc), "application/json")
    log.warning("image %s cannot be ingested: %s", image_id, message)
    return IngestFailed(f"image {image_id}: {message}", code=code)


def ingest_image(store: ObjectStore, image_id: str, spec: CanonicalSpec) -> IngestResult:
    """Canonical copy, statistics and index entry for one accepted image.

    Raises :class:`IngestFailed` when retrying cannot help (no such image, corrupt
    bytes) and the store's :class:`storage.Unavailable` when it can.
    """
    index_key = records.index_key(image_id)
    try:
        return IngestResult(image_id, "already", records.read_json(store, index_key))
    except NotFound:
        pass
    try:
        record = records.read_record(store, image_id)
    except ImageNotFound as exc:
        raise IngestFailed(str(exc), code="image_not_found") from exc
    try:
        data = store.get_bytes(record.raw_key)
    except NotFound as exc:
        raise _fail(
            store, image_id, "raw_missing", f"raw bytes {record.raw_key} are missing"
        ) from exc
    try:
        decoded = images.decode(data, record.format)
    except ImageRejected as exc:
        raise _fail(store, image_id, exc.code, exc.message) from exc

    canonical = images.canonicalise(decoded, spec.size, spec.color)
    canonical_key = records.canonical_key(image_id)
    store.put_bytes(canonical_key, images.encode_png(canonical), "image/png")
    entry = {
        "image_id": image_id,
        "canonical_key": canonical_key,
        "canonical_width": int(canonical.shape[1]),
        "canonical_height": int(canonical.shape[0]),
        "canonical_color": spec.color,
        "stats": images.image_stats(canonical),
        "line": record.line,
        "station": record.station,
        "camera_id": record.camera_id,
        "captured_at": record.captured_at,
        "ingested_at": records.now_utc().isoformat(),
        "ingest_version": INGEST_VERSION,
    }
    if not store.put_if_absent(index_key, records.to_json(entry), "application/json"):
        return IngestResult(image_id, "already", records.read_json(store, index_key))
    log.info("ingested image %s (%s, %sx%s)", image_id, record.line, *canonical.shape[1::-1])
    return IngestResult(image_id, "ingested", entry)


def _ids(store: ObjectStore, prefix: str) -> set[str]:
    return {records.id_from_key(info.key) for info in store.list(prefix)}


def find_unindexed(store: ObjectStore, stored_before: datetime) -> list[str]:
    """Accepted images stored before ``stored_before`` that are neither ingested nor failed.

    Three listings, no object reads: cheap enough for a periodic reconciler.
    """
    done = _ids(store, "index/ingested/") | _ids(store, "index/failed/")
    return [
        image_id
        for info in store.list("images/records/")
        if info.modified < stored_before and (image_id := records.id_from_key(info.key)) not in done
    ]
