"""Learning without forgetting: the loss, and a warm start that keeps its parent's answers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from inspector import distillation, synthetic_defects
from inspector.model_input import InputSpec
from inspector.modeling import CLASSIFIER, build_model, grow_head

SPEC = InputSpec(32, 32, 1)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize(
    ("teacher", "student_old", "temperature", "expected"),
    [
        # The same answers over the old classes: nothing to keep. The new class's share
        # does not matter (the old classes' probabilities are renormalised).
        ([[2.0, 0.0]], [[2.0, 0.0]], 2.0, 0.0),
        ([[0.0, 0.0]], [[1.0, 1.0]], 1.0, 0.0),
        # Opposite answers: KL of the softened distributions, times T².
        ([[2.0, 0.0]], [[0.0, 2.0]], 1.0, "kl"),
        ([[2.0, 0.0]], [[0.0, 2.0]], 2.0, "kl"),
    ],
)
def test_the_loss_is_the_scaled_divergence_from_the_parents_answers(
    teacher, student_old, temperature, expected
):
    teacher_logits = np.array(teacher, np.float32)
    # The student's probabilities over three classes: two old, one new holding 30 %.
    old = _softmax(np.array(student_old, np.float32)) * 0.7
    probabilities = np.concatenate([old, np.full((1, 1), 0.3, np.float32)], axis=-1)
    got = float(
        distillation.distillation_loss(tf.constant(teacher_logits), probabilities, temperature)
    )
    if expected == "kl":
        p = _softmax(teacher_logits / temperature)
        q = _softmax(np.log(old) / temperature)
        expected = temperature**2 * float((p * np.log(p / q)).sum())
        assert expected > 0
    assert got == pytest.approx(expected, abs=1e-5)


def _parts(rng, n: int, low: float, high: float):
    return rng.uniform(low, high, (n, 32, 32, 1)).astype(np.float32)


def _parent(rng):
    """A model that tells dark parts ("a") from bright ones ("b")."""
    keras.utils.set_random_seed(0)
    parent = build_model("compact_cnn", ["a", "b"], [], SPEC)
    parent.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    images = np.concatenate([_parts(rng, 64, 0, 120), _parts(rng, 64, 135, 255)])
    parent.fit(images, np.repeat([0, 1], 64), epochs=10, batch_size=16, verbose=0)
    return parent


def _warm_start(parent, weight: float, images, labels):
    """The parent grown by class "c" and fitted on ``images``; the frozen teacher."""
    keras.utils.set_random_seed(1)
    copy = keras.models.clone_model(parent)
    copy.set_weights(parent.get_weights())
    grown = grow_head(copy, ["a", "b"], ["a", "b", "c"])
    teacher = distillation.teacher(parent)
    model = distillation.Distilled(grown, teacher, weight=weight, temperature=2.0)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy()
    )
    model.fit(images, labels, epochs=10, batch_size=16, verbose=0)
    return grown, teacher


def _old_answers(model, images):
    p = np.asarray(model(images))[:, :2]
    return p / p.sum(axis=-1, keepdims=True)


def test_a_warm_start_that_distils_keeps_its_parents_answers_and_the_parent_stays_frozen():
    rng = np.random.default_rng(0)
    parent = _parent(rng)
    old = np.concatenate([_parts(rng, 32, 0, 120), _parts(rng, 32, 135, 255)])
    answers = np.asarray(parent(old))
    # Only the new class (mid-grey parts): the steps that make a warm start forget.
    new = _parts(rng, 64, 100, 155)
    plain, _ = _warm_start(parent, 0.0, new, np.full(64, 2))
    kept, teacher = _warm_start(parent, 10.0, new, np.full(64, 2))
    np.testing.assert_allclose(_softmax(np.asarray(teacher(old))), answers, atol=1e-5)  # frozen
    moved = np.abs(_old_answers(plain, old) - answers).sum(axis=-1).mean()
    stayed = np.abs(_old_answers(kept, old) - answers).sum(axis=-1).mean()
    assert stayed < moved / 2, (stayed, moved)
    assert (np.asarray(kept(new)).argmax(axis=-1) == 2).all()  # and it learnt the new class


def test_a_model_with_the_synthetic_defects_output_distils_its_class_output():
    """Where the line has good parts, ``fit`` trains the classes and the anomaly cells
    together (a dict of outputs): the term is added to that loss, from the classes'."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    parent = build_model("fcn16", ["ok", "pit"], ["ok"], SPEC)
    copy = keras.models.clone_model(parent)
    copy.set_weights(parent.get_weights())
    grown = grow_head(copy, ["ok", "pit"], ["ok", "pit", "crack"], ["ok"])
    head = grown.get_layer(CLASSIFIER)
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + np.array([3.0, 0.0, 0.0])])  # as if a fit had moved it
    trained = synthetic_defects.training_model(grown)
    images = _parts(rng, 8, 0, 255)
    cells = np.zeros((8, 2, 2), np.int32)
    targets = {synthetic_defects.PROBABILITIES: np.array([0, 1, 2, 0] * 2), "anomaly": cells}
    losses = []
    for weight in (0.0, 100.0):
        model = distillation.Distilled(
            trained, distillation.teacher(parent), weight=weight, temperature=2.0
        )
        model.compile(loss=synthetic_defects.losses([True, False, False])[0])
        losses.append(model.evaluate(images, targets, verbose=0, return_dict=True)["loss"])
    teacher = distillation.teacher(parent)
    term = float(distillation.distillation_loss(teacher(images), grown(images), 2.0))
    assert term > 0.01
    assert losses[1] - losses[0] == pytest.approx(100.0 * term, rel=1e-3)
