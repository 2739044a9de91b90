"""Architectures, warm start from a parent version, and a head that grows with new classes.

Every model takes float32 [N, size, size, channels] on a 0-255 scale (what
:func:`inspector.pipeline_data.preprocess_encoded` produces), normalises inside, and ends
in a Dense layer named ``classifier`` producing logits, followed by a softmax named
``probabilities``. Growing the head copies the old classes' kernel columns and biases, so
an old class's logit is unchanged by adding a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from inspector.errors import InspectorError
from inspector.model_input import InputSpec

CLASSIFIER = "classifier"
FEATURES = "features"


class ModelError(InspectorError):
    """The requested architecture, weights or class change cannot be built."""

    code = "model_error"


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


def _compact_cnn(x: keras.KerasTensor) -> keras.KerasTensor:
    """A stem, four conv blocks (32→256 filters), then average and max pooling side by side.

    The stem halves inputs of 96 px and more (most of the cost sits at full resolution).
    Max pooling answers "is there a defect anywhere", which averaging over a large clean
    surface dilutes; average pooling keeps the texture classes (crazing, scale).
    """
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = _conv_bn_relu(x, 24, "stem", strides=2 if x.shape[1] >= 96 else 1)
    for i, filters in enumerate((32, 64, 128, 256)):
        x = _conv_bn_relu(x, filters, f"conv{i}")
        x = keras.layers.MaxPooling2D(2)(x)
    pooled = [keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)]
    return keras.layers.Dropout(0.3)(keras.layers.Concatenate()(pooled))


def _mobilenet_v3_small(x: keras.KerasTensor) -> keras.KerasTensor:
    """keras.applications' MobileNetV3Small trained from scratch (no weights download)."""
    backbone = keras.applications.MobileNetV3Small(
        input_shape=tuple(x.shape[1:]),
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=True,  # it expects 0-255 input, as ours is
        dropout_rate=0.2,
    )
    # keras.applications builds it with momentum 0.999, made for ImageNet's million steps:
    # trained from scratch on a few hundred steps, its moving statistics never catch up and
    # validation sees a different network (NEU: 16-22 % validation accuracy while training
    # reached 73 %, bench/train_neu.py). Same 0.9 as the compact CNN.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return keras.layers.Dropout(0.2)(backbone(x))


ARCHITECTURES: dict[str, Callable[[keras.KerasTensor], keras.KerasTensor]] = {
    "compact_cnn": _compact_cnn,
    "mobilenet_v3_small": _mobilenet_v3_small,
}


def _head(features: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    logits = keras.layers.Dense(num_classes, name=CLASSIFIER)(features)
    return keras.layers.Activation("softmax", name="probabilities", dtype="float32")(logits)


def build_model(
    architecture: str, num_classes: int, spec: InputSpec, *, weights_path: Path | None = None
) -> keras.Model:
    """A fresh model; ``weights_path`` loads backbone weights from a local file."""
    if architecture not in ARCHITECTURES:
        raise ModelError(
            f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}",
            code="unknown_architecture",
        )
    if num_classes < 2:
        raise ModelError("a classifier needs at least two classes", code="single_class")
    inputs = keras.Input((spec.size, spec.size, spec.channels), name="pixels")
    features = keras.layers.Identity(name=FEATURES)(ARCHITECTURES[architecture](inputs))
    model = keras.Model(inputs, _head(features, num_classes), name=architecture)
    if weights_path is not None:
        if not weights_path.is_file():
            raise ModelError(f"weights file {weights_path} does not exist", code="weights_missing")
        model.load_weights(weights_path, skip_mismatch=True)
    return model


def logits_model(model: keras.Model) -> keras.Model:
    """The same weights, ending at the classifier's logits."""
    return keras.Model(model.inputs, model.get_layer(CLASSIFIER).output)


def grow_head(
    model: keras.Model, old_classes: Sequence[str], new_classes: Sequence[str]
) -> keras.Model:
    """A model whose head has ``new_classes`` (old ones first, in their old order), sharing
    the backbone and keeping every old class's weights; new classes start from a bias far
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
    features = model.get_layer(FEATURES).output
    outputs = _head(features, len(new_classes))
    grown = keras.Model(model.inputs, outputs, name=model.name)
    head = grown.get_layer(CLASSIFIER)
    added = len(new_classes) - len(old_classes)
    rng = np.random.default_rng(0)
    new_kernel = np.concatenate(
        [
            kernel,
            rng.normal(0, kernel.std() or 0.01, (kernel.shape[0], added)).astype(kernel.dtype),
        ],
        axis=1,
    )
    new_bias = np.concatenate([bias, np.full(added, bias.min() - 4.0, bias.dtype)])
    head.set_weights([new_kernel, new_bias])
    return grown


def load_keras(path: Path) -> keras.Model:
    """A model saved with :func:`save_keras` (for warm starts)."""
    return keras.models.load_model(path, compile=False)


def save_keras(model: keras.Model, path: Path) -> None:
    """The trainable form of a model (the SavedModel is the serving form)."""
    model.save(path)
