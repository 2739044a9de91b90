"""Architectures, the class-map head and its pooling, and the growing head."""

from __future__ import annotations

import typing

import keras
import numpy as np
import pytest

from inspector import train_config
from inspector.model_input import InputSpec
from inspector.modeling import (
    ARCHITECTURES,
    CLASSIFIER,
    ModelError,
    build_model,
    freeze_trunk,
    grow_head,
    judging_logits,
    judging_model,
    logits_model,
    shift_logits,
    shrink_and_perturb,
)

CLASSES = ["ok", "pit", "scratch"]
SPEC = InputSpec(64, 32, 3)


def class_maps(model, x):
    """The head's score maps [N, h, w, K]."""
    return np.asarray(keras.Model(model.inputs, model.get_layer(CLASSIFIER).output)(x))


def test_the_training_config_knows_exactly_the_architectures_that_exist():
    assert set(typing.get_args(train_config.Architecture)) == set(ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_each_architecture_builds_for_gray_and_colour_on_a_tall_canvas(architecture):
    for channels in (1, 3):
        spec = InputSpec(64, 32, channels)
        model = build_model(architecture, [*CLASSES, "crack"], ["ok"], spec)
        out = model(np.zeros((2, 64, 32, channels), np.float32))
        assert out.shape == (2, 4)
        maps = class_maps(model, np.zeros((1, 64, 32, channels), np.float32))
        assert maps.shape[-1] == 4 and maps.shape[1] >= maps.shape[2]  # tall stays tall


def test_good_classes_are_mean_pooled_and_defects_soft_maximum_pooled():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 32, 3)).astype(np.float32)
    maps = class_maps(model, x)
    logits = np.asarray(logits_model(model)(x))
    np.testing.assert_allclose(logits[:, 0], maps[..., 0].mean(axis=(1, 2)), atol=1e-5)
    r = 4.0
    soft = np.log(np.exp(r * maps[..., 1:]).mean(axis=(1, 2))) / r
    np.testing.assert_allclose(logits[:, 1:], soft, atol=1e-4)
    # A soft maximum: one hot cell moves a defect logit more than the mean would.
    assert (soft >= maps[..., 1:].mean(axis=(1, 2)) - 1e-6).all()


def test_unknown_architecture_single_class_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="known: compact_cnn"):
        build_model("resnet9000", CLASSES, ["ok"], SPEC)
    with pytest.raises(ModelError, match="at least two"):
        build_model("fcn16", ["ok"], ["ok"], SPEC)
    with pytest.raises(ModelError, match="does not exist"):
        build_model("fcn16", CLASSES, ["ok"], SPEC, weights_path=tmp_path / "nope.weights.h5")


def test_a_local_weights_file_initialises_a_fresh_model(tmp_path):
    source = build_model("fcn16", CLASSES, ["ok"], SPEC)
    path = tmp_path / "init.weights.h5"
    source.save_weights(path)
    loaded = build_model("fcn16", CLASSES, ["ok"], SPEC, weights_path=path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), source(x), atol=1e-6)


def test_growing_the_head_keeps_old_class_outputs():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)
    x = np.random.default_rng(1).uniform(0, 255, (8, 64, 32, 3)).astype(np.float32)
    before_logits = np.asarray(logits_model(model)(x))
    before = np.asarray(model(x))
    grown = grow_head(model, CLASSES, [*CLASSES, "crack", "dent"], ["ok"])
    after_logits = np.asarray(logits_model(grown)(x))
    assert after_logits.shape == (8, 5)
    np.testing.assert_allclose(after_logits[:, :3], before_logits, atol=1e-5)
    # New classes start far below: the old classes' probabilities barely move.
    np.testing.assert_allclose(np.asarray(grown(x))[:, :3], before, atol=0.05)
    assert (np.asarray(grown(x)).argmax(axis=1) == before.argmax(axis=1)).all()


def test_shifting_logits_moves_exactly_the_flagged_classes_by_the_offset():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)  # ok mean-pooled, defects log-sum-exp
    x = np.random.default_rng(2).uniform(0, 255, (4, 64, 32, 3)).astype(np.float32)
    before = np.asarray(logits_model(model)(x))
    shift_logits(model, [True, False, True], -0.75)
    after = np.asarray(logits_model(model)(x))
    np.testing.assert_allclose(after - before, np.tile([-0.75, 0.0, -0.75], (4, 1)), atol=1e-5)


def test_shrink_and_perturb_mixes_every_trainable_weight_and_keeps_the_statistics():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)
    x = np.random.default_rng(3).uniform(0, 255, (4, 64, 32, 3)).astype(np.float32)
    model(x, training=True)  # moves the batch norms' statistics off their start
    fresh = build_model("fcn16", CLASSES, ["ok"], SPEC)
    before = {w.path: np.asarray(w).copy() for w in model.weights}
    shrink_and_perturb(model, fresh, shrink=0.4, perturb=0.1)
    theirs = {w.path: np.asarray(w) for w in fresh.weights}
    trainable = {w.path for w in model.trainable_weights}
    assert any("moving_variance" in path for path in before)
    for weight in model.weights:
        expected = before[weight.path]
        if weight.path in trainable:
            expected = 0.4 * expected + 0.1 * theirs[weight.path]
        np.testing.assert_allclose(np.asarray(weight), expected, rtol=1e-6, atol=1e-7)


def test_a_frozen_trunk_keeps_its_first_convolutions_and_their_statistics_through_a_fit():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)
    assert freeze_trunk(model, 2) == ["s1", "s2"]
    kept = {n: [w.copy() for w in model.get_layer(n).get_weights()] for n in ("s1", "s2_bn")}
    trained_before = [w.copy() for w in model.get_layer("s2b").get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(2).uniform(0, 255, (8, 64, 32, 3)).astype(np.float32)
    model.fit(x, np.array([0, 1, 2, 0, 1, 2, 0, 1]), epochs=2, verbose=0)
    for name, weights in kept.items():
        for old, new in zip(weights, model.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(old, new)  # kernels and moving statistics alike
    assert not np.allclose(trained_before[0], model.get_layer("s2b").get_weights()[0])
    # A model saved with frozen layers thaws when fewer are to be frozen.
    assert freeze_trunk(model, 0) == [] and all(layer.trainable for layer in model.layers)


def test_the_class_list_may_only_grow_at_its_end():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)
    with pytest.raises(ModelError, match="grow only at its end"):
        grow_head(model, CLASSES, ["pit", "ok", "scratch", "crack"], ["ok"])


def test_a_saved_model_keeps_its_pooling(tmp_path):
    from inspector.modeling import good_flags, load_keras, save_keras

    model = build_model("fcn16", CLASSES, ["ok"], SPEC, sharpness=7.0)
    save_keras(model, tmp_path / "m.keras")
    loaded = load_keras(tmp_path / "m.keras")
    assert good_flags(loaded) == [True, False, False]
    assert loaded.get_layer("class_pooling").sharpness == 7.0


def test_a_judging_model_averages_the_logits_of_the_flipped_views():
    model = build_model("fcn16", CLASSES, ["ok"], SPEC)
    x = np.random.default_rng(1).uniform(0, 255, (3, 64, 32, 3)).astype(np.float32)
    one = logits_model(model)
    views = [x, x[:, ::-1, ::-1], x[:, :, ::-1], x[:, ::-1]]
    each = [np.asarray(one(np.ascontiguousarray(v))) for v in views]
    for flips in (2, 4):
        averaged = np.asarray(judging_logits(model, flips)(x))
        np.testing.assert_allclose(averaged, np.mean(each[:flips], axis=0), atol=1e-5)
        probabilities = np.asarray(judging_model(model, flips)(x))
        expected = np.exp(averaged) / np.exp(averaged).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    # An untrained model is not flip-invariant, so the average is not one view's logits.
    assert np.abs(np.asarray(judging_logits(model, 4)(x)) - each[0]).max() > 1e-4
    assert judging_model(model, 1) is model
    with pytest.raises(ModelError, match="flips must be 1 to 4"):
        judging_logits(model, 5)


def test_a_version_judges_by_one_view_where_training_drew_no_flips():
    config = train_config.TrainConfig()
    assert config.judging_flips == 4
    unflipped = train_config.TrainConfig(augmentation={"flip": False})
    assert unflipped.judging_flips == 1
    assert train_config.TrainConfig(test_time_flips=2).judging_flips == 2
