"""Verdicts, the review queue and shadow verdicts, as documents in the store.

    verdicts/<id[:2]>/<id>/<version>.json      what version <version> judged the image
    review/<id[:2]>/<id>.json                  an unsure verdict awaiting a label
    shadow/<version>/<id[:2]>/<id>.json        what a candidate in shadow mode judged

Every verdict names the version that made it; one per (image, version), written with
create-if-absent, so a re-delivered request stores nothing twice. An image leaves the
review queue when it gets a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from inspector import records, registry, thresholds
from inspector.defect_maps import DefectMap
from storage import NotFound, ObjectStore

OK_LABELS_DEFAULT = frozenset({records.OK_CLASS})


def verdict_key(image_id: str, version: int) -> str:
    """Where a version's verdict on an image lives."""
    return f"verdicts/{image_id[:2]}/{image_id}/{version:06d}.json"


def review_key(image_id: str) -> str:
    """An image's entry in the review queue."""
    return f"review/{image_id[:2]}/{image_id}.json"


def shadow_key(version: int, image_id: str) -> str:
    """A shadow candidate's verdict on an image."""
    return f"shadow/{version:06d}/{image_id[:2]}/{image_id}.json"


def make_verdict(
    image_id: str | None,
    version: int,
    classes: Sequence[str],
    probabilities: Sequence[float],
    *,
    ok_labels: Iterable[str] = OK_LABELS_DEFAULT,
    threshold: float | None = 0.5,
    defect_map: np.ndarray | None = None,
    review_margin: float = 1.0,
    review_type_below: float = 0.0,
    latency_ms: float | None = None,
) -> dict[str, Any]:
    """A verdict from one row of the model's output, judged at ``threshold`` on P(defect)
    (:func:`inspector.thresholds.judge`). It is ``unsure`` when P(defect) lies within
    ``review_margin`` log-odds of the threshold, or when it is defective and its defect
    type has less than ``review_type_below`` of P(defect). A defective or unsure verdict
    carries its defect map."""
    judgement = thresholds.judge(probabilities, classes, ok_labels, threshold)
    unsure = thresholds.near_threshold(judgement.p_defect, threshold, review_margin) or (
        judgement.defect and judgement.type_confidence < review_type_below
    )
    verdict: dict[str, Any] = {
        "image_id": image_id,
        "label": judgement.label,
        "confidence": judgement.confidence,
        "defect": judgement.defect,
        "p_defect": judgement.p_defect,
        "threshold": threshold,
        "type_confidence": judgement.type_confidence,
        "unsure": unsure,
        "model_version": version,
        "probabilities": {
            c: round(float(p), 6) for c, p in zip(classes, probabilities, strict=True)
        },
        "latency_ms": None if latency_ms is None else round(latency_ms, 3),
        "decided_at": records.now_utc().isoformat(),
    }
    if defect_map is not None and (judgement.defect or unsure):
        verdict["defect_map"] = DefectMap.from_grid(defect_map).to_doc()
    return verdict


def record(store: ObjectStore, verdict: Mapping[str, Any]) -> bool:
    """Store a verdict (once per image and version); queue it for review if unsure.
    True if this call stored it."""
    image_id = str(verdict["image_id"])
    created = store.put_if_absent(
        verdict_key(image_id, int(verdict["model_version"])),
        records.to_json(dict(verdict)),
        "application/json",
    )
    if created and verdict.get("unsure"):
        store.put_if_absent(
            review_key(image_id), records.to_json(dict(verdict)), "application/json"
        )
    return created


def record_shadow(store: ObjectStore, verdict: Mapping[str, Any]) -> None:
    """Store a shadow candidate's verdict."""
    store.put_if_absent(
        shadow_key(int(verdict["model_version"]), str(verdict["image_id"])),
        records.to_json(dict(verdict)),
        "application/json",
    )


def latest(store: ObjectStore, image_id: str) -> dict[str, Any] | None:
    """The newest verdict on an image (by the highest version that judged it)."""
    keys = [info.key for info in store.list(f"verdicts/{image_id[:2]}/{image_id}/")]
    return records.read_json(store, keys[-1]) if keys else None


def history(store: ObjectStore, image_id: str) -> list[dict[str, Any]]:
    """Every verdict on an image, oldest version first."""
    return [
        records.read_json(store, info.key)
        for info in store.list(f"verdicts/{image_id[:2]}/{image_id}/")
    ]


def judged_ids(store: ObjectStore) -> set[str]:
    """Images with at least one verdict, from key names alone."""
    return {info.key.split("/")[2] for info in store.list("verdicts/")}


def review_queue(store: ObjectStore, limit: int = 100) -> list[dict[str, Any]]:
    """Unsure verdicts whose image has no label yet, closest to their threshold first."""
    labelled = set(records.current_labels(store))
    pending = []
    for info in store.list("review/"):
        image_id = records.id_from_key(info.key)
        if image_id in labelled:
            continue
        try:
            pending.append(records.read_json(store, info.key))
        except NotFound:
            continue
    return sorted(pending, key=_closeness)[:limit]


def _closeness(verdict: Mapping[str, Any]) -> float:
    """How far a verdict is from its threshold, in log-odds (closest first in review);
    verdicts from before thresholds by their confidence."""
    threshold = verdict.get("threshold")
    if threshold is None or "p_defect" not in verdict:
        return float(verdict.get("confidence", 0.0))
    return abs(thresholds.logit(float(verdict["p_defect"])) - thresholds.logit(float(threshold)))


def shadow_summary(store: ObjectStore, version: int) -> dict[str, Any] | None:
    """How a shadow candidate did on live traffic: agreement with the production verdict
    on the same images, and accuracy on the images that got labelled meanwhile."""
    prefix = f"shadow/{version:06d}/"
    shadows = [records.read_json(store, info.key) for info in store.list(prefix)]
    if not shadows:
        return None
    labels = records.current_labels(store)
    agree = compared = right = labelled = 0
    for shadow in shadows:
        image_id = shadow["image_id"]
        production = shadow.get("production_label")
        if production is not None:
            compared += 1
            agree += int(production == shadow["label"])
        if image_id in labels:
            labelled += 1
            right += int(labels[image_id] == shadow["label"])
    return {
        "candidate_version": version,
        "images": len(shadows),
        "compared_with_production": compared,
        "agreement": round(agree / compared, 4) if compared else None,
        "labelled": labelled,
        "accuracy_on_labelled": round(right / labelled, 4) if labelled else None,
        "since": min(s["decided_at"] for s in shadows),
    }


def shadow_candidate(store: ObjectStore) -> int | None:
    """The candidate to run in shadow mode: the newest version awaiting approval."""
    state = registry.read_state(store)
    waiting = [n for n, s in state.states.items() if s == "awaiting_approval"]
    return max(waiting) if waiting else None
