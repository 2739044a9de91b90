"""Training batches are a function of the run's seed alone: the augmentation and the
synthetic defects draw counter-based numbers keyed by (seed, batch index, call), so two
passes over the same images give the same batches however the parallel maps interleave."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from inspector import synthetic_defects
from inspector.batch_draws import BatchDraws
from inspector.model_input import Augmentation, InputSpec
from inspector.pipeline_data import training_dataset
from inspector.simulate import LineSimulator, encode


def test_draws_depend_on_seed_batch_and_call_only():
    def draws(seed: int, index: int) -> list[np.ndarray]:
        d = BatchDraws(seed, tf.constant(index, tf.int64))
        return [d.uniform([4]).numpy(), d.uniform([4], 2.0, 3.0).numpy()]

    first, again = draws(1, 5), draws(1, 5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1] - 2.0), "two calls drew the same numbers"
    assert not np.allclose(first[0], draws(1, 6)[0]), "two batches drew the same numbers"
    assert not np.allclose(first[0], draws(2, 5)[0]), "two seeds drew the same numbers"
    assert (first[1] >= 2.0).all() and (first[1] < 3.0).all()


def _stream(paths: list, labels: list[int], seed: int) -> list[np.ndarray]:
    ds = training_dataset(
        paths,
        labels,
        InputSpec(48, 64, 1),
        batch_size=8,
        sampling="balanced",
        augmentation=Augmentation(),
        seed=seed,
    )
    ds = synthetic_defects.with_targets(ds, [True, False], rate=0.5, cell=16, seed=seed)
    return [images.numpy() for images, _ in ds.take(12)]


def test_two_passes_of_the_training_stream_give_the_same_batches(tmp_path):
    paths, labels = [], []
    sim = LineSimulator(size=(64, 48), seed=5, color=False)
    for i, part in enumerate(sim.parts(24)):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encode(part.image, "png"))
        paths.append(path)
        labels.append(1 if i % 3 == 0 else 0)  # which is which does not matter here
    first, again = _stream(paths, labels, 0), _stream(paths, labels, 0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _stream(paths, labels, 1)
    differs = [
        a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, other, strict=True)
    ]
    assert any(differs)
