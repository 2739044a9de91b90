"""Random numbers for one training batch that depend only on the run's seed and the
batch's index: the same run gives the same batches, whichever thread of a parallel
``tf.data`` map draws them, and in whatever order.

A ``tf.random.Generator`` shared by a parallel map hands its numbers out in the order
the threads ask for them, which varies from run to run: two runs of the same snapshot,
settings and seed trained on different batches and could end differently (BENCHMARKS.md,
"Synthetic defects teach the small ones": one run of three failed the gate). Here every
draw is a counter-based (stateless) one, keyed by (seed, batch index, call number).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import tensorflow as tf


class Uniform(Protocol):
    """What the augmentation and the synthetic defects draw from (``tf.random.Generator``
    has it too)."""

    def uniform(self, shape: Any, minval: Any = 0.0, maxval: Any = 1.0) -> tf.Tensor:
        """Uniform float32 numbers in [minval, maxval)."""
        ...


class BatchDraws:
    """Stateless uniform draws for the batch with ``index`` of a run seeded ``seed``; the
    n-th call of a traced function always gets the n-th stream."""

    def __init__(self, seed: int, index: tf.Tensor) -> None:
        self._key = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        self._calls = 0

    def uniform(self, shape: Any, minval: Any = 0.0, maxval: Any = 1.0) -> tf.Tensor:
        """Uniform float32 numbers in [minval, maxval)."""
        self._calls += 1
        key = tf.random.experimental.stateless_fold_in(self._key, self._calls)
        return tf.random.stateless_uniform(shape, key, minval, maxval, tf.float32)


def map_batches(
    ds: tf.data.Dataset, seed: int, fn: Callable[[Uniform, Any, Any], Any]
) -> tf.data.Dataset:
    """``ds`` of (x, y) batches → ``fn(draws, x, y)`` per batch, in parallel, where
    ``draws`` is the batch's own :class:`BatchDraws`."""
    return ds.enumerate().map(
        lambda index, batch: fn(BatchDraws(seed, index), batch[0], batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
