"""Architectures and the growing head."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from inspector import training
from inspector.model_input import InputSpec
from inspector.modeling import ARCHITECTURES, ModelError, build_model, grow_head, logits_model


def test_the_training_config_knows_exactly_the_architectures_that_exist():
    assert set(typing.get_args(training.Architecture)) == set(ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_each_architecture_builds_for_gray_and_colour(architecture):
    for channels in (1, 3):
        model = build_model(architecture, 4, InputSpec(48, channels))
        out = model(np.zeros((2, 48, 48, channels), np.float32))
        assert out.shape == (2, 4)


def test_unknown_architecture_single_class_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="known: compact_cnn"):
        build_model("resnet9000", 3, InputSpec(48, 3))
    with pytest.raises(ModelError, match="at least two"):
        build_model("compact_cnn", 1, InputSpec(48, 3))
    with pytest.raises(ModelError, match="does not exist"):
        build_model("compact_cnn", 3, InputSpec(48, 3), weights_path=tmp_path / "nope.weights.h5")


def test_a_local_weights_file_initialises_a_fresh_model(tmp_path):
    source = build_model("compact_cnn", 3, InputSpec(48, 3))
    path = tmp_path / "init.weights.h5"
    source.save_weights(path)
    loaded = build_model("compact_cnn", 3, InputSpec(48, 3), weights_path=path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), source(x), atol=1e-6)


def test_growing_the_head_keeps_old_class_outputs():
    model = build_model("compact_cnn", 3, InputSpec(48, 3))
    x = np.random.default_rng(1).uniform(0, 255, (8, 48, 48, 3)).astype(np.float32)
    before_logits = np.asarray(logits_model(model)(x))
    before = np.asarray(model(x))
    grown = grow_head(model, ["ok", "pit", "scratch"], ["ok", "pit", "scratch", "crack", "dent"])
    after_logits = np.asarray(logits_model(grown)(x))
    assert after_logits.shape == (8, 5)
    np.testing.assert_allclose(after_logits[:, :3], before_logits, atol=1e-6)
    # New classes start far below: the old classes' probabilities barely move.
    np.testing.assert_allclose(np.asarray(grown(x))[:, :3], before, atol=0.05)
    assert (np.asarray(grown(x)).argmax(axis=1) == before.argmax(axis=1)).all()


def test_the_class_list_may_only_grow_at_its_end():
    model = build_model("compact_cnn", 3, InputSpec(48, 3))
    with pytest.raises(ModelError, match="grow only at its end"):
        grow_head(model, ["ok", "pit", "scratch"], ["pit", "ok", "scratch", "crack"])
