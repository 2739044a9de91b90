"""Synthetic defects drawn into twins of good training parts: only good parts get a twin,
the clean part stays, a twin is a defect to the class loss, the cells that hold its
defect are the ones marked, and the cell loss counts only what it is told about."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from inspector import modeling, synthetic_defects
from inspector.model_input import InputSpec
from inspector.synthetic_defects import ANOMALY, IGNORE, PASTED, PROBABILITIES

GOOD = tf.constant([True, False])  # class 0 is ok, class 1 a defect
CELL = 16


def _paste(images: np.ndarray, labels: list[int], rate: float = 1.0, seed: int = 3):
    generator = tf.random.Generator.from_seed(seed)
    out, targets = synthetic_defects.paste(
        tf.constant(images), tf.constant(labels, tf.int32), GOOD, generator, rate=rate, cell=CELL
    )
    return out.numpy(), targets[ANOMALY].numpy(), targets[PROBABILITIES].numpy()


def _parts(n: int, value: float = 120.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (value + rng.normal(0, 6, (n, 64, 96, 1))).clip(0, 255).astype(np.float32)


def test_every_good_part_gets_a_twin_with_one_defect_that_is_a_defect_of_no_known_class():
    images = _parts(16)
    labels = [0] * 8 + [1] * 8
    out, cells, classes = _paste(images, labels)
    assert out.shape == (24, 64, 96, 1)
    np.testing.assert_array_equal(out[:16], images)  # the batch as it was, clean parts kept
    assert classes.tolist() == labels + [PASTED] * 8
    assert (cells[:8] == 0).all()  # the clean good parts: no defect anywhere
    assert (cells[8:16] == IGNORE).all()  # nobody knows where a real defect is
    for k in range(8):
        twin = out[16 + k, ..., 0]
        diff = np.abs(twin - images[k, ..., 0]) > 1  # the twin of good part k
        assert diff.any() and (cells[16 + k] == 1).any(), k
        # The marked cells are where the pixels changed.
        blocks = diff.reshape(4, CELL, 6, CELL).any(axis=(1, 3))
        assert blocks[cells[16 + k] == 1].all(), k
        assert not blocks[cells[16 + k] == 0].any(), k


def test_at_rate_zero_nothing_changes_and_every_good_cell_is_clean():
    images = _parts(8)
    out, cells, classes = _paste(images, [0] * 4 + [1] * 4, rate=0.0)
    np.testing.assert_array_equal(out, images)
    assert (cells[:4] == 0).all() and (cells[4:] == IGNORE).all()
    assert classes.tolist() == [0] * 4 + [1] * 4


def test_no_defect_is_drawn_onto_a_letterbox_bar():
    out, cells, classes = _paste(np.zeros((8, 64, 96, 1), np.float32), [0] * 8)
    assert out.shape[0] == 8 and not out.any()
    assert (cells == 0).all() and (classes == 0).all()


def test_the_defects_are_dots_and_strokes_of_both_polarities():
    images = _parts(64)
    out, _, _ = _paste(images, [0] * 64, seed=5)
    assert out.shape[0] == 128
    diff = out[64:, ..., 0] - images[..., 0]
    darker = (diff < -1).any(axis=(1, 2)) & ~(diff > 1).any(axis=(1, 2))
    brighter = (diff > 1).any(axis=(1, 2)) & ~(diff < -1).any(axis=(1, 2))
    area = (np.abs(diff) > 1).sum(axis=(1, 2))
    assert darker.sum() > 16 and brighter.sum() > 16
    assert area.min() <= 12  # a dot a few pixels across
    assert area.max() >= 100  # a stroke tens of pixels long


def test_a_share_of_the_shapes_are_soft_blobs_larger_than_any_dot():
    generator = tf.random.Generator.from_seed(11)
    coverage, blob = synthetic_defects._shapes(tf.constant(400), 160, 200, generator, 1 / 3)
    coverage, blob = coverage.numpy(), blob.numpy()
    assert abs(blob.mean() - 1 / 3) < 0.08
    assert not synthetic_defects._shapes(tf.constant(50), 160, 200, generator)[1].numpy().any()
    area = (coverage > 0).sum(axis=(1, 2))
    soft = ((coverage > 0) & (coverage < 1)).sum(axis=(1, 2))
    whole = area > 0
    low, high = synthetic_defects.BLOB_RADIUS
    # A blob's edge is soft over half its radius (an antialiased disc's over one pixel).
    assert (soft[blob & whole] >= 0.5 * area[blob & whole]).all()
    assert area[blob].max() <= np.pi * high**2 * 1.6 * 1.1
    assert np.median(area[blob & whole]) > np.pi * low**2


@pytest.mark.parametrize(
    ("targets", "logits", "expected"),
    [
        # One defect cell and one clean cell, each judged at logit 0: log 2 for both.
        ([[1.0, 0.0]], [[0.0, 0.0]], np.log(2)),
        # Ignored cells do not count, whatever their logits.
        ([[1.0, IGNORE, 0.0]], [[0.0, -50.0, 0.0]], np.log(2)),
        # Nothing to count: 0, not NaN.
        ([[IGNORE, IGNORE]], [[3.0, -3.0]], 0.0),
        # Clean cells only: the clean mean, halved.
        ([[0.0, 0.0]], [[0.0, 0.0]], 0.5 * np.log(2)),
    ],
)
def test_the_cell_loss_weighs_defect_and_clean_cells_equally(targets, logits, expected):
    value = synthetic_defects.cell_loss(tf.constant(targets), tf.constant(logits))
    assert float(value) == pytest.approx(expected, rel=1e-5)


GOOD_OF_3 = [True, False, False]  # ok, pit, scratch


@pytest.mark.parametrize(
    ("label", "probabilities", "expected"),
    [
        (0, [0.5, 0.25, 0.25], np.log(2)),  # a known class: -log P(class)
        (2, [0.5, 0.25, 0.25], np.log(4)),
        # A pasted defect: -log P(defect), whichever defect class holds it.
        (PASTED, [0.5, 0.25, 0.25], np.log(2)),
        (PASTED, [0.5, 0.5, 0.0], np.log(2)),
        (PASTED, [0.1, 0.0, 0.9], -np.log(0.9)),
    ],
)
def test_the_class_loss_asks_a_pasted_part_to_be_called_defective(label, probabilities, expected):
    loss = synthetic_defects.class_loss(GOOD_OF_3)
    value = loss(tf.constant([label]), tf.constant([probabilities]))
    assert float(value[0]) == pytest.approx(expected, rel=1e-5)


def test_a_pasted_part_is_judged_right_when_judged_any_defect():
    accuracy = synthetic_defects.class_accuracy(GOOD_OF_3)
    labels = tf.constant([0, 1, PASTED, PASTED])
    probabilities = tf.constant(
        [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]
    )
    assert accuracy(labels, probabilities).numpy().tolist() == [1.0, 0.0, 1.0, 0.0]


def test_the_training_model_shares_the_classifier_and_adds_one_cell_output():
    spec = InputSpec(64, 96, 1)
    model = modeling.build_model("fcn16", ["ok", "pit"], ["ok"], spec)
    trained = synthetic_defects.training_model(model)
    assert synthetic_defects.feature_cell(model) == CELL
    out = trained(np.zeros((2, 64, 96, 1), np.float32))
    assert out[ANOMALY].shape == (2, 4, 6, 1)
    assert out[PROBABILITIES].shape == (2, 2)
    shared = {id(w) for w in model.weights}
    extra = [w for w in trained.weights if id(w) not in shared]
    assert len(extra) == 2  # the anomaly convolution's kernel and bias, nothing else
    assert isinstance(trained.get_layer(ANOMALY), keras.layers.Conv2D)


@pytest.mark.parametrize(
    ("good", "rate", "pastes"),
    [
        (["ok"], 0.5, True),  # a line with good parts
        ([], 0.5, False),  # NEU-like, every class a defect: nothing to paste into
        (["ok"], 0.0, False),  # switched off
    ],
)
def test_a_run_pastes_only_where_there_are_good_parts_and_it_is_on(good, rate, pastes):
    from inspector import trainer
    from inspector.train_config import TrainConfig, TrainingPlan
    from inspector.training_data import TrainingData

    spec = InputSpec(32, 48, 1)
    classes = ["ok", "pit"] if good else ["crazing", "pit"]
    data = TrainingData(classes, good, [], [], [], spec, TrainingPlan(2, 2, 1e-3), None, 0, 0)
    model = modeling.build_model("fcn16", classes, good, spec)
    compiled = trainer._compile(model, TrainConfig(synthetic_defects=rate), data, 1e-3, None)
    # Without pastes the run trains the classifier itself, exactly as before they existed.
    assert (compiled is not model) == pastes
    assert any(layer.name == ANOMALY for layer in compiled.layers) == pastes
    assert not any(layer.name == ANOMALY for layer in model.layers)


@pytest.mark.parametrize(
    ("label", "probabilities", "expected_loss", "pulled"),
    [
        # A twin the model judges below the give-up point: the loss is capped there and
        # no gradient flows (it is not asked to see what it cannot).
        (PASTED, [0.9, 0.05, 0.05], -np.log(0.2), False),
        # Above it, the twin pulls as before.
        (PASTED, [0.5, 0.25, 0.25], np.log(2), True),
        # A labelled part is never given up on, however badly it is judged.
        (1, [0.9, 0.05, 0.05], -np.log(0.05), True),
    ],
)
def test_a_twin_judged_below_the_give_up_point_no_longer_pulls(
    label, probabilities, expected_loss, pulled
):
    loss = synthetic_defects.class_loss(GOOD_OF_3, give_up=0.2)
    p = tf.Variable([probabilities])
    with tf.GradientTape() as tape:
        value = loss(tf.constant([label]), p)
    gradient = tape.gradient(value, p).numpy()
    assert float(value[0]) == pytest.approx(expected_loss, rel=1e-5)
    assert bool(np.abs(gradient).sum() > 0) is pulled
