"""Immutable dataset snapshots with a split that never moves.

A snapshot is the list of every ingested, labelled image with its current label at the
moment it was taken, each assigned to ``train``, ``validation`` or ``heldout``. The
split is a function of the image's content hash alone, so an image's side never
changes as data grows, and held-out images never train. Images pinned in a golden set
are always held out, and also scored as their own named set.

    datasets/snapshots/<snapshot_id>/manifest.jsonl   one line per image (payload)
    datasets/snapshots/<snapshot_id>/snapshot.json    summary and counts (written last)
    datasets/golden/<name>.json                       a pinned golden set

The snapshot id is the hash of the manifest, so taking a snapshot twice of the same
data gives the same snapshot and writes nothing new.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from inspector import records
from inspector.errors import InspectorError
from storage import NotFound, ObjectStore

SPLITS = ("train", "validation", "heldout")
SNAPSHOT_PREFIX = "datasets/snapshots/"
GOLDEN_PREFIX = "datasets/golden/"


class DatasetError(InspectorError):
    """A snapshot cannot be made or used (no data, unknown snapshot, bad split)."""

    code = "dataset_error"


@dataclass(frozen=True)
class SplitPolicy:
    """Fractions of the hash space for held-out and validation data."""

    heldout: float = 0.2
    validation: float = 0.1

    def __post_init__(self) -> None:
        if not (
            0 < self.heldout < 1 and 0 <= self.validation < 1 and self.heldout + self.validation < 1
        ):
            raise DatasetError(
                f"split fractions heldout={self.heldout}, validation={self.validation} must be "
                "in (0, 1) and sum to less than 1",
                code="invalid_split",
            )


def split_of(image_id: str, policy: SplitPolicy = SplitPolicy()) -> str:
    """``train``, ``validation`` or ``heldout``, from the image's content hash alone.

    The first 64 bits of the SHA-256 id are uniform on [0, 1): below ``heldout`` is
    held out, the next ``validation`` is validation, the rest trains.
    """
    position = int(image_id[:16], 16) / 2**64
    if position < policy.heldout:
        return "heldout"
    if position < policy.heldout + policy.validation:
        return "validation"
    return "train"


@dataclass(frozen=True)
class ManifestEntry:
    """One image of a snapshot."""

    image_id: str
    label: str
    split: str
    raw_key: str
    golden: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's summary document."""

    snapshot_id: str
    created_at: str
    created_by: str
    classes: tuple[str, ...]
    policy: dict[str, float]
    counts: dict[str, dict[str, int]]
    golden_sets: tuple[str, ...] = ()
    total: int = 0
    entries: tuple[ManifestEntry, ...] = field(default=(), repr=False, compare=False)

    def split(self, name: str) -> list[ManifestEntry]:
        """The entries of one split (``golden:<name>`` for a golden set)."""
        if name.startswith("golden:"):
            golden = name.split(":", 1)[1]
            return [e for e in self.entries if golden in e.golden]
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; splits: {', '.join(SPLITS)}")
        return [e for e in self.entries if e.split == name]

    def summary(self) -> str:
        """Counts per class and split, as a small text table."""
        header = f"{'class':<16}" + "".join(f"{s:>12}" for s in SPLITS)
        rows = [
            f"{cls:<16}" + "".join(f"{self.counts.get(s, {}).get(cls, 0):>12}" for s in SPLITS)
            for cls in self.classes
        ]
        return "\n".join([header, *rows])


def _golden_members(store: ObjectStore) -> dict[str, set[str]]:
    return {
        records.id_from_key(info.key): set(records.read_json(store, info.key)["image_ids"])
        for info in store.list(GOLDEN_PREFIX)
    }


def pin_golden_set(
    store: ObjectStore, name: str, image_ids: Iterable[str], by: str
) -> dict[str, Any]:
    """Pin a golden set: these images are always held out and scored as their own set.

    Golden sets are immutable; pin a new name to change one.
    """
    records.validate_class_name(name)  # same rules: short, key-safe
    ids = sorted(set(image_ids))
    if not ids:
        raise DatasetError("a golden set needs at least one image", code="empty_golden_set")
    for image_id in ids:
        records.read_record(store, image_id)
    doc = {
        "name": name,
        "image_ids": ids,
        "pinned_by": by,
        "pinned_at": records.now_utc().isoformat(),
    }
    if not store.put_if_absent(
        f"{GOLDEN_PREFIX}{name}.json", records.to_json(doc), "application/json"
    ):
        existing = records.read_json(store, f"{GOLDEN_PREFIX}{name}.json")
        if existing["image_ids"] != ids:
            raise DatasetError(
                f"golden set {name!r} exists with other images; pin a new name",
                code="golden_set_exists",
            )
        return existing
    return doc


def _raw_keys(store: ObjectStore, image_ids: set[str]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for info in store.list("images/raw/"):
        image_id = records.id_from_key(info.key)
        if image_id in image_ids:
            keys[image_id] = info.key
    return keys


def build_entries(store: ObjectStore, policy: SplitPolicy) -> list[ManifestEntry]:
    """Every ingested, labelled image with its current label and split, sorted by id."""
    labelled = records.labelled_images(store)
    golden = _golden_members(store)
    raw = _raw_keys(store, set(labelled))
    entries = []
    for image_id in sorted(labelled):
        in_golden = tuple(sorted(name for name, ids in golden.items() if image_id in ids))
        split = "heldout" if in_golden else split_of(image_id, policy)
        entries.append(ManifestEntry(image_id, labelled[image_id], split, raw[image_id], in_golden))
    return entries


def _manifest_bytes(entries: list[ManifestEntry]) -> bytes:
    return b"".join(
        json.dumps(asdict(e), sort_keys=True, separators=(",", ":")).encode() + b"\n"
        for e in entries
    )


def take_snapshot(store: ObjectStore, by: str, policy: SplitPolicy = SplitPolicy()) -> Snapshot:
    """Freeze the labelled data now into an immutable snapshot (idempotent for equal data)."""
    entries = build_entries(store, policy)
    if not entries:
        raise DatasetError(
            "no ingested image has a label yet: label some (upload with a label, "
            "`inspector label`, or PUT /v1/images/{id}/label) before training",
            code="empty_snapshot",
        )
    manifest = _manifest_bytes(entries)
    snapshot_id = hashlib.sha256(
        manifest + json.dumps(asdict(policy), sort_keys=True).encode()
    ).hexdigest()[:16]
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for (split, label), n in Counter((e.split, e.label) for e in entries).items():
        counts[split][label] = n
    snapshot = Snapshot(
        snapshot_id=snapshot_id,
        created_at=records.now_utc().isoformat(),
        created_by=by,
        classes=tuple(sorted({e.label for e in entries})),
        policy=asdict(policy),
        counts=counts,
        golden_sets=tuple(sorted({g for e in entries for g in e.golden})),
        total=len(entries),
        entries=tuple(entries),
    )
    prefix = f"{SNAPSHOT_PREFIX}{snapshot_id}/"
    store.put_if_absent(prefix + "manifest.jsonl", manifest, "application/x-ndjson")
    doc = {k: v for k, v in asdict(snapshot).items() if k != "entries"}
    if not store.put_if_absent(prefix + "snapshot.json", records.to_json(doc), "application/json"):
        return load_snapshot(store, snapshot_id)
    return snapshot


def load_snapshot(store: ObjectStore, snapshot_id: str) -> Snapshot:
    """A stored snapshot with its entries, or :class:`DatasetError`."""
    prefix = f"{SNAPSHOT_PREFIX}{snapshot_id}/"
    try:
        doc = records.read_json(store, prefix + "snapshot.json")
        manifest = store.get_bytes(prefix + "manifest.jsonl")
    except NotFound as exc:
        raise DatasetError(f"no snapshot {snapshot_id!r}", code="snapshot_not_found") from exc
    entries = []
    for line in manifest.splitlines():
        raw = json.loads(line)
        raw["golden"] = tuple(raw.get("golden", ()))
        entries.append(ManifestEntry(**raw))
    doc["classes"] = tuple(doc["classes"])
    doc["golden_sets"] = tuple(doc.get("golden_sets", ()))
    return Snapshot(**doc, entries=tuple(entries))


def replay_sample(
    entries: Iterable[ManifestEntry], per_class: int, seed: int
) -> list[ManifestEntry]:
    """A class-balanced sample of older data: up to ``per_class`` images of each class."""
    by_class: dict[str, list[ManifestEntry]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e.image_id):
        by_class[entry.label].append(entry)
    rng = random.Random(seed)
    sample: list[ManifestEntry] = []
    for label in sorted(by_class):
        group = by_class[label]
        sample.extend(group if len(group) <= per_class else rng.sample(group, per_class))
    return sample
