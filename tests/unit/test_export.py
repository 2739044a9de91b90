"""No training/serving skew: the SavedModel computes what the trained model computed, and
its verdict outputs (label, P(defect), defect map) are the ones the product computes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from inspector import export, pipeline_data, thresholds
from inspector.model_input import SIGNATURE_OUTPUTS, InputSpec
from inspector.modeling import build_model, judging_model
from inspector.simulate import LineSimulator, encode

CLASSES = ["ok", "scratch", "pit", "crack", "stain"]
THRESHOLD = 0.3


@pytest.fixture(scope="module", params=[3, 1], ids=["rgb", "gray"])
def exported(request, tmp_path_factory):
    spec = InputSpec(64, 48, request.param)
    model = build_model("fcn16", CLASSES, ["ok"], spec)
    path = tmp_path_factory.mktemp("export") / "saved_model"
    export.export_saved_model(model, CLASSES, spec, path, threshold=THRESHOLD)
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
    assert set(served) == set(SIGNATURE_OUTPUTS)  # what the TF Serving API lists
    np.testing.assert_allclose(served["probabilities"], trained, atol=1e-5)
    assert served["probabilities"].shape == (5, 5)
    assert [name.decode() for name in served["class_names"][0]] == CLASSES


def test_the_graph_judges_as_the_product_does(exported):
    _, _, serving, _ = exported
    served = serving.predict_bytes(_images())
    for row, label, p_defect, defect, confidence in zip(
        served["probabilities"],
        served["label"],
        served["p_defect"],
        served["defect"],
        served["confidence"],
        strict=True,
    ):
        judged = thresholds.judge(row, CLASSES, ["ok"], THRESHOLD)
        assert label.decode() == judged.label and bool(defect) == judged.defect
        assert p_defect == pytest.approx(judged.p_defect, abs=1e-5)
        assert confidence == pytest.approx(judged.confidence, abs=1e-5)


def test_every_signature_has_a_defect_map_over_the_canvas(exported):
    _, spec, serving, _path = exported
    images = _images()[:2]
    by_bytes = serving.predict_bytes(images)["defect_map"]
    assert by_bytes.shape == (2, spec.height // 8, spec.width // 8)
    assert ((by_bytes >= 0) & (by_bytes <= 1)).all()
    decoded = np.stack([tf.io.decode_image(b, channels=3).numpy() for b in images])
    by_pixels = serving.signatures[export.SIGNATURE_UINT8](pixels=tf.constant(decoded))
    np.testing.assert_allclose(by_pixels["defect_map"].numpy(), by_bytes, atol=1e-5)
    np.testing.assert_allclose(
        by_pixels["probabilities"].numpy(),
        serving.predict_bytes(images)["probabilities"],
        atol=1e-6,
    )


def test_tflite_agrees_with_the_saved_model(exported):
    model, spec, serving, _ = exported
    images = _images()
    pixels = np.stack(
        [pipeline_data.preprocess_encoded(tf.constant(b), spec).numpy() for b in images]
    )
    lite = export.tflite_probabilities(export.to_tflite(model, quantize=False), pixels)
    np.testing.assert_allclose(lite, serving.predict_bytes(images)["probabilities"], atol=1e-4)


def test_the_warmup_document_replays_to_the_same_outputs(exported):
    _, _, serving, _ = exported
    images = _images()[:2]
    doc = export.warmup_document(serving, [("a", images[0]), ("b", images[1])])
    import base64

    replay = serving.predict_bytes([base64.b64decode(r["b64"]) for r in doc["requests"]])
    np.testing.assert_allclose(replay["probabilities"], doc["probabilities"], atol=1e-5)


def test_the_defect_map_peaks_where_the_evidence_is(exported):
    """A model that scores a defect by its darkest spot: the map's peak lands on the spot,
    and its peak value is the part's P(defect)."""
    import keras

    from inspector.modeling import ClassPooling

    _, spec, _, _ = exported
    pixels = keras.Input((spec.height, spec.width, spec.channels))
    maps = keras.layers.Lambda(
        lambda x: tf.concat(
            [tf.fill(tf.shape(x[..., :1]), 200.0), 255.0 - tf.reduce_mean(x, -1, keepdims=True)],
            -1,
        )
    )(pixels)
    logits = ClassPooling([True, False], sharpness=20.0)(maps)
    toy = keras.Model(pixels, logits)
    image = np.full((1, spec.height, spec.width, spec.channels), 230.0, np.float32)
    image[0, 40:43, 10:13] = 20.0  # a dark pit at rows 40-42, columns 10-12
    probabilities, grid = export.evidence_map(toy, [True, False], tf.constant(image))
    grid = grid.numpy()[0]
    row, col = np.unravel_index(grid.argmax(), grid.shape)
    assert (row, col) == (41 // export.MAP_STRIDE, 11 // export.MAP_STRIDE)
    assert grid.max() == pytest.approx(float(probabilities.numpy()[0, 1]), rel=1e-4)


def test_a_saved_model_with_test_time_flips_serves_what_the_judging_model_computes(tmp_path):
    """flips=4: the SavedModel, the judging Keras model and the TFLite file built from it
    agree, and differ from one view's outputs (the flips are in the graph)."""
    spec = InputSpec(64, 48, 1)
    model = build_model("fcn16", CLASSES, ["ok"], spec)
    export.export_saved_model(model, CLASSES, spec, tmp_path / "x4", threshold=THRESHOLD, flips=4)
    serving = export.ServingModel(tmp_path / "x4")
    images = _images()
    pixels = np.stack(
        [pipeline_data.preprocess_encoded(tf.constant(b), spec).numpy() for b in images]
    )
    judge = judging_model(model, 4)
    served = serving.predict_bytes(images)
    np.testing.assert_allclose(served["probabilities"], np.asarray(judge(pixels)), atol=1e-5)
    assert np.abs(served["probabilities"] - np.asarray(model(pixels))).max() > 1e-4
    assert served["defect_map"].shape == (len(images), spec.height // 8, spec.width // 8)
    np.testing.assert_allclose(served["defect_map"].max(axis=(1, 2)), served["p_defect"], rtol=1e-4)
    lite = export.tflite_probabilities(export.to_tflite(judge, quantize=False), pixels)
    np.testing.assert_allclose(lite, served["probabilities"], atol=1e-4)
