"""What a fitted model says about a run's own images: the images a run fetched, whether
its model learnt them (training images), its new classes calibrated and its operating
threshold (validation images), and the held-out self-check of its export.

Used by :mod:`inspector.trainer` after the fit; each function takes the model and a
:class:`Split` and returns what the version records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from inspector import calibration, export, learnt, modeling, pipeline_data, thresholds
from inspector.datasets import ManifestEntry
from inspector.train_config import TrainConfig
from inspector.training_data import TrainingData
from storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """A split's entries, their cached files and their class indices."""

    entries: list[ManifestEntry]
    paths: list[Path]
    labels: np.ndarray


def fetch(
    store: ObjectStore, entries: Sequence[ManifestEntry], index: dict[str, int], cache_dir: Path
) -> Split:
    """``entries`` fetched into ``cache_dir`` (and verified), as a :class:`Split`."""
    paths = pipeline_data.fetch_to_cache(store, entries, cache_dir)
    pipeline_data.verify_cache(paths)
    return Split(list(entries), paths, np.asarray([index[e.label] for e in entries], np.int64))


def eval_dataset(split: Split, data: TrainingData, batch_size: int = 32) -> tf.data.Dataset:
    """The split's images, preprocessed as serving does, unaugmented, in order."""
    return pipeline_data.make_dataset(
        split.paths, split.labels.tolist(), data.spec, batch_size=batch_size, training=False
    )


def predict(model: keras.Model, split: Split, data: TrainingData) -> np.ndarray:
    """``model``'s outputs on the split's images, in order."""
    return np.asarray(model.predict(eval_dataset(split, data), verbose=0))


def check_learned(model: keras.Model, train: Split, data: TrainingData, epochs: int) -> dict:
    """Recall per class on (up to 64 per class of) the training images, unaugmented,
    judged by :func:`inspector.learnt.check` (which raises where the run did not learn)."""
    keep = [i for c in np.unique(train.labels) for i in np.flatnonzero(train.labels == c)[:64]]
    sample = Split(
        [train.entries[i] for i in keep], [train.paths[i] for i in keep], train.labels[keep]
    )
    predicted = predict(model, sample, data).argmax(axis=1)
    recalls = {
        data.classes[c]: float((predicted[sample.labels == c] == c).mean())
        for c in np.unique(sample.labels)
    }
    return learnt.check(recalls, epochs)


def calibrate(
    model: keras.Model, validation: Split | None, data: TrainingData, config: TrainConfig
) -> calibration.NewClassOffset | None:
    """A warm start's new classes' logits moved by the offset that fits the validation
    images best (:mod:`inspector.calibration`); None where there is nothing to calibrate."""
    if not (config.calibrate_new_classes and data.new_classes and not data.refit and validation):
        return None
    judge = modeling.judging_logits(model, config.judging_flips)
    logits = np.asarray(judge.predict(eval_dataset(validation, data), verbose=0))
    new = [c in data.new_classes for c in data.classes]
    offset = calibration.fit_offset(logits, validation.labels, new, data.classes)
    if offset.offset:
        modeling.shift_logits(model, new, offset.offset)
    log.info("new classes %s: %s", ", ".join(offset.classes), offset.note)
    return offset


def operating_point(
    model: keras.Model, validation: Split | None, data: TrainingData, config: TrainConfig
) -> thresholds.OperatingPoint:
    """The version's threshold, chosen on the validation images (:mod:`inspector.thresholds`)."""
    if not data.good:
        return thresholds.no_ok_class(config.target_escape_rate)
    if validation is None:
        return thresholds.choose([], [], config.target_escape_rate)
    probabilities = predict(model, validation, data)
    good = [c in data.good for c in data.classes]
    p_defect = 1 - probabilities[:, good].sum(axis=1)
    defective = [not good[label] for label in validation.labels]
    return thresholds.choose(
        p_defect.tolist(), defective, config.target_escape_rate, config.false_reject_ceiling
    )


def self_check(
    model: keras.Model,
    serving: export.ServingModel,
    tflite: bytes,
    heldout: Split,
    data: TrainingData,
    point: thresholds.OperatingPoint,
) -> dict[str, Any]:
    """Accuracy at the threshold of the SavedModel and of the TFLite file on the held-out
    images, and the largest difference between served and trained outputs."""
    keras_probs = predict(model, heldout, data)
    encoded = [p.read_bytes() for p in heldout.paths]
    served = np.concatenate(
        [
            serving.predict_bytes(encoded[i : i + 32])["probabilities"]
            for i in range(0, len(encoded), 32)
        ]
    )
    pixels = np.concatenate([images.numpy() for images, _ in eval_dataset(heldout, data)])
    lite = export.tflite_probabilities(tflite, pixels)

    def accuracy(probabilities: np.ndarray) -> float:
        judged = [
            thresholds.judge(row, data.classes, data.good, point.threshold).label
            for row in probabilities
        ]
        truth = [e.label for e in heldout.entries]
        return round(float(np.mean([a == b for a, b in zip(judged, truth, strict=True)])), 5)

    return {
        "count": len(heldout.entries),
        "accuracy": accuracy(served),
        "tflite_accuracy": accuracy(lite),
        # Served outputs against the trained model's, on the same images.
        "skew_max_abs_diff": float(np.abs(served - keras_probs).max()),
    }
