"""Image records, label events and the class vocabulary, as documents in the store.

Where things live (all under the store's root):

    images/raw/<id[:2]>/<id>.<ext>          the bytes the camera sent (payload, written first)
    images/records/<id[:2]>/<id>.json       the upload record (pointer, written last: an
                                            image exists once this exists)
    images/canonical/<id[:2]>/<id>.png      the training copy, made by ingest
    index/ingested/<id[:2]>/<id>.json       ingest's index entry: canonical key + statistics
    index/failed/<id[:2]>/<id>.json         why an image could never be ingested
    labels/<id[:2]>/<id>/<seq>-<label>-<tag>.json
                                            append-only label events; the current label is
                                            the one with the highest seq
    vocabulary/classes/<name>.json          one document per class

Every document is written once and never rewritten. Label events carry the label in
their key, so listing ``labels/`` and ``index/ingested/`` tells which ingested images
are labelled with what, without reading a single object.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from inspector.errors import ImageNotFound, InvalidClassName, InvalidMetadata, UnknownLabel
from storage import NotFound, ObjectStore

SCHEMA_VERSION = 1

# --- keys -------------------------------------------------------------------------------

_ID_RE = re.compile(r"^[0-9a-f]{64}$")


def is_image_id(value: str) -> bool:
    """Whether ``value`` has the form of an image id (64 lowercase hex digits)."""
    return bool(_ID_RE.match(value))


def raw_key(image_id: str, ext: str) -> str:
    """Where the uploaded bytes live."""
    return f"images/raw/{image_id[:2]}/{image_id}.{ext}"


def record_key(image_id: str) -> str:
    """Where the upload record lives."""
    return f"images/records/{image_id[:2]}/{image_id}.json"


def canonical_key(image_id: str) -> str:
    """Where ingest writes the training copy."""
    return f"images/canonical/{image_id[:2]}/{image_id}.png"


def index_key(image_id: str) -> str:
    """Ingest's index entry for the image."""
    return f"index/ingested/{image_id[:2]}/{image_id}.json"


def failure_key(image_id: str) -> str:
    """Why an image could not be ingested."""
    return f"index/failed/{image_id[:2]}/{image_id}.json"


def id_from_key(key: str) -> str:
    """The image id (or class name) a document key is named after."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def now_utc() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def to_json(doc: dict[str, Any]) -> bytes:
    """Stable JSON bytes for a stored document."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def read_json(store: ObjectStore, key: str) -> dict[str, Any]:
    """Read a stored JSON document."""
    return dict(json.loads(store.get_bytes(key)))


# --- metadata ---------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
MAX_NAME_LENGTH = 64


def validate_name(field_name: str, value: str | None, *, required: bool = True) -> str | None:
    """A line, station, camera or part id: 1-64 of A-Z a-z 0-9 . _ : - ."""
    if value is None or value == "":
        if required:
            raise InvalidMetadata(field_name, "is required")
        return None
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidMetadata(field_name, f"is {len(value)} characters; at most {MAX_NAME_LENGTH}")
    if not _NAME_RE.match(value) or ".." in value:
        raise InvalidMetadata(
            field_name, "may hold only A-Z a-z 0-9 . _ : - and must start with a letter or digit"
        )
    return value


def parse_timestamp(field_name: str, value: str | None) -> datetime:
    """An ISO 8601 timestamp with a timezone, e.g. 2026-11-26T09:00:00Z, in UTC."""
    if not value:
        raise InvalidMetadata(field_name, "is required (ISO 8601 with timezone)")
    if len(value) > 40:
        raise InvalidMetadata(field_name, "is too long for a timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidMetadata(
            field_name, f"{value!r} is not ISO 8601, e.g. 2026-11-26T09:00:00Z"
        ) from exc
    if parsed.tzinfo is None:
        raise InvalidMetadata(field_name, "needs a timezone, e.g. 2026-11-26T09:00:00Z")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class UploadMetadata:
    """What a camera says about the part it photographed."""

    line: str
    station: str
    camera_id: str
    part_id: str
    captured_at: datetime

    @classmethod
    def parse(
        cls,
        *,
        line: str | None,
        station: str | None,
        camera_id: str | None,
        part_id: str | None,
        captured_at: str | None,
    ) -> UploadMetadata:
        """Validate raw strings into metadata, or raise :class:`InvalidMetadata`."""
        return cls(
            line=str(validate_name("line", line)),
            station=str(validate_name("station", station)),
            camera_id=str(validate_name("camera_id", camera_id)),
            part_id=str(validate_name("part_id", part_id)),
            captured_at=parse_timestamp("captured_at", captured_at),
        )


@dataclass(frozen=True)
class ImageRecord:
    """The upload record: immutable facts about one accepted image."""

    image_id: str
    format: str
    width: int
    height: int
    channels: int
    size_bytes: int
    raw_key: str
    line: str
    station: str
    camera_id: str
    part_id: str
    captured_at: str
    received_at: str
    uploaded_by: str
    label_at_upload: str | None = None
    schema: int = SCHEMA_VERSION

    def to_doc(self) -> dict[str, Any]:
        """The stored JSON document."""
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ImageRecord:
        """Read a stored document (unknown fields from newer writers are ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in names})


def read_record(store: ObjectStore, image_id: str) -> ImageRecord:
    """The upload record, or :class:`ImageNotFound`."""
    if not is_image_id(image_id):
        raise ImageNotFound(f"{image_id!r} is not an image id (64 hex digits)")
    try:
        return ImageRecord.from_doc(read_json(store, record_key(image_id)))
    except NotFound as exc:
        raise ImageNotFound(f"no image {image_id} has been accepted") from exc


# --- the class vocabulary ---------------------------------------------------------------

_CLASS_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
OK_CLASS = "ok"
DEFAULT_CLASSES: dict[str, str] = {
    "ok": "no defect",
    "scratch": "a thin line scored into the surface",
    "pit": "a small pit or spot",
    "crack": "a jagged, branching fracture",
    "stain": "a discoloured patch with soft edges",
}
VOCABULARY_PREFIX = "vocabulary/classes/"


@dataclass(frozen=True)
class DefectClass:
    """One class of the vocabulary."""

    name: str
    description: str
    defect: bool
    added_by: str
    added_at: str


def validate_class_name(name: str) -> str:
    """Class names are 1-32 of a-z 0-9 _ starting with a letter (they appear in keys)."""
    if not _CLASS_RE.match(name or ""):
        raise InvalidClassName(
            f"class name {name!r} must be 1-32 of a-z 0-9 _ and start with a letter"
        )
    return name


def _class_doc(name: str, description: str, by: str) -> DefectClass:
    return DefectClass(name, description, name != OK_CLASS, by, now_utc().isoformat())


def list_classes(store: ObjectStore) -> list[DefectClass]:
    """The vocabulary; seeded with the default classes the first time it is read."""
    infos = list(store.list(VOCABULARY_PREFIX))
    if not infos:
        for name, description in DEFAULT_CLASSES.items():
            store.put_if_absent(
                f"{VOCABULARY_PREFIX}{name}.json",
                to_json(asdict(_class_doc(name, description, "inspector"))),
                "application/json",
            )
        infos = list(store.list(VOCABULARY_PREFIX))
    return [DefectClass(**read_json(store, info.key)) for info in infos]


def class_names(store: ObjectStore) -> set[str]:
    """The names in the vocabulary, without reading each class document."""
    names = {id_from_key(info.key) for info in store.list(VOCABULARY_PREFIX)}
    return names or {c.name for c in list_classes(store)}


def add_class(store: ObjectStore, name: str, description: str, by: str) -> tuple[DefectClass, bool]:
    """Add a class; returns it and whether it is new (adding an existing name is a no-op)."""
    validate_class_name(name)
    if len(description) > 200:
        raise InvalidMetadata("description", "is longer than 200 characters")
    class_names(store)  # seed the defaults first, so a new class never hides them
    doc = _class_doc(name, description, by)
    key = f"{VOCABULARY_PREFIX}{name}.json"
    created = store.put_if_absent(key, to_json(asdict(doc)), "application/json")
    return (doc if created else DefectClass(**read_json(store, key))), created


def require_known_label(store: ObjectStore, label: str) -> str:
    """``label`` if it is in the vocabulary, else :class:`UnknownLabel`."""
    if not _CLASS_RE.match(label or ""):
        raise UnknownLabel(f"label {label[:40]!r} is not a class name")
    known = class_names(store)
    if label not in known:
        raise UnknownLabel(
            f"label {label!r} is not in the class vocabulary ({', '.join(sorted(known))}); "
            "an operator can add it with `inspector classes add` or POST /v1/classes"
        )
    return label


# --- label events -----------------------------------------------------------------------

UPLOAD_SEQ = 0  # the label sent with the upload is always the oldest event


@dataclass(frozen=True)
class LabelEvent:
    """One ground-truth statement about an image. Never rewritten; the newest wins."""

    image_id: str
    label: str
    seq: int
    by: str
    source: str
    at: str
    reason: str | None = None
    tag: str = field(default="")

    @property
    def key(self) -> str:
        """Where the event is stored; the label is in the key for cheap listing."""
        name = f"{self.seq:020d}-{self.label}-{self.tag}.json"
        return f"labels/{self.image_id[:2]}/{self.image_id}/{name}"


def _parse_label_key(key: str) -> tuple[str, int, str] | None:
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "labels":
        return None
    stem = parts[3].removesuffix(".json").split("-")
    if len(stem) != 3 or not stem[0].isdigit():
        return None
    return parts[2], int(stem[0]), stem[1]


def label_event_for_upload(image_id: str, label: str, by: str) -> LabelEvent:
    """The event for a label sent with the upload: deterministic, so a retry rewrites nothing."""
    return LabelEvent(
        image_id, label, UPLOAD_SEQ, by, "upload", now_utc().isoformat(), tag="upload"
    )


def append_label(
    store: ObjectStore,
    image_id: str,
    label: str,
    by: str,
    *,
    source: str = "api",
    reason: str | None = None,
) -> LabelEvent:
    """Append a label event to an accepted image's history."""
    read_record(store, image_id)
    require_known_label(store, label)
    if reason is not None and len(reason) > 500:
        raise InvalidMetadata("reason", "is longer than 500 characters")
    event = LabelEvent(
        image_id,
        label,
        time.time_ns(),
        by,
        source,
        now_utc().isoformat(),
        reason,
        secrets.token_hex(4),
    )
    store.put_if_absent(event.key, to_json(asdict(event)), "application/json")
    return event


def label_history(store: ObjectStore, image_id: str) -> list[LabelEvent]:
    """Every label event of the image, oldest first."""
    prefix = f"labels/{image_id[:2]}/{image_id}/"
    return [LabelEvent(**read_json(store, info.key)) for info in store.list(prefix)]


def current_labels(store: ObjectStore, prefix: str = "labels/") -> dict[str, str]:
    """image id → current label, for every labelled image, from key names alone."""
    latest: dict[str, tuple[int, str]] = {}
    for info in store.list(prefix):
        parsed = _parse_label_key(info.key)
        if parsed is None:
            continue
        image_id, seq, label = parsed
        if image_id not in latest or seq >= latest[image_id][0]:
            latest[image_id] = (seq, label)
    return {image_id: label for image_id, (_, label) in latest.items()}


def ingested_ids(store: ObjectStore) -> Iterator[str]:
    """Ids of every ingested image, from the index's key names."""
    for info in store.list("index/ingested/"):
        yield id_from_key(info.key)


def labelled_images(store: ObjectStore) -> dict[str, str]:
    """Ingested images that have a label → that label: what a training snapshot starts from.

    Two listings, no object reads: this is why labels and index entries carry what
    matters in their keys.
    """
    labels = current_labels(store)
    return {image_id: labels[image_id] for image_id in ingested_ids(store) if image_id in labels}
