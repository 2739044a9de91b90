"""SavedModel with preprocessing in the graph, a TFLite file, and a warm-up set.

Signatures of the SavedModel (TF Serving's names):

``serving_default``  ``images``: tf.string [N] of encoded JPEG/PNG/BMP bytes
``serving_uint8``    ``pixels``: uint8 [N, H, W, 3] of any size
``serving_pixels``   ``pixels``: float32 [N, height, width, channels], already preprocessed

Each returns ``probabilities`` [N, C], ``class_names`` [N, C], ``p_defect`` [N]
(1 − P(good classes)), ``defect`` [N] (P(defect) ≥ the version's threshold), ``label``
[N] (the most probable defect class for a defective part, else the most probable good
class: :func:`inspector.thresholds.judge`, in the graph), ``confidence`` [N] (P(label)) and
``defect_map`` [N, height/8, width/8] (:func:`evidence_map`). Decode, letterboxing and
normalisation happen inside the graph with the same function training used
(:func:`inspector.pipeline_data.preprocess_encoded`), so there is no training/serving
skew. The threshold in the graph is the one chosen at training; an operator's moved
threshold is applied by the inference worker to ``p_defect``. The TFLite file is for
devices: it takes the preprocessed pixels and gives the probabilities (TFLite has no
image decoders, and a device judges, it does not draw maps).
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

from inspector import modeling
from inspector.model_input import InputSpec
from inspector.modeling import good_flags
from inspector.pipeline_data import preprocess_encoded, preprocess_pixels

SIGNATURE_BYTES = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"
SIGNATURE_PIXELS = "serving_pixels"
MAP_STRIDE = 8
MAP_SIGMA = 2.0  # canvas pixels


def _gaussian(channels: int) -> tf.Tensor:
    radius = int(3 * MAP_SIGMA)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / MAP_SIGMA) ** 2)
    kernel = np.outer(taps, taps) / taps.sum() ** 2
    return tf.constant(np.tile(kernel[:, :, None, None], (1, 1, channels, 1)), tf.float32)


def evidence_map(
    logits_model: keras.Model, good: Sequence[bool], pixels: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(probabilities, defect map) of a batch. The map is where the defect's evidence is:
    |∂ score / ∂ pixel| — score = the best defect logit minus the good classes' (for a
    model without good classes, the best logit) — blurred by a Gaussian of
    :data:`MAP_SIGMA` px, averaged over :data:`MAP_STRIDE`-px cells and scaled so its peak
    is the part's P(defect). Class maps themselves would not do: trained on image labels,
    a detector may fire a cell beside the defect (it sees it in its receptive field), and
    did on KolektorSDD's cracks; the gradient lands on the pixels it looked at
    (BENCHMARKS.md: peak within 8 px of the crack on every masked image)."""
    is_good = tf.constant(list(good))
    with tf.GradientTape() as tape:
        tape.watch(pixels)
        logits = tf.cast(logits_model(pixels, training=False), tf.float32)
        best_defect = tf.reduce_max(tf.where(is_good, -1e9, logits), axis=1)
        if any(good):
            score = best_defect - tf.reduce_logsumexp(tf.where(is_good, logits, -1e9), axis=1)
        else:
            score = best_defect
        total = tf.reduce_sum(score)  # each part's score depends on its own pixels only
    probabilities = tf.nn.softmax(logits, axis=-1)
    p_defect = 1.0 - tf.reduce_sum(tf.where(is_good, probabilities, 0.0), axis=1)
    gradient = tf.reduce_sum(tf.abs(tape.gradient(total, pixels)), -1, keepdims=True)
    blurred = tf.nn.depthwise_conv2d(gradient, _gaussian(1), [1, 1, 1, 1], "SAME")
    cells = tf.nn.avg_pool2d(blurred, MAP_STRIDE, MAP_STRIDE, "VALID")[..., 0]
    peak = tf.reduce_max(cells, axis=[1, 2], keepdims=True)
    return probabilities, cells / tf.maximum(peak, 1e-12) * p_defect[:, tf.newaxis, tf.newaxis]


def _outputs(
    probabilities: tf.Tensor,
    defect_map: tf.Tensor,
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
    return {
        "probabilities": probabilities,
        "class_names": tf.tile(names[tf.newaxis, :], [batch, 1]),
        "label": tf.gather(names, best),
        "confidence": tf.gather(probabilities, best, axis=1, batch_dims=1),
        "p_defect": p_defect,
        "defect": defect,
        "defect_map": defect_map,
    }


def export_saved_model(
    model: keras.Model,
    classes: Sequence[str],
    spec: InputSpec,
    path: Path,
    *,
    threshold: float | None,
    flips: int = 1,
) -> None:
    """Write the serving SavedModel to ``path`` (a directory that must not exist yet);
    it judges each image by the logits averaged over ``flips`` views
    (:func:`inspector.modeling.judging_logits`), and its defect map is their gradient."""
    names = tf.constant(list(classes))
    good = good_flags(model)
    logits_model = modeling.judging_logits(model, flips)
    archive = keras.export.ExportArchive()
    archive.track(logits_model)

    def predict(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities, defect_map = evidence_map(logits_model, good, pixels)
        return _outputs(probabilities, defect_map, names, good, threshold)

    shape = [spec.height, spec.width, spec.channels]

    def from_bytes(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return predict(decode_batch(images, spec))

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


def decode_batch(images: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """Encoded images (a string tensor) → the model's float32 canvases, in the graph."""
    return tf.map_fn(
        lambda encoded: preprocess_encoded(encoded, spec),
        images,
        fn_output_signature=tf.TensorSpec([spec.height, spec.width, spec.channels], tf.float32),
    )


def to_tflite(model: keras.Model, *, quantize: bool = True) -> bytes:
    """A TFLite flatbuffer of the model: preprocessed pixels in, probabilities out
    (dynamic-range quantised)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


def tflite_probabilities(model: bytes, pixels: np.ndarray) -> np.ndarray:
    """Run the TFLite model on preprocessed pixels, one image at a time."""
    interpreter = tf.lite.Interpreter(model_content=model, num_threads=2)
    interpreter.allocate_tensors()
    entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for i in range(len(pixels)):
        interpreter.set_tensor(entry["index"], pixels[i : i + 1].astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(exit_["index"])[0])
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
