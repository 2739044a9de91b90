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
from typing import Any

import numpy as np

from inspector import registry
from inspector.datasets import ManifestEntry, Snapshot
from storage import ObjectStore

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
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall, escape and false-reject rates,
    confusion matrix, calibration; plus the per-image outcomes for paired tests."""
    ok = set(ok_classes)
    predicted = [classes[i] for i in probabilities.argmax(axis=1)] if len(labels) else []
    confidence = probabilities.max(axis=1) if len(labels) else np.zeros(0)
    correct = np.array([p == t for p, t in zip(predicted, labels, strict=True)], bool)
    names = list(classes) + sorted(set(labels) - set(classes))
    per_class: dict[str, dict[str, float]] = {}
    for name in names:
        tp = sum(1 for p, t in zip(predicted, labels, strict=True) if p == name and t == name)
        fp = sum(1 for p, t in zip(predicted, labels, strict=True) if p == name and t != name)
        fn = sum(1 for p, t in zip(predicted, labels, strict=True) if p != name and t == name)
        precision, recall = _rate(tp, tp + fp), _rate(tp, tp + fn)
        f1 = round(2 * precision * recall / (precision + recall), 6) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    supported = [stats["f1"] for stats in per_class.values() if stats["support"]]
    defective = [i for i, t in enumerate(labels) if t not in ok]
    good = [i for i, t in enumerate(labels) if t in ok]
    matrix = [
        [
            sum(1 for p, t in zip(predicted, labels, strict=True) if t == row and p == col)
            for col in names
        ]
        for row in names
    ]
    return {
        "count": len(labels),
        "accuracy": _rate(int(correct.sum()), len(labels)),
        "macro_f1": round(float(np.mean(supported)), 6) if supported else 0.0,
        "per_class": per_class,
        "escape_rate": _rate(sum(1 for i in defective if predicted[i] in ok), len(defective)),
        "false_reject_rate": _rate(sum(1 for i in good if predicted[i] not in ok), len(good)),
        "confusion": {"labels": names, "matrix": matrix},
        "ece": expected_calibration_error(confidence, correct.astype(float)),
        "image_ids": list(image_ids),
        "correct": correct.tolist(),
        "predicted": predicted,
    }


def slices(snapshot: Snapshot) -> dict[str, list[ManifestEntry]]:
    """The held-out set and every golden set of a snapshot."""
    result = {"heldout": snapshot.split("heldout")}
    for name in snapshot.golden_sets:
        result[f"golden:{name}"] = snapshot.split(f"golden:{name}")
    return result


def score_version(
    store: ObjectStore,
    number: int,
    images: dict[str, bytes],
    parts: dict[str, list[ManifestEntry]],
    work_dir: Path,
    *,
    ok_classes: Iterable[str] = ("ok",),
) -> dict[str, Any]:
    """Run version ``number`` on every slice's images; metrics per slice, latency, size."""
    from inspector.export import ServingModel  # TensorFlow: train worker only

    doc = registry.get_version(store, number)
    saved = work_dir / f"v{number}" / "saved_model"
    if not (saved / "saved_model.pb").exists():
        registry.download_directory(store, number, "saved_model", saved)
    serving = ServingModel(saved)
    ids = sorted({e.image_id for entries in parts.values() for e in entries})
    probabilities: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 64):
        chunk = ids[start : start + 64]
        out = serving.predict_bytes([images[i] for i in chunk])["probabilities"]
        probabilities.update(zip(chunk, out, strict=True))
    latencies = []
    for image_id in ids[:20]:  # one image per request, as a camera's upload is served
        started = time.perf_counter()
        serving.predict_bytes([images[image_id]])
        latencies.append((time.perf_counter() - started) * 1000)
    size = sum(info.size for info in store.list(registry.version_prefix(number) + "saved_model/"))
    result: dict[str, Any] = {
        "version": number,
        "classes": doc["classes"],
        "latency_ms_per_image": round(float(np.median(latencies)), 3) if latencies else None,
        "model_bytes": size,
        "slices": {},
    }
    for name, entries in parts.items():
        probs = (
            np.stack([probabilities[e.image_id] for e in entries])
            if entries
            else np.zeros((0, len(doc["classes"])))
        )
        result["slices"][name] = classification_metrics(
            [e.image_id for e in entries],
            [e.label for e in entries],
            probs,
            doc["classes"],
            ok_classes=ok_classes,
        )
    return result
