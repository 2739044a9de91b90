"""Learning without forgetting for a warm start: beside its own labels, the model being
fitted is asked to answer as its parent did over the parent's classes.

A warm start sees its old classes through a replay of at most ``replay_per_class`` images
each, and the steps that teach it its new classes move the trunk the old classes rely on.
Li and Hoiem ("Learning without forgetting", ECCV 2016) keep the old answers by a second
loss: the parent's probabilities over its own classes, softened by a temperature, are the
targets of the new model's probabilities over those classes (renormalised), on every
training image, old class or new. Wu et al. (BiC, CVPR 2019) pair it with the new
classes' logit offset that :mod:`inspector.calibration` fits after the run.

The parent runs beside the model in each step (a forward pass, no gradient): the
:class:`Distilled` model wraps what ``fit`` trains and adds the term to its loss, in
training and in validation alike, so early stopping watches the same sum.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from inspector import modeling
from inspector.synthetic_defects import PROBABILITIES
from inspector.train_config import TrainConfig
from inspector.training_data import TrainingData

log = logging.getLogger(__name__)


def distillation_loss(
    teacher_logits: tf.Tensor, probabilities: tf.Tensor, temperature: float
) -> tf.Tensor:
    """T² · KL(teacher ‖ student) over the teacher's classes (the first columns of
    ``probabilities``), both softened by ``temperature``; the mean over the batch."""
    old = teacher_logits.shape[-1]
    student = tf.math.log(tf.clip_by_value(probabilities[:, :old], 1e-7, 1.0)) / temperature
    teacher = tf.cast(teacher_logits, tf.float32) / temperature
    target = tf.nn.log_softmax(teacher)
    kl = tf.reduce_sum(tf.exp(target) * (target - tf.nn.log_softmax(student)), axis=-1)
    return temperature * temperature * tf.reduce_mean(kl)


class Distilled(keras.Model):
    """``fitted`` (what ``fit`` would train: the model, or the model with its synthetic
    defects' output) whose loss also asks its probabilities over the parent's classes to
    match the frozen ``teacher``'s (the parent's logits model)."""

    def __init__(
        self,
        fitted: keras.Model,
        teacher: keras.Model,
        *,
        weight: float,
        temperature: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fitted = fitted
        self.teacher = teacher
        self.teacher.trainable = False
        self.weight = float(weight)
        self.temperature = float(temperature)

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.fitted(inputs, training=training)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        probabilities = y_pred[PROBABILITIES] if isinstance(y_pred, dict) else y_pred
        teacher = self.teacher(x, training=False)
        return loss + self.weight * distillation_loss(teacher, probabilities, self.temperature)


def teacher(parent: keras.Model) -> keras.Model:
    """The parent ending at its logits (:class:`Distilled` freezes it): load a separate
    copy from the one the warm start grew its model from, which shares that copy's layers."""
    return modeling.logits_model(parent)


def teacher_for(config: TrainConfig, data: TrainingData, work_dir: Path) -> keras.Model | None:
    """The teacher of a warm start that adds classes, from the parent's ``model.keras``
    that the warm start downloaded into ``work_dir``; None for a first run, a refit, a run
    with the parent's classes, or with ``distillation`` off."""
    if data.parent is None or data.refit or config.distillation <= 0 or not data.new_classes:
        return None
    parent = modeling.load_keras(work_dir / "parent" / "model.keras")
    log.info(
        "warm start: keeps version %s's answers over its %s classes (distillation × %s)",
        data.parent,
        parent.outputs[0].shape[-1],
        config.distillation,
    )
    return teacher(parent)
