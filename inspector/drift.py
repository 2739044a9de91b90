"""Drift: is a line's recent input still like what the production model was trained on?

Per line, the recent images' statistics (brightness, contrast, sharpness, from ingest)
and the mix of verdicts are compared with the production version's training snapshot
by the population stability index:

    PSI = Σ over bins (p_recent − p_reference) · ln(p_recent / p_reference)

with ten bins cut at the reference's deciles (and the classes as bins for the verdict
mix). Rule of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 major shift. A line
whose largest PSI passes ``threshold`` raises an alert.

    drift/lines/<line>.json          the latest check of a line (overwritten: a view)
    drift/alerts/<seq>-<line>.json   every alert raised (append-only)
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from inspector import datasets, records, registry, verdicts
from storage import NotFound, ObjectStore

FEATURES = ("brightness", "contrast", "sharpness")
BINS = 10
EPSILON = 1e-4  # keeps empty bins from dividing by zero


def _key_safe(line: str) -> str:
    # Line ids may hold ":", which keys may not.
    return line.replace(":", "=3A")


def psi(reference: Sequence[float], recent: Sequence[float], bins: int = BINS) -> float:
    """Population stability index of ``recent`` against ``reference`` (decile bins)."""
    if len(reference) < 2 or len(recent) == 0:
        return 0.0
    edges = np.unique(np.quantile(np.asarray(reference, float), np.linspace(0, 1, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    new = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=len(edges) + 1)
    return _psi_from_counts(ref, new)


def _psi_from_counts(reference: np.ndarray, recent: np.ndarray) -> float:
    p = np.maximum(reference / max(reference.sum(), 1), EPSILON)
    q = np.maximum(recent / max(recent.sum(), 1), EPSILON)
    return round(float(np.sum((q - p) * np.log(q / p))), 6)


def psi_categorical(reference: Mapping[str, int], recent: Mapping[str, int]) -> float:
    """PSI of two label mixes (one bin per label)."""
    labels = sorted(set(reference) | set(recent))
    if not labels or not sum(recent.values()):
        return 0.0
    return _psi_from_counts(
        np.array([reference.get(k, 0) for k in labels], float),
        np.array([recent.get(k, 0) for k in labels], float),
    )


def _index_entries(store: ObjectStore, image_ids: Iterable[str]) -> list[dict[str, Any]]:
    entries = []
    for image_id in image_ids:
        try:
            entries.append(records.read_json(store, records.index_key(image_id)))
        except NotFound:
            continue
    return entries


def reference_profile(store: ObjectStore, version: int, sample: int = 2000) -> dict[str, Any]:
    """Statistics and label mix of the version's training images."""
    doc = registry.get_version(store, version)
    snapshot = datasets.load_snapshot(store, doc["snapshot_id"])
    train = snapshot.split("train")[:sample]
    entries = _index_entries(store, (e.image_id for e in train))
    return {
        "version": version,
        "features": {f: [float(e["stats"][f]) for e in entries] for f in FEATURES},
        "labels": dict(Counter(e.label for e in train)),
    }


def recent_by_line(store: ObjectStore, window: int) -> dict[str, list[dict[str, Any]]]:
    """The newest ``window`` ingested images of each line (by capture time)."""
    by_line: dict[str, list[dict[str, Any]]] = defaultdict(list)
    entries = _index_entries(
        store, (records.id_from_key(i.key) for i in store.list("index/ingested/"))
    )
    for entry in sorted(entries, key=lambda e: e["captured_at"]):
        by_line[entry["line"]].append(entry)
    return {line: items[-window:] for line, items in by_line.items()}


def check_line(
    reference: Mapping[str, Any], recent: Sequence[Mapping[str, Any]], store: ObjectStore
) -> dict[str, Any]:
    """PSI per feature and for the verdict mix, for one line's recent images."""
    scores = {
        f: psi(reference["features"][f], [float(e["stats"][f]) for e in recent]) for f in FEATURES
    }
    mix: Counter[str] = Counter()
    for entry in recent:
        verdict = verdicts.latest(store, entry["image_id"])
        if verdict is not None:
            mix[verdict["label"]] += 1
    scores["verdict_mix"] = psi_categorical(reference["labels"], mix)
    return {"scores": scores, "images": len(recent), "verdict_mix": dict(mix)}


def run_check(
    store: ObjectStore, *, threshold: float, window: int = 500, min_images: int = 200
) -> list[dict[str, Any]]:
    """Check every line against the production version; store results and alerts."""
    production = registry.alias(store, "production")
    if production is None:
        return []
    reference = reference_profile(store, production)
    results = []
    for line, recent in sorted(recent_by_line(store, window).items()):
        if len(recent) < min_images:
            continue
        result = {
            "line": line,
            "reference_version": production,
            "checked_at": records.now_utc().isoformat(),
            "threshold": threshold,
            **check_line(reference, recent, store),
        }
        worst = max(result["scores"], key=lambda k: result["scores"][k])
        result["worst"] = {"score": worst, "psi": result["scores"][worst]}
        result["alert"] = result["scores"][worst] > threshold
        name = _key_safe(line)
        if result["alert"]:  # the alert first: whoever sees the line's check sees its alert
            seq = f"{records.now_utc():%Y%m%dT%H%M%S%f}"
            store.put_if_absent(
                f"drift/alerts/{seq}-{name}.json", records.to_json(result), "application/json"
            )
        store.put_bytes(f"drift/lines/{name}.json", records.to_json(result), "application/json")
        results.append(result)
    return results


def latest(store: ObjectStore) -> list[dict[str, Any]]:
    """The latest check of every line."""
    return [records.read_json(store, info.key) for info in store.list("drift/lines/")]


def alerts(store: ObjectStore, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts, newest first."""
    keys = [info.key for info in store.list("drift/alerts/")][-limit:]
    return [records.read_json(store, key) for key in reversed(keys)]


def is_finite(value: float) -> bool:
    """Whether a score is a number (for the metrics endpoint)."""
    return not (math.isnan(value) or math.isinf(value))
