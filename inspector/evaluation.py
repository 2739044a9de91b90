"""Metrics of a model version on a snapshot's held-out set and golden sets.

:func:`classification_metrics` is plain NumPy over predictions; :func:`score_version`
runs a version's SavedModel (TensorFlow, imported inside) on the images through its
serving signature, exactly as a server would call it, and measures latency.

Defect escape rate: defective parts judged ok, over all defective parts.
False-reject rate: ok parts judged defective, over all ok parts.
ECE: expected calibration error over 10 equal-width confidence bins.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector import registry, thresholds
from inspector.datasets import ManifestEntry, Snapshot
from inspector.defect_maps import DefectMap
from storage import ObjectStore

if TYPE_CHECKING:
    from inspector.export import ServingModel

ECE_BINS = 10


def _rate(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Σ over confidence bins of |accuracy − mean confidence| × share of images."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return round(float(total), 6)


def classification_metrics(
    image_ids: Sequence[str],
    labels: Sequence[str],
    probabilities: np.ndarray,
    classes: Sequence[str],
    *,
    ok_classes: Iterable[str] = ("ok",),
    threshold: float | None = 0.5,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall, escape and false-reject rates,
    confusion matrix, calibration, every part judged at ``threshold`` on P(defect)
    (:func:`inspector.thresholds.judge`); ROC and precision–recall curves of P(defect);
    plus the per-image outcomes for paired tests and galleries."""
    ok = set(ok_classes)
    judged = [thresholds.judge(row, classes, ok, threshold) for row in probabilities]
    predicted = [j.label for j in judged]
    confidence = np.array([j.confidence for j in judged], np.float64)
    p_defect = [j.p_defect for j in judged]
    correct = np.array([p == t for p, t in zip(predicted, labels, strict=True)], bool)
    names = list(classes) + sorted(set(labels) - set(classes))
    per_class = {name: _class_stats(name, predicted, labels) for name in names}
    supported = [stats["f1"] for stats in per_class.values() if stats["support"]]
    defective = [t not in ok for t in labels]
    matrix = [
        [
            sum(1 for p, t in zip(predicted, labels, strict=True) if t == row and p == col)
            for col in names
        ]
        for row in names
    ]
    flagged = [j.defect for j in judged]
    n_defective = sum(defective)
    return {
        "count": len(labels),
        "threshold": threshold,
        "accuracy": _rate(int(correct.sum()), len(labels)),
        "macro_f1": round(float(np.mean(supported)), 6) if supported else 0.0,
        "per_class": per_class,
        "escape_rate": _rate(
            sum(1 for d, f in zip(defective, flagged, strict=True) if d and not f), n_defective
        ),
        "false_reject_rate": _rate(
            sum(1 for d, f in zip(defective, flagged, strict=True) if f and not d),
            len(labels) - n_defective,
        ),
        "confusion": {"labels": names, "matrix": matrix},
        "ece": expected_calibration_error(confidence, correct.astype(float)),
        "detection": {
            **thresholds.curves(p_defect, defective),
            "trade_off": thresholds.trade_off(p_defect, defective, threshold)
            if threshold is not None
            else [],
        },
        "image_ids": list(image_ids),
        "labels": list(labels),
        "correct": correct.tolist(),
        "predicted": predicted,
        "p_defect": p_defect,
    }


def _class_stats(name: str, predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    pairs = list(zip(predicted, labels, strict=True))
    tp = sum(1 for p, t in pairs if p == name and t == name)
    fp = sum(1 for p, t in pairs if p == name and t != name)
    fn = sum(1 for p, t in pairs if p != name and t == name)
    precision, recall = _rate(tp, tp + fp), _rate(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 6) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}


def slices(snapshot: Snapshot) -> dict[str, list[ManifestEntry]]:
    """The held-out set and every golden set of a snapshot."""
    result = {"heldout": snapshot.split("heldout")}
    for name in snapshot.golden_sets:
        result[f"golden:{name}"] = snapshot.split(f"golden:{name}")
    return result


def _predict(
    serving: ServingModel, ids: list[str], images: dict[str, bytes]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Probabilities and defect maps (where the version has them) by image id."""
    probabilities: dict[str, np.ndarray] = {}
    maps: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 32):
        chunk = ids[start : start + 32]
        out = serving.predict_bytes([images[i] for i in chunk])
        probabilities.update(zip(chunk, out["probabilities"], strict=True))
        if "defect_map" in out:
            maps.update(zip(chunk, out["defect_map"], strict=True))
    return probabilities, maps


def score_version(
    store: ObjectStore,
    number: int,
    images: dict[str, bytes],
    parts: dict[str, list[ManifestEntry]],
    work_dir: Path,
    *,
    ok_classes: Iterable[str] = ("ok",),
    threshold: float | None = None,
) -> dict[str, Any]:
    """Run version ``number`` on every slice's images, judged at ``threshold`` (default:
    the version's own); metrics per slice, the defect maps of every image judged or
    labelled defective, latency and size."""
    from inspector.export import ServingModel  # TensorFlow: train worker only

    doc = registry.get_version(store, number)
    if threshold is None:
        threshold = registry.version_threshold(doc)
    saved = work_dir / f"v{number}" / "saved_model"
    if not (saved / "saved_model.pb").exists():
        registry.download_directory(store, number, "saved_model", saved)
    serving = ServingModel(saved)
    ids = sorted({e.image_id for entries in parts.values() for e in entries})
    probabilities, maps = _predict(serving, ids, images)
    latencies = []
    for image_id in ids[:20]:  # one image per request, as a camera's upload is served
        started = time.perf_counter()
        serving.predict_bytes([images[image_id]])
        latencies.append((time.perf_counter() - started) * 1000)
    size = sum(info.size for info in store.list(registry.version_prefix(number) + "saved_model/"))
    result: dict[str, Any] = {
        "version": number,
        "classes": doc["classes"],
        "threshold": threshold,
        "latency_ms_per_image": round(float(np.median(latencies)), 3) if latencies else None,
        "model_bytes": size,
        "slices": {},
        "defect_maps": {},
    }
    ok = set(ok_classes)
    for name, entries in parts.items():
        probs = (
            np.stack([probabilities[e.image_id] for e in entries])
            if entries
            else np.zeros((0, len(doc["classes"])))
        )
        metrics = classification_metrics(
            [e.image_id for e in entries],
            [e.label for e in entries],
            probs,
            doc["classes"],
            ok_classes=ok,
            threshold=threshold,
        )
        result["slices"][name] = metrics
        for entry, predicted in zip(entries, metrics["predicted"], strict=True):
            if entry.image_id in maps and (entry.label not in ok or predicted not in ok):
                result["defect_maps"][entry.image_id] = DefectMap.from_grid(
                    maps[entry.image_id]
                ).to_doc()
    return result
