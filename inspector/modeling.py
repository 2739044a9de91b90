"""Architectures, warm start from a parent version, a head that grows with new classes, and
the flip-averaged model a version judges with.

Every model takes float32 [N, height, width, channels] on a 0-255 scale (what
:func:`inspector.pipeline_data.preprocess_encoded` produces) and normalises inside. Its
trunk is fully convolutional; the head is a 1×1 convolution named ``classifier`` that
gives one score map per class (a class-activation map), and :class:`ClassPooling` turns
the maps into one logit per class: good classes (``ok``) by the mean over the map, defect
classes by a log-sum-exp ("soft maximum"), so a defect a few pixels wide on a large clean
part still decides the image. A softmax named ``probabilities`` follows. Growing the head
copies the old classes' kernel columns and biases, so an old class's score maps are
unchanged by adding a new one. (The served defect map is not these class maps but an
input-gradient map; see inspector.export.)

Why this head: measured in BENCHMARKS.md ("Real lines", what was tried): on
KolektorSDD's thin cracks a global-average-and-max pooled dense head stayed near
chance (AUROC 0.61) after 1,000 steps, while the same trunk with class maps and
log-sum-exp pooling caught every held-back crack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from inspector.errors import InspectorError
from inspector.model_input import InputSpec

CLASSIFIER = "classifier"
FEATURES = "features"
# A grown head starts each new class this far below the lowest old bias (logits).
NEW_CLASS_BIAS_GAP = 4.0
POOLING = "class_pooling"
DEFAULT_SHARPNESS = 4.0
STANDARDIZE_FLOOR = 8.0  # Standardize: (x − mean) / (std + this), on the 0-255 scale


class ModelError(InspectorError):
    """The requested architecture, weights or class change cannot be built."""

    code = "model_error"


@keras.saving.register_keras_serializable(package="inspector")
class ClassPooling(keras.layers.Layer):
    """Class maps [N, h, w, K] → logits [N, K]: the mean for good classes, a log-sum-exp
    of sharpness r for defect classes, (1/r)·log(mean(exp(r·s)))."""

    def __init__(self, good: Sequence[bool], sharpness: float = DEFAULT_SHARPNESS, **kwargs: Any):
        super().__init__(**kwargs)
        self.good = [bool(g) for g in good]
        self.sharpness = float(sharpness)

    def call(self, maps: tf.Tensor) -> tf.Tensor:
        r = self.sharpness
        cells = tf.cast(tf.shape(maps)[1] * tf.shape(maps)[2], maps.dtype)
        mean = tf.reduce_mean(maps, axis=[1, 2])
        soft_max = (tf.reduce_logsumexp(r * maps, axis=[1, 2]) - tf.math.log(cells)) / r
        return tf.where(tf.constant(self.good)[tf.newaxis, :], mean, soft_max)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "good": self.good, "sharpness": self.sharpness}


@keras.saving.register_keras_serializable(package="inspector")
class Standardize(keras.layers.Layer):
    """Each image, each channel: (x − its mean) / (its standard deviation + ``floor``), on
    the 0-255 scale. What the line's light and the part's colour change (brightness,
    contrast, tint) is gone before the first convolution, so a few hundred steps go into
    telling defects from the surface instead (measured on the simulator's parts, whose
    light and colour vary: 35 % → 99 % held-out accuracy in 600 steps, BENCHMARKS.md)."""

    def __init__(self, floor: float = STANDARDIZE_FLOOR, **kwargs: Any):
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, images: tf.Tensor) -> tf.Tensor:
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        spread = tf.math.reduce_std(images, axis=[1, 2], keepdims=True)
        return (images - mean) / (spread + self.floor)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor}


def _conv_bn_relu(
    x: keras.KerasTensor, filters: int, name: str, strides: int = 1
) -> keras.KerasTensor:
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(
        x
    )
    # Momentum 0.9, not Keras's 0.99: with the few hundred steps of a small data set the
    # moving statistics must keep up, or validation sees a different network than training.
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _fcn16(x: keras.KerasTensor) -> keras.KerasTensor:
    """Per-image standardisation, then stride 16, cheap where the pixels are: two strided
    convolutions (16, 32 filters) bring a camera image to a quarter of its side before any
    wide layer, then pairs of convolutions at 1/4, 1/8 and 1/16 (32, 64, 128 filters). A
    1-px crack still reaches the first layers at full resolution; the class maps come out
    at 1/16."""
    x = Standardize(name="standardize")(x)
    x = _conv_bn_relu(x, 16, "s1", strides=2)
    x = _conv_bn_relu(x, 32, "s2", strides=2)
    x = _conv_bn_relu(x, 32, "s2b")
    for i, filters in enumerate((64, 128), start=3):
        x = _conv_bn_relu(x, filters, f"s{i}", strides=2)
        x = _conv_bn_relu(x, filters, f"s{i}b")
    return x


def _compact_cnn(x: keras.KerasTensor) -> keras.KerasTensor:
    """A stem, four conv blocks (32→256 filters), each followed by max pooling (stride 32).

    The stem halves inputs of 96 px and more (most of the cost sits at full resolution).
    """
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = _conv_bn_relu(x, 24, "stem", strides=2 if min(x.shape[1:3]) >= 96 else 1)
    for i, filters in enumerate((32, 64, 128, 256)):
        x = _conv_bn_relu(x, filters, f"conv{i}")
        x = keras.layers.MaxPooling2D(2, padding="same")(x)
    return x


def _mobilenet_v3_small(x: keras.KerasTensor) -> keras.KerasTensor:
    """keras.applications' MobileNetV3Small trained from scratch (no weights download)."""
    backbone = keras.applications.MobileNetV3Small(
        input_shape=tuple(x.shape[1:]),
        include_top=False,
        weights=None,
        pooling=None,
        include_preprocessing=True,  # it expects 0-255 input, as ours is
        dropout_rate=0.2,
    )
    # keras.applications builds it with momentum 0.999, made for ImageNet's million steps:
    # trained from scratch on a few hundred steps, its moving statistics never catch up and
    # validation sees a different network (NEU: 16-22 % validation accuracy while training
    # reached 73 %, bench/train_neu.py). Same 0.9 as the other trunks.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return backbone(x)


ARCHITECTURES: dict[str, Callable[[keras.KerasTensor], keras.KerasTensor]] = {
    "fcn16": _fcn16,
    "compact_cnn": _compact_cnn,
    "mobilenet_v3_small": _mobilenet_v3_small,
}


def _head(features: keras.KerasTensor, good: Sequence[bool], sharpness: float) -> keras.KerasTensor:
    maps = keras.layers.Conv2D(len(good), 1, name=CLASSIFIER)(keras.layers.Dropout(0.2)(features))
    logits = ClassPooling(good, sharpness, name=POOLING)(maps)
    return keras.layers.Activation("softmax", name="probabilities", dtype="float32")(logits)


def build_model(
    architecture: str,
    classes: Sequence[str],
    good: Sequence[str],
    spec: InputSpec,
    *,
    sharpness: float = DEFAULT_SHARPNESS,
    weights_path: Path | None = None,
) -> keras.Model:
    """A fresh model for ``classes`` (``good`` ones are the non-defects); ``weights_path``
    loads trunk weights from a local file."""
    if architecture not in ARCHITECTURES:
        raise ModelError(
            f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}",
            code="unknown_architecture",
        )
    if len(classes) < 2:
        raise ModelError("a classifier needs at least two classes", code="single_class")
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="pixels")
    features = keras.layers.Identity(name=FEATURES)(ARCHITECTURES[architecture](inputs))
    flags = [c in set(good) for c in classes]
    model = keras.Model(inputs, _head(features, flags, sharpness), name=architecture)
    if weights_path is not None:
        if not weights_path.is_file():
            raise ModelError(f"weights file {weights_path} does not exist", code="weights_missing")
        model.load_weights(weights_path, skip_mismatch=True)
    return model


def logits_model(model: keras.Model) -> keras.Model:
    """The same weights, ending at the pooled logits."""
    return keras.Model(model.inputs, model.get_layer(POOLING).output)


# The views a judging model averages: the image, turned 180°, mirrored left-right, mirrored
# up-down (axes of [N, height, width, channels]). Training draws every one of these
# flips (inspector.pipeline_data), so each view is a part the model has learnt to judge.
FLIP_VIEWS: tuple[tuple[int, ...], ...] = ((), (1, 2), (2,), (1,))


def _flipped(pixels: Any, axes: tuple[int, ...]) -> Any:
    for axis in axes:
        pixels = keras.ops.flip(pixels, axis=axis)
    return pixels


def judging_logits(model: keras.Model, flips: int = 1) -> keras.Model:
    """The same weights, ending at the logits averaged over the first ``flips`` of
    :data:`FLIP_VIEWS` of each image (1: the image alone). One call on a batch of
    ``flips`` × N views. A defect shows in every view, a view's chance response in one:
    the average ranked parts better than one view on KolektorSDD, NEU and the simulator
    (BENCHMARKS.md, "Test-time flips")."""
    base = logits_model(model)
    if flips == 1:
        return base
    if not 1 <= flips <= len(FLIP_VIEWS):
        raise ModelError(f"flips must be 1 to {len(FLIP_VIEWS)}, not {flips}", code="flips")
    pixels = keras.Input(model.inputs[0].shape[1:], name="pixels")
    views = keras.ops.concatenate([_flipped(pixels, a) for a in FLIP_VIEWS[:flips]], axis=0)
    logits = keras.ops.cast(base(views), "float32")
    per_view = keras.ops.reshape(logits, (flips, -1, logits.shape[-1]))
    return keras.Model(pixels, keras.ops.mean(per_view, axis=0), name=f"{model.name}_x{flips}")


def judging_model(model: keras.Model, flips: int = 1) -> keras.Model:
    """:func:`judging_logits` ending at the probabilities: what a version judges with."""
    if flips == 1:
        return model
    logits = judging_logits(model, flips)
    probabilities = keras.layers.Activation("softmax", name="probabilities", dtype="float32")
    return keras.Model(logits.inputs, probabilities(logits.output), name=logits.name)


def good_flags(model: keras.Model) -> list[bool]:
    """Which of the model's classes are good (not defects)."""
    return list(model.get_layer(POOLING).good)


def grow_head(
    model: keras.Model,
    old_classes: Sequence[str],
    new_classes: Sequence[str],
    good: Sequence[str] = (),
) -> keras.Model:
    """A model whose head has ``new_classes`` (old ones first, in their old order), sharing
    the trunk and keeping every old class's weights; new classes start from a bias far
    below the old ones, so old outputs barely move until the new classes are trained."""
    if list(new_classes[: len(old_classes)]) != list(old_classes):
        raise ModelError(
            "the class list may grow only at its end; old classes keep their positions",
            code="class_order",
        )
    if len(new_classes) == len(old_classes):
        return model
    old_head = model.get_layer(CLASSIFIER)
    kernel, bias = old_head.get_weights()
    pooling = model.get_layer(POOLING)
    flags = list(pooling.good) + [c in set(good) for c in new_classes[len(old_classes) :]]
    outputs = _head(model.get_layer(FEATURES).output, flags, pooling.sharpness)
    grown = keras.Model(model.inputs, outputs, name=model.name)
    added = len(new_classes) - len(old_classes)
    rng = np.random.default_rng(0)
    extra = rng.normal(0, kernel.std() or 0.01, (*kernel.shape[:-1], added)).astype(kernel.dtype)
    new_bias = np.concatenate([bias, np.full(added, bias.min() - NEW_CLASS_BIAS_GAP, bias.dtype)])
    grown.get_layer(CLASSIFIER).set_weights([np.concatenate([kernel, extra], axis=-1), new_bias])
    return grown


def shift_logits(model: keras.Model, classes: Sequence[bool], offset: float) -> None:
    """Add ``offset`` to the logits of the flagged ``classes``: to their classifier biases,
    which :class:`ClassPooling` passes through unchanged (mean and log-sum-exp alike)."""
    layer = model.get_layer(CLASSIFIER)
    kernel, bias = layer.get_weights()
    bias = bias + offset * np.asarray(classes, dtype=bias.dtype)
    layer.set_weights([kernel, bias])


# Shrink and perturb (Ash and Adams, "On warm-starting neural network training", NeurIPS
# 2020): a network trained on earlier data learns new data worse than a fresh one, and
# starting from SHRINK × its weights + PERTURB × a fresh initialisation closes the gap
# while keeping much of what it knew (BENCHMARKS.md, "Shrink and perturb").
SHRINK = 0.4
PERTURB = 0.1


def shrink_and_perturb(
    model: keras.Model, fresh: keras.Model, shrink: float = SHRINK, perturb: float = PERTURB
) -> None:
    """Set every trainable weight of ``model`` to ``shrink`` × itself + ``perturb`` × the
    same weight of ``fresh`` (a newly built model of the same layers and shapes); the
    batch norms' moving statistics are kept."""
    for layer in model.layers:
        if not layer.trainable_weights:
            continue
        mine, theirs = layer.trainable_weights, fresh.get_layer(layer.name).trainable_weights
        for weight, other in zip(mine, theirs, strict=True):
            weight.assign(shrink * weight + perturb * other)


def freeze_trunk(model: keras.Model, convolutions: int) -> list[str]:
    """Make the first ``convolutions`` convolutions of the trunk (and the batch norms that
    follow them, which then keep their statistics) untrainable and every other layer
    trainable (a parent saved with frozen layers is thawed first); their names."""
    layers = {layer.name: layer for layer in model.layers}
    for layer in layers.values():
        layer.trainable = True
    names = [
        name
        for name, layer in layers.items()
        if isinstance(layer, keras.layers.Conv2D) and name != CLASSIFIER
    ][:convolutions]
    for name in names:
        for frozen in (name, f"{name}_bn"):
            if frozen in layers:
                layers[frozen].trainable = False
    return names


def load_keras(path: Path) -> keras.Model:
    """A model saved with :func:`save_keras` (for warm starts)."""
    return keras.models.load_model(path, compile=False)


def save_keras(model: keras.Model, path: Path) -> None:
    """The trainable form of a model (the SavedModel is the serving form)."""
    model.save(path)
