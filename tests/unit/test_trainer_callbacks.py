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


# --- the time budget ------------------------------------------------------------------


def _budget_fit(epochs: int, deadline: float | None, pause: float = 0.0):
    """A tiny fit on the shortenable cosine schedule, optionally under a TimeBudget and
    with ``pause`` seconds of sleep in every epoch. Returns (history, weights, budget,
    schedule)."""
    import time

    import keras

    from inspector.trainer_callbacks import ShortenableCosine, TimeBudget

    keras.utils.set_random_seed(0)
    steps = 4
    schedule = ShortenableCosine(
        0.0, epochs * steps, warmup_target=0.05, warmup_steps=steps, alpha=0.01
    )
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")

    class Pause(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(pause)

    callbacks: list = [Pause()]
    budget = None
    if deadline is not None:
        budget = TimeBudget(deadline, epochs, steps, schedule=schedule)
        callbacks.append(budget)
    history = model.fit(
        x, x.sum(axis=1), batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks
    )
    return history.history["loss"], model.get_weights(), budget, schedule


def test_the_shortenable_cosine_is_keras_cosine_to_the_bit_until_it_is_cut():
    import keras

    from inspector.trainer_callbacks import ShortenableCosine

    kwargs = {"warmup_target": 2e-3, "warmup_steps": 68, "alpha": 0.01}
    ours = ShortenableCosine(0.0, 1020, **kwargs)
    theirs = keras.optimizers.schedules.CosineDecay(0.0, 1020, **kwargs)
    for step in (0, 1, 67, 68, 69, 500, 1019, 1087, 1088, 5000):
        assert float(ours(step)) == float(theirs(step)), step
    ours.decay_steps.assign(500.0)
    assert float(ours(68 + 500)) == pytest.approx(2e-3 * 0.01)
    assert float(ours(68 + 250)) < float(theirs(68 + 250))
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(ours))
    assert isinstance(again, ShortenableCosine) and float(again(300)) == float(ours(300))


def test_a_deadline_far_off_changes_nothing():
    import time

    free, free_weights, _, _ = _budget_fit(5, None)
    timed, timed_weights, budget, schedule = _budget_fit(5, time.monotonic() + 1e6)
    assert len(timed) == 5 and budget.shortened is None
    assert float(schedule.decay_steps.numpy()) == 20.0
    assert timed == free and _same(timed_weights, free_weights)


def test_a_deadline_already_passed_ends_the_fit_after_its_second_epoch():
    import time

    losses, _, budget, schedule = _budget_fit(10, time.monotonic())
    assert len(losses) == 2
    assert budget.shortened["planned_epochs"] == 10 and budget.shortened["epochs"] == 2
    # The decay now ends where the fit ended.
    assert float(schedule.decay_steps.numpy()) == 2 * 4


def test_epochs_too_slow_for_the_deadline_are_fewer_epochs_not_a_late_run():
    import time

    started = time.monotonic()
    losses, _, budget, schedule = _budget_fit(20, started + 1.5, pause=0.25)
    # Every epoch takes at least 0.25 s, so 20 cannot fit in 1.5 s; two always run.
    assert 2 <= len(losses) < 20
    assert budget.shortened["epochs"] == len(losses)
    assert float(schedule.decay_steps.numpy()) == len(losses) * 4
