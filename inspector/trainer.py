"""The TensorFlow half of a training run: fit with progress and guards, check what it
learnt, choose the operating threshold, and have :mod:`inspector.version_files` write and
self-check the version's files.

Imported only by the train worker (and benchmarks and tests), never by the API or
ingest processes. :mod:`inspector.training_data` decides what to train on; this module
turns that into a fitted, exported, self-checked set of files. Where the line has good
parts, the fit also teaches the trunk where synthetic defects drawn into them are
(:mod:`inspector.synthetic_defects`); the exported model is the classifier alone. A run
whose model stayed at chance on its own training images fails ("the model did not
learn") and publishes nothing; a warm start that did not learn a class new to its parent
(``new_class_recall``) or forgot one its parent knew (``kept_class_recall``) raises
:class:`inspector.learnt.WarmStartFailed`, on which
:mod:`inspector.training` trains again on every image, from the parent's weights shrunk
and perturbed (a *refit*) or from scratch; one that did learn them has their logits
calibrated on the validation images (:mod:`inspector.calibration`) before its threshold
is chosen. What is measured on the run's own images after the fit (learnt, calibrated,
threshold, self-check) lives in :mod:`inspector.fitted`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from inspector import (
    distillation,
    fitted,
    learnt,
    modeling,
    pipeline_data,
    registry,
    synthetic_defects,
    version_files,
)
from inspector.datasets import DatasetError
from inspector.model_input import Augmentation
from inspector.train_config import TrainConfig
from inspector.trainer_callbacks import (
    AverageWeights,
    DivergenceGuard,
    EarlyStop,
    ProgressCallback,
    ShortenableCosine,
    TimeBudget,
)
from inspector.training import Progress, TrainingFailed
from inspector.training_data import TrainingData
from storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """The files of a new version and the numbers that describe it."""

    files: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def distribution_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy across GPUs when there is more than one; the default otherwise."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _model(store: ObjectStore, config: TrainConfig, data: TrainingData, work_dir: Path):
    if data.parent is None:
        weights = Path(config.weights_path) if config.weights_path else None
        return modeling.build_model(
            config.architecture,
            data.classes,
            data.good,
            data.spec,
            sharpness=config.pooling_sharpness,
            weights_path=weights,
        )
    doc = registry.get_version(store, data.parent)
    path = registry.download_file(
        store, data.parent, "model.keras", work_dir / "parent" / "model.keras"
    )
    model = modeling.grow_head(modeling.load_keras(path), doc["classes"], data.classes, data.good)
    if data.refit:
        modeling.freeze_trunk(model, 0)  # thaw what the parent was saved with frozen
        fresh = modeling.build_model(
            config.architecture,
            data.classes,
            data.good,
            data.spec,
            sharpness=config.pooling_sharpness,
        )
        modeling.shrink_and_perturb(model, fresh)
        log.info(
            "refit from version %s: its weights × %s + a fresh initialisation × %s",
            data.parent,
            modeling.SHRINK,
            modeling.PERTURB,
        )
        return model
    frozen = modeling.freeze_trunk(model, config.fine_tune_frozen)
    if frozen:
        log.info("warm start: %s kept as version %s trained them", ", ".join(frozen), data.parent)
    return model


def _pastes(config: TrainConfig, data: TrainingData) -> bool:
    """Whether this run pastes synthetic defects (it needs good parts to paste into)."""
    return bool(data.good) and config.synthetic_defects > 0


def _schedule(config: TrainConfig, data: TrainingData) -> ShortenableCosine | float:
    """The learning rate: two epochs of warm-up, then cosine decay; or a constant."""
    plan = data.plan
    if config.lr_schedule != "cosine":
        return plan.learning_rate
    return ShortenableCosine(
        0.0,
        plan.steps,
        warmup_target=plan.learning_rate,
        warmup_steps=plan.steps_per_epoch * min(2, plan.epochs - 1),
        alpha=0.01,
    )


def _compile(
    model: keras.Model,
    config: TrainConfig,
    data: TrainingData,
    schedule: Any,
    teacher: keras.Model | None,
) -> keras.Model:
    """The model that ``fit`` trains: ``model`` itself, or ``model`` with the synthetic
    defects' cell output beside its classes (the layers are shared); with a ``teacher``
    (the parent's logits), wrapped to keep the parent's answers (:mod:`inspector.distillation`)."""
    optimizer = keras.optimizers.Adam(
        schedule, use_ema=config.ema_momentum > 0, ema_momentum=config.ema_momentum or 0.99
    )
    loss: Any
    metrics: Any
    if _pastes(config, data):
        trained = synthetic_defects.training_model(model)
        loss, metrics = synthetic_defects.losses(modeling.good_flags(model), config.twin_give_up)
    else:
        trained, loss, metrics = model, keras.losses.SparseCategoricalCrossentropy(), ["accuracy"]
    if teacher is not None:
        trained = distillation.Distilled(
            trained,
            teacher,
            weight=config.distillation,
            temperature=config.distillation_temperature,
        )
    trained.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return trained


# What a run does after its fit (the threshold, the export, TFLite, the held-out self-check,
# publishing) took 20-30 s on KolektorSDD on a 2-core Zen 3: the fit ends this much before
# the run's deadline.
AFTER_FIT_SECONDS = 45.0


@dataclass(frozen=True)
class _Fitted:
    history: dict[str, list[float]]
    seconds: float
    shortened: dict[str, Any] | None  # TimeBudget.shortened
    averaged: tuple[int, int] | None  # AverageWeights.epochs


def _datasets(
    model: keras.Model,
    config: TrainConfig,
    data: TrainingData,
    splits: tuple[fitted.Split, fitted.Split | None],
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """The fit's training batches (augmented, with synthetic defects where the line has
    good parts) and its validation batches."""
    train, validation = splits
    train_ds = pipeline_data.training_dataset(
        train.paths,
        train.labels.tolist(),
        data.spec,
        batch_size=config.batch_size,
        sampling=config.sampling,
        augmentation=Augmentation(**config.augmentation.model_dump()),
        seed=config.seed,
    )
    val_ds = fitted.eval_dataset(validation, data) if validation else None
    if _pastes(config, data):
        cell = synthetic_defects.feature_cell(model)
        train_ds = synthetic_defects.with_targets(
            train_ds,
            modeling.good_flags(model),
            rate=config.synthetic_defects,
            blobs=config.synthetic_blobs,
            cell=cell,
            seed=config.seed,
        )
        val_ds = synthetic_defects.without_cells(val_ds, cell) if val_ds is not None else None
    if val_ds is not None and validation is not None and config.validation_weights == "sampling":
        output = synthetic_defects.PROBABILITIES if _pastes(config, data) else None
        val_ds = pipeline_data.weighted_like_sampling(
            val_ds, validation.labels, config.sampling, output
        )
    return train_ds, val_ds


def _fit(
    model: keras.Model,
    config: TrainConfig,
    data: TrainingData,
    splits: tuple[fitted.Split, fitted.Split | None],
    progress: Progress,
    tensorboard_dir: Path,
    timing: tuple[ShortenableCosine | float, float | None],
) -> _Fitted:
    """Fit ``model``; ``timing``: its learning-rate schedule and the fit's deadline."""
    plan = data.plan
    schedule, deadline = timing
    train_ds, val_ds = _datasets(model, config, data, splits)
    guard = DivergenceGuard(config.divergence_factor)
    shown = ProgressCallback(progress, plan.epochs, plan.steps_per_epoch)
    budget = None
    if deadline is not None:
        budget = TimeBudget(
            deadline - AFTER_FIT_SECONDS,
            plan.epochs,
            plan.steps_per_epoch,
            schedule=schedule if isinstance(schedule, ShortenableCosine) else None,
            progress=shown,
        )
    keep = config.refit_keep_weights if data.refit else config.keep_weights
    keeper = _keeper(config, keep, plan.epochs, train_ds, budget, validated=val_ds is not None)
    callbacks = [
        shown,
        guard,
        *([budget] if budget else []),
        keeper,
        keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), write_graph=False),
    ]
    started = time.monotonic()
    try:
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=plan.epochs,
            steps_per_epoch=plan.steps_per_epoch,
            callbacks=callbacks,
            verbose=0,
        )
    except tf.errors.InvalidArgumentError as exc:
        raise DatasetError(
            f"an image could not be read while training: {exc.message[:300]}", code="corrupt_cache"
        ) from exc
    if guard.reason:
        raise TrainingFailed(f"{guard.reason}; no version was created", code="diverged")
    return _Fitted(
        history.history,
        time.monotonic() - started,
        budget.shortened if budget else None,
        keeper.epochs if isinstance(keeper, AverageWeights) else None,
    )


def _keeper(
    config: TrainConfig,
    keep: str,
    epochs: int,
    train_ds: tf.data.Dataset,
    budget: TimeBudget | None,
    *,
    validated: bool,
) -> AverageWeights | EarlyStop:
    """The callback that decides which weights the fit ends with (``keep``)."""
    if keep == "average":
        return AverageWeights(config.average_from, train_ds, epochs, budget)
    return EarlyStop(
        keep,
        monitor="val_loss" if validated else "loss",
        patience=config.patience,
        start_from_epoch=min(config.early_stopping_from_epoch, epochs - 1),
    )


def _training_summary(fit: _Fitted, data: TrainingData, epochs_run: int) -> dict[str, Any]:
    """How the fit went, as the version records it (``training``)."""
    planned = fit.shortened["epochs"] if fit.shortened else data.plan.epochs
    return {
        "epochs_run": epochs_run,
        "steps": epochs_run * data.plan.steps_per_epoch,
        "seconds": round(fit.seconds, 1),
        "learning_rate": data.plan.learning_rate,
        "stopped_early": epochs_run < planned,
        # Fewer epochs than planned, to end within the run's time budget.
        **({"shortened": fit.shortened} if fit.shortened else {}),
        # The epochs whose weights were averaged into the model's (first, last).
        **({"averaged_epochs": list(fit.averaged)} if fit.averaged else {}),
    }


def fit_and_export(
    store: ObjectStore,
    config: TrainConfig,
    data: TrainingData,
    *,
    cache_dir: Path,
    work_dir: Path,
    progress: Progress,
    deadline: float | None = None,
) -> Outcome:
    """Fit a model on ``data.train`` (weights averaged or early-stopped: ``_keeper``;
    ended in time for ``deadline``, a ``time.monotonic()``), choose its threshold on the
    validation images, export it, and check the export on the held-out images."""
    keras.utils.set_random_seed(config.seed)
    index = {name: i for i, name in enumerate(data.classes)}
    progress(
        {"phase": "fetching", "images": len(data.train) + len(data.validation) + len(data.heldout)}
    )
    train = fitted.fetch(store, data.train, index, cache_dir)
    validation = fitted.fetch(store, data.validation, index, cache_dir) if data.validation else None
    heldout = fitted.fetch(store, data.heldout, index, cache_dir) if data.heldout else None
    with distribution_strategy().scope():
        model = _model(store, config, data, work_dir)
        schedule = _schedule(config, data)
        trained = _compile(
            model, config, data, schedule, distillation.teacher_for(config, data, work_dir)
        )
    fit = _fit(
        trained,
        config,
        data,
        (train, validation),
        progress,
        work_dir / "tensorboard",
        (schedule, deadline),
    )
    epochs_run = len(fit.history.get("loss", []))
    judge = modeling.judging_model(model, config.judging_flips)
    learned = fitted.check_learned(judge, train, data, epochs_run)
    if not data.refit:  # a refit is the last resort: what it learnt, it publishes
        learnt.check_warm_start(
            learned["recall"], data, new=config.new_class_recall, kept=config.kept_class_recall
        )
    offset = fitted.calibrate(model, validation, data, config)  # ``learned``: before the offset
    point = fitted.operating_point(judge, validation, data, config)
    log.info("operating threshold %s (%s): %s", point.threshold, point.rule, point.note)
    summary: dict[str, Any] = {
        "training": {
            **_training_summary(fit, data, epochs_run),
            "learned": learned,
            **({"new_class_offset": offset.to_doc()} if offset else {}),
        },
        "operating_point": point.to_doc(),
    }
    files = version_files.write(
        model, judge, config, data, point, (heldout, train), work_dir, progress, summary
    )
    files.update(version_files.history(fit.history, work_dir))
    log.info("exported: %s", json.dumps(summary, default=str))
    return Outcome(files, summary)
