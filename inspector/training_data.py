"""What a training run learns from: its classes, its images, its input and its length.

No TensorFlow. :func:`select` takes a snapshot (and the parent version, for a warm start)
and returns a :class:`TrainingData`: the class list (a parent's classes first, in their
order, then new ones), which of them are good parts, the training images (all of the
snapshot's training split; for a warm start the images the parent never saw plus a
class-balanced replay sample of older ones, or for a refit all of them with a first run's
plan), the validation and held-out images, the
model input (the parent's, or chosen from the images' own shapes) and the plan of steps.
It refuses, saying what to do, data that cannot make a model: one class, or a class
with fewer labelled images than a model can learn from.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspector import datasets, records
from inspector.datasets import DatasetError, ManifestEntry, Snapshot
from inspector.errors import InspectorError
from inspector.model_input import ImageShape, InputSpec, choose_input
from inspector.train_config import TrainConfig, TrainingPlan, plan_training
from storage import ObjectStore

log = logging.getLogger(__name__)

HEAD = "class_maps"  # the head every version since defect maps has (modeling.py)


@dataclass(frozen=True)
class TrainingData:
    """Everything a run trains on, decided before TensorFlow loads."""

    classes: list[str]
    good: list[str]
    train: list[ManifestEntry]
    validation: list[ManifestEntry]
    heldout: list[ManifestEntry]
    spec: InputSpec
    plan: TrainingPlan
    parent: int | None
    new_images: int
    replayed: int
    note: str = ""
    # A warm start's classes that its parent did not know (its head grew for them).
    new_classes: tuple[str, ...] = ()
    # A warm start trained like a first run: on every training image, with a first run's
    # plan, from the parent's weights shrunk and perturbed, nothing frozen.
    refit: bool = False


def warm_startable(parent_doc: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a run can start from this parent version, and if not why."""
    if parent_doc is None:
        return False, ""
    if parent_doc.get("head") != HEAD:
        return False, (
            f"version {parent_doc['version']} predates defect maps (no class-map head): "
            "training from scratch instead of warm-starting from it"
        )
    return True, ""


def _parent_input(parent_doc: dict[str, Any], config: TrainConfig) -> InputSpec:
    spec = InputSpec.from_doc(parent_doc["input"])
    asked = (config.image_size, config.channels)
    if (asked[0] is not None and asked[0] != max(spec.height, spec.width)) or (
        asked[1] is not None and asked[1] != spec.channels
    ):
        raise InspectorError(
            f"parent version {parent_doc['version']} takes {spec} inputs; this run asks for a "
            f"longer side of {asked[0]} px and {asked[1]} channels: a warm start keeps its "
            "parent's input (leave image_size and channels unset), or train with parent "
            "'none' to change it",
            code="input_mismatch",
        )
    return spec


def _check_counts(snapshot: Snapshot, classes: list[str], train: list[ManifestEntry], least: int):
    total = Counter(e.label for e in snapshot.entries)
    trained = Counter(e.label for e in train)
    for name in classes:
        if total[name] < least:
            raise DatasetError(
                f"class {name!r} has {total[name]} labelled image"
                f"{'' if total[name] == 1 else 's'}; a class needs at least {least} to be learnt: "
                f"label {least - total[name]} more (or relabel these) and train again",
                code="too_few_images",
            )
        if not trained[name]:
            raise DatasetError(
                f"class {name!r} has {total[name]} labelled images, but none falls in the "
                "training split (the split is a function of each image's content hash): "
                "label a few more and train again",
                code="too_few_images",
            )


GREY_SAMPLE = 32


def _shapes(store: ObjectStore, entries: list[ManifestEntry]) -> list[ImageShape]:
    shapes = []
    for entry in entries:
        record = records.read_record(store, entry.image_id)
        shapes.append(ImageShape(record.height, record.width, record.channels))
    return shapes


def _grey_in_colour(store: ObjectStore, entries: list[ManifestEntry]) -> bool:
    """Whether colour-encoded training images are grey: in a sample of up to
    :data:`GREY_SAMPLE`, every pixel's channels agree within one level (cameras and data
    sets often store grey parts as RGB JPEGs; one channel trains as well, on a third of
    the cache)."""
    step = max(1, len(entries) // GREY_SAMPLE)
    for entry in entries[::step][:GREY_SAMPLE]:
        image = cv2.imdecode(np.frombuffer(store.get_bytes(entry.raw_key), np.uint8), 1)
        if image is None:
            return False
        pixels = image.astype(np.int16)
        if np.abs(pixels - pixels[..., :1]).max() > 1:
            return False
    return True


def _warm_train(
    store: ObjectStore,
    snapshot: Snapshot,
    parent_doc: dict[str, Any],
    config: TrainConfig,
    refit: bool,
) -> tuple[list[ManifestEntry], int, int]:
    """The images a warm start trains on (all of them for a refit), how many its parent
    never saw, and how many of the others are replayed."""
    seen = {
        e.image_id for e in datasets.load_snapshot(store, parent_doc["snapshot_id"]).split("train")
    }
    all_train = snapshot.split("train")
    new = [e for e in all_train if e.image_id not in seen]
    if refit:
        return all_train, len(new), len(all_train) - len(new)
    if not new:
        raise DatasetError(
            f"no new training images since version {parent_doc['version']}; "
            "label more data, or train with parent 'none' to start over",
            code="nothing_new",
        )
    replay = datasets.replay_sample(
        [e for e in all_train if e.image_id in seen], config.replay_per_class, config.seed
    )
    log.info(
        "fine-tuning on %d new images and a replay sample of %d older ones", len(new), len(replay)
    )
    return new + replay, len(new), len(replay)


def _fresh_input(
    store: ObjectStore, train: list[ManifestEntry], plan: TrainingPlan, config: TrainConfig
) -> InputSpec:
    """A first run's input, chosen from its training images' shapes and the pixel budget."""
    shapes = _shapes(store, train)
    channels = config.channels
    if channels is None and any(s.channels > 1 for s in shapes):
        channels = 1 if _grey_in_colour(store, train) else 3
    return choose_input(
        shapes,
        samples=plan.budget_samples(config.batch_size),
        pixel_budget=config.pixel_budget,
        long_side=config.image_size,
        channels=channels,
    )


def select(
    store: ObjectStore,
    snapshot: Snapshot,
    parent_doc: dict[str, Any] | None,
    config: TrainConfig,
    *,
    refit: bool = False,
) -> TrainingData:
    """The classes, images, input and plan of a run (the module docstring says how);
    ``refit``: a warm start from ``parent_doc`` trained like a first run, on every image."""
    good_names = {c.name for c in records.list_classes(store) if not c.defect}
    snapshot_classes = sorted(snapshot.classes)
    warm, note = warm_startable(parent_doc)
    if note:
        log.warning(note)
    if warm and parent_doc is not None:
        old = list(parent_doc["classes"])
        classes = old + [c for c in snapshot_classes if c not in old]
        train, new, replayed = _warm_train(store, snapshot, parent_doc, config, refit)
    else:
        classes, train = snapshot_classes, snapshot.split("train")
        new, replayed = len(train), 0
    if len(classes) < 2:
        raise DatasetError(
            f"the labelled data has only the class {classes[0]!r}; a classifier needs at least two",
            code="single_class",
        )
    if not train:
        raise DatasetError("the snapshot has no training images", code="empty_split")
    _check_counts(
        snapshot, [c for c in classes if c in snapshot_classes], train, config.min_images_per_class
    )
    plan = plan_training(config, len(train), fine_tune=warm and not refit, classes=len(classes))
    if warm and parent_doc is not None:
        spec = _parent_input(parent_doc, config)
    else:
        spec = _fresh_input(store, train, plan, config)
    log.info("model input %s, %d steps (%d epochs)", spec, plan.steps, plan.epochs)
    return TrainingData(
        classes=classes,
        good=[c for c in classes if c in good_names],
        train=train,
        validation=snapshot.split("validation"),
        heldout=snapshot.split("heldout"),
        spec=spec,
        plan=plan,
        parent=int(parent_doc["version"]) if warm and parent_doc else None,
        new_images=new,
        replayed=replayed,
        note=note,
        new_classes=tuple(classes[len(parent_doc["classes"]) :]) if warm and parent_doc else (),
        refit=refit and warm,
    )
