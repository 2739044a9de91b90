"""No training/serving skew: the SavedModel computes what the trained model computed, and
its verdict outputs (label, P(defect), defect map) are the ones the product computes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from inspector import export, pipeline_data, thresholds
from inspector.model_input import InputSpec
from inspector.modeling import build_model
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
    upright = np.asarray(model.predict(dataset, verbose=0))
    turned = np.asarray(model.predict(dataset.map(lambda x, y: (x[:, ::-1, ::-1], y)), verbose=0))
    trained = (upright + turned) / 2  # the part and the part turned 180° (export.turned_pair)
    served = serving.predict_bytes(images)
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
    assert by_bytes.shape == (2, spec.height // 16, spec.width // 16)
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
