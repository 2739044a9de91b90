"""No training/serving skew: the SavedModel computes what the trained model computed."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from inspector import export, pipeline_data
from inspector.model_input import InputSpec
from inspector.modeling import build_model
from inspector.simulate import LineSimulator, encode

CLASSES = ["ok", "scratch", "pit", "crack", "stain"]


@pytest.fixture(scope="module", params=[3, 1], ids=["rgb", "gray"])
def exported(request, tmp_path_factory):
    spec = InputSpec(48, request.param)
    model = build_model("compact_cnn", len(CLASSES), spec)
    path = tmp_path_factory.mktemp("export") / "saved_model"
    export.export_saved_model(model, CLASSES, spec, path)
    return model, spec, export.ServingModel(path), path


def _images() -> list[bytes]:
    sim = LineSimulator(size=(90, 70), seed=3)
    return [
        encode(sim.part(label).image, fmt)
        for label, fmt in zip(CLASSES, ["jpeg", "png", "bmp", "jpeg", "png"], strict=True)
    ]


def test_served_outputs_equal_training_time_outputs_on_the_same_images(exported, tmp_path):
    model, spec, serving, _ = exported
    images = _images()
    paths = []
    for n, data in enumerate(images):
        paths.append(tmp_path / f"{n}")
        paths[-1].write_bytes(data)
    # Training time: the tf.data pipeline the trainer uses, then the Keras model.
    dataset = pipeline_data.make_dataset(
        paths, [0] * len(paths), spec, batch_size=8, training=False
    )
    trained = np.asarray(model.predict(dataset, verbose=0))
    served = serving.predict_bytes(images)
    np.testing.assert_allclose(served["probabilities"], trained, atol=1e-5)
    assert served["probabilities"].shape == (5, 5)
    assert [name.decode() for name in served["class_names"][0]] == CLASSES
    assert [label.decode() for label in served["label"]] == [
        CLASSES[i] for i in trained.argmax(axis=1)
    ]
    np.testing.assert_allclose(served["confidence"], trained.max(axis=1), atol=1e-5)


def test_the_uint8_signature_agrees_with_the_bytes_signature(exported):
    _, _, serving, _ = exported
    images = [encode(LineSimulator(size=64, seed=4).part("pit").image, "png")]
    decoded = tf.io.decode_image(images[0], channels=3).numpy()[np.newaxis]
    by_pixels = serving.signatures[export.SIGNATURE_UINT8](pixels=tf.constant(decoded))
    np.testing.assert_allclose(
        by_pixels["probabilities"].numpy(),
        serving.predict_bytes(images)["probabilities"],
        atol=1e-6,
    )


def test_tflite_agrees_with_the_saved_model(exported):
    _, spec, serving, path = exported
    images = _images()
    pixels = np.stack(
        [pipeline_data.preprocess_encoded(tf.constant(b), spec).numpy() for b in images]
    )
    lite = export.tflite_probabilities(export.to_tflite(path, quantize=False), pixels)
    np.testing.assert_allclose(lite, serving.predict_bytes(images)["probabilities"], atol=1e-4)


def test_the_warmup_document_replays_to_the_same_outputs(exported):
    _, _, serving, _ = exported
    images = _images()[:2]
    doc = export.warmup_document(serving, [("a", images[0]), ("b", images[1])])
    import base64

    replay = serving.predict_bytes([base64.b64decode(r["b64"]) for r in doc["requests"]])
    np.testing.assert_allclose(replay["probabilities"], doc["probabilities"], atol=1e-5)
