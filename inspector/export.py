"""SavedModel with preprocessing in the graph, a TFLite file, and a warm-up set.

Signatures of the SavedModel (TF Serving's names):

``serving_default``  ``images``: tf.string [N] of encoded JPEG/PNG/BMP bytes
``serving_uint8``    ``pixels``: uint8 [N, H, W, 3] of any size
``serving_pixels``   ``pixels``: float32 [N, size, size, channels], already preprocessed

Each returns ``probabilities`` [N, C], ``class_names`` [N, C], ``label`` [N] (the most
probable class name) and ``confidence`` [N]. Decode, resize and normalisation happen
inside the graph with the same function training used
(:func:`inspector.pipeline_data.preprocess_encoded`), so there is no training/serving
skew. The TFLite file is for devices: it takes the preprocessed pixels (``serving_pixels``)
because TFLite has no image decoders.
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
from inspector.pipeline_data import preprocess_encoded, preprocess_pixels

SIGNATURE_BYTES = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"
SIGNATURE_PIXELS = "serving_pixels"


def _outputs(probabilities: tf.Tensor, names: tf.Tensor) -> dict[str, tf.Tensor]:
    batch = tf.shape(probabilities)[0]
    best = tf.argmax(probabilities, axis=1)
    return {
        "probabilities": probabilities,
        "class_names": tf.tile(names[tf.newaxis, :], [batch, 1]),
        "label": tf.gather(names, best),
        "confidence": tf.reduce_max(probabilities, axis=1),
    }


def export_saved_model(
    model: keras.Model, classes: Sequence[str], spec: InputSpec, path: Path
) -> None:
    """Write the serving SavedModel to ``path`` (a directory that must not exist yet)."""
    names = tf.constant(list(classes))
    archive = keras.export.ExportArchive()
    archive.track(model)

    def predict(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return _outputs(tf.cast(model(pixels, training=False), tf.float32), names)

    def from_bytes(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(
            lambda encoded: preprocess_encoded(encoded, spec),
            images,
            fn_output_signature=tf.TensorSpec([spec.size, spec.size, spec.channels], tf.float32),
        )
        return predict(pixels)

    def from_uint8(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        resized = tf.map_fn(
            lambda image: preprocess_pixels(image, spec),
            pixels,
            fn_output_signature=tf.TensorSpec([spec.size, spec.size, spec.channels], tf.float32),
        )
        return predict(resized)

    archive.add_endpoint(
        SIGNATURE_BYTES, from_bytes, [tf.TensorSpec([None], tf.string, name="images")]
    )
    archive.add_endpoint(
        SIGNATURE_UINT8, from_uint8, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")]
    )
    archive.add_endpoint(
        SIGNATURE_PIXELS,
        predict,
        [tf.TensorSpec([None, spec.size, spec.size, spec.channels], tf.float32, name="pixels")],
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
