"""Which weights a run keeps: EarlyStop through a real (tiny) Keras fit, with the
monitored value scripted epoch by epoch so the best epoch is known."""

from __future__ import annotations

import numpy as np
import pytest


def _fit(keep: str, scores: list[float], patience: int) -> tuple[list, list, object]:
    """Fit a one-layer model for len(scores) epochs; epoch i reports ``scores[i]`` as
    "score". Returns the weights after each epoch, the weights kept, and the callback."""
    import keras

    from inspector.trainer_callbacks import EarlyStop

    seen: list = []

    class Script(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score"] = scores[epoch]
            seen.append([w.copy() for w in self.model.get_weights()])

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    stop = EarlyStop(keep, monitor="score", mode="min", patience=patience, start_from_epoch=0)
    model.fit(x, x.sum(axis=1), epochs=len(scores), verbose=0, callbacks=[Script(), stop])
    return seen, model.get_weights(), stop


def _same(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("keep", "expected"),
    [("best_epoch", 1), ("last", 3)],
)
def test_a_run_that_goes_its_whole_schedule_keeps_what_it_is_told(keep, expected):
    seen, kept, stop = _fit(keep, [3.0, 1.0, 2.0, 2.5], patience=10)
    assert not stop.stopped_epoch
    assert _same(kept, seen[expected])
    assert not _same(seen[1], seen[3])


@pytest.mark.parametrize("keep", ["best_epoch", "last"])
def test_a_run_that_stops_early_keeps_its_best_epoch_either_way(keep):
    seen, kept, stop = _fit(keep, [3.0, 1.0, 2.0, 2.5, 2.6, 2.7], patience=2)
    assert stop.stopped_epoch == 3 and len(seen) == 4
    assert _same(kept, seen[1]) and stop.best_epoch == 1
