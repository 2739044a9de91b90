"""The TensorFlow half of a training run: fit with progress and guards, then export.

Imported only by the train worker (and benchmarks and tests), never by the API or
ingest processes. :mod:`inspector.training` decides what to train on; this module
turns that into a fitted, exported, self-checked set of files.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from inspector import export, modeling, pipeline_data, registry
from inspector.datasets import DatasetError, ManifestEntry
from inspector.model_input import Augmentation
from inspector.modeling import ModelError
from inspector.training import Progress, TrainConfig, TrainingFailed, eta_seconds, finite
from storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The files of a new version and the numbers that describe it."""

    files: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


class ProgressCallback(keras.callbacks.Callback):
    """Reports epoch, batch, loss and ETA at most a few times a second."""

    def __init__(self, progress: Progress, epochs: int, steps: int, interval: float = 0.5) -> None:
        super().__init__()
        self.progress, self.epochs, self.steps, self.interval = progress, epochs, steps, interval
        self.epoch = 0
        self.started = time.monotonic()
        self.last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and batch + 1 < self.steps:
            return
        self.last = now
        done = self.epoch * self.steps + batch + 1
        self.progress(
            {
                "phase": "training",
                "epoch": self.epoch + 1,
                "epochs": self.epochs,
                "batch": batch + 1,
                "batches": self.steps,
                "loss": float((logs or {}).get("loss", float("nan"))),
                "eta_seconds": eta_seconds(now - self.started, done, self.epochs * self.steps),
            }
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {k: round(float(v), 5) for k, v in (logs or {}).items()}
        log.info("epoch %d/%d: %s", epoch + 1, self.epochs, values)
        elapsed = time.monotonic() - self.started
        done = (epoch + 1) * self.steps
        self.progress(
            {
                "phase": "training",
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "batch": self.steps,
                "batches": self.steps,
                "loss": values.get("loss", float("nan")),
                "eta_seconds": eta_seconds(elapsed, done, self.epochs * self.steps),
                "epoch_logs": values,
            }
        )


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the loss is NaN/inf or has grown ``factor`` times its start."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.first: float | None = None
        self.reason: str | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if self.first is None and finite(loss):
            self.first = max(loss, 1e-3)
        if not finite(loss):
            self.reason = f"the training loss became {loss} at batch {batch + 1}"
        elif self.first is not None and loss > self.factor * self.first:
            self.reason = f"the training loss grew from {self.first:.3g} to {loss:.3g}: diverged"
        if self.reason:
            self.model.stop_training = True


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across GPUs when there is more than one; the default otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _paths(store: ObjectStore, entries: Sequence[ManifestEntry], cache_dir: Path) -> list[Path]:
    paths = pipeline_data.fetch_to_cache(store, entries, cache_dir)
    pipeline_data.verify_cache(paths)
    return paths


def _load_parent(
    store: ObjectStore, parent: int, config: TrainConfig, work_dir: Path
) -> tuple[keras.Model, list[str]]:
    doc = registry.get_version(store, parent)
    if doc["input"] != {"size": config.image_size, "channels": config.channels}:
        raise ModelError(
            f"parent version {parent} takes {doc['input']['size']}px × "
            f"{doc['input']['channels']} channels; this run asks for {config.image_size}px × "
            f"{config.channels}: train with parent 'none' "
            "to change the input",
            code="input_mismatch",
        )
    path = registry.download_file(store, parent, "model.keras", work_dir / "parent" / "model.keras")
    return modeling.load_keras(path), list(doc["classes"])


def _predict_keras(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    return np.asarray(model.predict(dataset, verbose=0))


def _pixels(dataset: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([images.numpy() for images, _ in dataset])


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float | None:
    return round(float((probabilities.argmax(axis=1) == labels).mean()), 5) if len(labels) else None


def fit_and_export(
    store: ObjectStore,
    config: TrainConfig,
    *,
    classes: list[str],
    train: list[ManifestEntry],
    validation: list[ManifestEntry],
    heldout: list[ManifestEntry],
    parent: int | None,
    cache_dir: Path,
    work_dir: Path,
    progress: Progress,
) -> Outcome:
    """Fit a model on ``train`` (early-stopped on ``validation``), export it, and check the
    export against the trained model on ``heldout``."""
    keras.utils.set_random_seed(config.seed)
    index = {name: i for i, name in enumerate(classes)}
    spec = config.spec
    progress({"phase": "fetching", "images": len(train) + len(validation) + len(heldout)})
    train_paths = _paths(store, train, cache_dir)
    val_paths = _paths(store, validation, cache_dir)
    held_paths = _paths(store, heldout, cache_dir)
    train_labels = [index[e.label] for e in train]
    augmentation = Augmentation(**config.augmentation.model_dump())
    train_ds = pipeline_data.make_dataset(
        train_paths,
        train_labels,
        spec,
        batch_size=config.batch_size,
        training=True,
        augmentation=augmentation,
        seed=config.seed,
    )
    val_ds = (
        pipeline_data.make_dataset(
            val_paths,
            [index[e.label] for e in validation],
            spec,
            batch_size=config.batch_size,
            training=False,
        )
        if validation
        else None
    )

    with distribution_strategy().scope():
        if parent is None:
            weights = Path(config.weights_path) if config.weights_path else None
            model = modeling.build_model(
                config.architecture, len(classes), spec, weights_path=weights
            )
            learning_rate = config.learning_rate
        else:
            model, parent_classes = _load_parent(store, parent, config, work_dir)
            model = modeling.grow_head(model, parent_classes, classes)
            learning_rate = config.fine_tune_learning_rate
        steps = -(-len(train) // config.batch_size)
        schedule: Any = learning_rate
        if config.lr_schedule == "cosine":
            schedule = keras.optimizers.schedules.CosineDecay(
                0.0,
                steps * config.epochs,
                warmup_target=learning_rate,
                warmup_steps=steps * min(2, config.epochs - 1),
                alpha=0.01,
            )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )

    guard = DivergenceGuard(config.divergence_factor)
    tensorboard_dir = work_dir / "tensorboard"
    callbacks = [
        ProgressCallback(progress, config.epochs, steps),
        guard,
        keras.callbacks.EarlyStopping(
            monitor="val_loss" if val_ds is not None else "loss",
            patience=config.patience,
            restore_best_weights=True,
            start_from_epoch=min(config.early_stopping_from_epoch, config.epochs - 1),
        ),
        keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), write_graph=False),
    ]
    weights_by_class = (
        pipeline_data.class_weights(train_labels, len(classes)) if config.class_weighting else None
    )
    started = time.monotonic()
    try:
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=callbacks,
            class_weight=weights_by_class,
            verbose=0,
        )
    except tf.errors.InvalidArgumentError as exc:
        raise DatasetError(
            f"an image could not be read while training: {exc.message[:300]}", code="corrupt_cache"
        ) from exc
    training_seconds = time.monotonic() - started
    if guard.reason:
        raise TrainingFailed(f"{guard.reason}; no version was created", code="diverged")

    progress({"phase": "exporting"})
    out = work_dir / "version"
    out.mkdir()
    saved = out / "saved_model"
    export.export_saved_model(model, classes, spec, saved)
    modeling.save_keras(model, out / "model.keras")
    serving = export.ServingModel(saved)

    progress({"phase": "evaluating", "images": len(heldout)})
    held_labels = np.asarray([index[e.label] for e in heldout], np.int64)
    summary: dict[str, Any] = {
        "training": {
            "epochs_run": len(history.history.get("loss", [])),
            "seconds": round(training_seconds, 1),
            "learning_rate": learning_rate,
            "stopped_early": len(history.history.get("loss", [])) < config.epochs,
        }
    }
    tflite = export.to_tflite(saved, quantize=config.tflite_quantize)
    (out / "model.tflite").write_bytes(tflite)
    if heldout:
        held_ds = pipeline_data.make_dataset(
            held_paths, held_labels.tolist(), spec, batch_size=64, training=False
        )
        keras_probs = _predict_keras(model, held_ds)
        encoded = [p.read_bytes() for p in held_paths]
        served = np.concatenate(
            [
                serving.predict_bytes(encoded[i : i + 64])["probabilities"]
                for i in range(0, len(encoded), 64)
            ]
        )
        lite = export.tflite_probabilities(tflite, _pixels(held_ds))
        summary["heldout"] = {
            "count": len(heldout),
            "accuracy": _accuracy(served, held_labels),
            "tflite_accuracy": _accuracy(lite, held_labels),
            # Served outputs against the trained model's, on the same images.
            "skew_max_abs_diff": float(np.abs(served - keras_probs).max()),
        }
    summary["tflite"] = {
        "bytes": len(tflite),
        "quantization": "dynamic_range" if config.tflite_quantize else "none",
        "input": "serving_pixels: float32 [1, size, size, channels], 0-255",
    }
    warm_entries = (heldout or train)[: config.warmup_images]
    warm_paths = held_paths if heldout else train_paths
    export.save_json(
        export.warmup_document(
            serving,
            [(e.image_id, p.read_bytes()) for e, p in zip(warm_entries, warm_paths, strict=False)],
        ),
        out / "warmup.json",
    )
    export.save_json(classes, out / "classes.json")
    export.save_json(
        {k: [float(v) for v in vs] for k, vs in history.history.items()}, out / "history.json"
    )

    files = {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}
    files.update(
        {
            f"tensorboard/{p.relative_to(tensorboard_dir)}": p
            for p in tensorboard_dir.rglob("*")
            if p.is_file()
        }
    )
    log.info("exported: %s", json.dumps(summary))
    return Outcome(files, summary)
