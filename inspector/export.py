"""SavedModel with preprocessing in the graph, a TFLite file, and a warm-up set.

Signatures of the SavedModel (TF Serving's names):

``serving_default``  ``images``: tf.string [N] of encoded JPEG/PNG/BMP bytes
``serving_uint8``    ``pixels``: uint8 [N, H, W, 3] of any size
``serving_pixels``   ``pixels``: float32 [N, height, width, channels], already preprocessed

Each returns ``probabilities`` [N, C], ``class_names`` [N, C], ``p_defect`` [N]
(1 − P(good classes)), ``defect`` [N] (P(defect) ≥ the version's threshold), ``label``
[N] (the most probable defect class for a defective part, else the most probable good
class: :func:`inspector.thresholds.judge`, in the graph), ``confidence`` [N] (P(label)) and
``defect_map`` [N, height/16, width/16]: per cell of the canvas, P(defect) had the part
been only that cell (for a model without a good class: the probability of its label).
Every output is the mean over the part and the part turned 180° (:func:`turned_pair`;
BENCHMARKS.md measures what it costs and what it gains); training measures its
threshold and accuracy through the same function. Decode, letterboxing and normalisation
happen inside the graph with the same function training used
(:func:`inspector.pipeline_data.preprocess_encoded`), so there is no training/serving
skew. The threshold in the graph is the one chosen at training; an operator's moved
threshold is applied by the inference worker to ``p_defect``. The TFLite file is for
devices: it takes the preprocessed pixels (``serving_pixels``) because TFLite has no
image decoders.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from inspector.model_input import InputSpec
from inspector.modeling import POOLING, good_flags, maps_model
from inspector.pipeline_data import preprocess_encoded, preprocess_pixels

SIGNATURE_BYTES = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"
SIGNATURE_PIXELS = "serving_pixels"
OUTPUTS = (
    "probabilities",
    "class_names",
    "label",
    "confidence",
    "p_defect",
    "defect",
    "defect_map",
)


def _outputs(
    probabilities: tf.Tensor,
    logits: tf.Tensor,
    maps: tf.Tensor,
    names: tf.Tensor,
    good: Sequence[bool],
    threshold: float | None,
) -> dict[str, tf.Tensor]:
    batch = tf.shape(probabilities)[0]
    is_good = tf.constant(list(good))
    if any(good):
        p_defect = 1.0 - tf.reduce_sum(tf.where(is_good, probabilities, 0.0), axis=1)
        defect = p_defect >= (threshold if threshold is not None else 0.0)
    else:
        p_defect = tf.ones([batch])
        defect = tf.ones([batch], tf.bool)
    # The most probable class on the verdict's side (defect classes or good classes).
    same_side = tf.equal(is_good[tf.newaxis, :], tf.logical_not(defect)[:, tf.newaxis])
    best = tf.argmax(tf.where(same_side, probabilities, -1.0), axis=1)
    if any(good):
        # Per cell: good classes keep their pooled logit, defect classes take the cell's score.
        cell_logits = tf.where(is_good, logits[:, tf.newaxis, tf.newaxis, :], maps)
        cell = tf.nn.softmax(cell_logits, axis=-1)
        defect_map = 1.0 - tf.reduce_sum(tf.where(is_good, cell, 0.0), axis=-1)
    else:
        cell = tf.nn.softmax(maps, axis=-1)
        defect_map = tf.gather(cell, best, axis=3, batch_dims=1)
    return {
        "probabilities": probabilities,
        "class_names": tf.tile(names[tf.newaxis, :], [batch, 1]),
        "label": tf.gather(names, best),
        "confidence": tf.gather(probabilities, best, axis=1, batch_dims=1),
        "p_defect": p_defect,
        "defect": defect,
        "defect_map": defect_map,
    }


def turned_pair(
    both: keras.Model, pooling: keras.layers.Layer, pixels: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Probabilities, class maps and pooled logits of a batch: the means over each part and
    the part turned 180°, computed in one call. A detector that learnt to fire a few pixels
    beside a defect (image labels do not say where) fires on the other side of it in the
    turned copy, so the mean map peaks on the defect; the mean probabilities vary less."""
    n = tf.shape(pixels)[0]
    probabilities, maps = both(tf.concat([pixels, pixels[:, ::-1, ::-1]], 0), training=False)
    probabilities = tf.cast(probabilities, tf.float32)
    maps = tf.cast(maps, tf.float32)
    logits = pooling(maps)
    return (
        (probabilities[:n] + probabilities[n:]) / 2,
        (maps[:n] + maps[n:][:, ::-1, ::-1]) / 2,
        (logits[:n] + logits[n:]) / 2,
    )


def export_saved_model(
    model: keras.Model,
    classes: Sequence[str],
    spec: InputSpec,
    path: Path,
    *,
    threshold: float | None,
) -> None:
    """Write the serving SavedModel to ``path`` (a directory that must not exist yet)."""
    names = tf.constant(list(classes))
    good = good_flags(model)
    both = maps_model(model)
    pooling = model.get_layer(POOLING)
    archive = keras.export.ExportArchive()
    archive.track(both)

    def predict(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities, maps, logits = turned_pair(both, pooling, pixels)
        return _outputs(probabilities, logits, maps, names, good, threshold)

    shape = [spec.height, spec.width, spec.channels]

    def from_bytes(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(
            lambda encoded: preprocess_encoded(encoded, spec),
            images,
            fn_output_signature=tf.TensorSpec(shape, tf.float32),
        )
        return predict(pixels)

    def from_uint8(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        resized = tf.map_fn(
            lambda image: preprocess_pixels(image, spec),
            pixels,
            fn_output_signature=tf.TensorSpec(shape, tf.float32),
        )
        return predict(resized)

    archive.add_endpoint(
        SIGNATURE_BYTES, from_bytes, [tf.TensorSpec([None], tf.string, name="images")]
    )
    archive.add_endpoint(
        SIGNATURE_UINT8, from_uint8, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")]
    )
    archive.add_endpoint(
        SIGNATURE_PIXELS, predict, [tf.TensorSpec([None, *shape], tf.float32, name="pixels")]
    )
    archive.write_out(str(path), verbose=False)


class ServingModel:
    """A loaded SavedModel, called the way a server would call it."""

    def __init__(self, path: Path) -> None:
        self._loaded = tf.saved_model.load(str(path))
        self.signatures = self._loaded.signatures

    def predict_bytes(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Outputs of ``serving_default`` for encoded images."""
        fn = self.signatures[SIGNATURE_BYTES]
        return {k: v.numpy() for k, v in fn(images=tf.constant(list(images), tf.string)).items()}

    def predict_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs of ``serving_pixels`` for preprocessed float pixels."""
        fn = self.signatures[SIGNATURE_PIXELS]
        return {k: v.numpy() for k, v in fn(pixels=tf.constant(pixels, tf.float32)).items()}


def to_tflite(saved_model: Path, *, quantize: bool = True) -> bytes:
    """A TFLite flatbuffer of the ``serving_pixels`` signature (dynamic-range quantised)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[SIGNATURE_PIXELS]
    )
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


def tflite_probabilities(model: bytes, pixels: np.ndarray) -> np.ndarray:
    """Run the TFLite model on preprocessed pixels, one image at a time."""
    interpreter = tf.lite.Interpreter(model_content=model, num_threads=2)
    runner = interpreter.get_signature_runner(SIGNATURE_PIXELS)
    rows = [
        runner(pixels=pixels[i : i + 1].astype(np.float32))["probabilities"][0]
        for i in range(len(pixels))
    ]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def warmup_document(serving: ServingModel, images: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """Sample requests and the outputs this version gave them, for load-time verification."""
    outputs = serving.predict_bytes([data for _, data in images])
    return {
        "signature": SIGNATURE_BYTES,
        "requests": [
            {"image_id": image_id, "b64": base64.b64encode(data).decode()}
            for image_id, data in images
        ],
        "probabilities": np.round(outputs["probabilities"].astype(float), 6).tolist(),
        "labels": [label.decode() for label in outputs["label"]],
    }


def save_json(doc: Any, path: Path) -> None:
    """Write a JSON document (sorted keys, for stable diffs)."""
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
