"""Which weights a run keeps: EarlyStop through a real (tiny) Keras fit, with the
monitored value scripted epoch by epoch so the best epoch is known; AverageWeights, the
mean of the last epochs' weights and its batch-norm statistics; the time budget."""

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


# --- averaged weights -----------------------------------------------------------------


def _averaged_fit(epochs: int, share: float):
    """A tiny fit with a batch norm, its weights averaged by AverageWeights. Returns the
    trainable weights after each epoch, the model, the callback and the inputs."""
    import keras
    import tensorflow as tf

    from inspector.trainer_callbacks import AverageWeights

    seen: list = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([w.numpy().copy() for w in self.model.trainable_weights])

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.BatchNormalization(momentum=0.99),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(64, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, x.sum(axis=1))).batch(16)
    average = AverageWeights(share, data, epochs, batches=4)
    model.fit(data, epochs=epochs, verbose=0, callbacks=[Record(), average])
    return seen, model, average, x


def test_the_kept_weights_are_the_mean_of_the_last_epochs():
    seen, model, average, _ = _averaged_fit(6, 0.5)
    assert average.epochs == (4, 6)
    for kept, *epochs in zip(model.trainable_weights, *seen[3:], strict=True):
        np.testing.assert_allclose(kept.numpy(), np.mean(epochs, axis=0), rtol=1e-5)
    assert not np.allclose(model.trainable_weights[0].numpy(), seen[-1][0])


def test_batch_norm_statistics_are_those_of_the_averaged_weights():
    _, model, _, x = _averaged_fit(6, 0.5)
    dense, norm = model.layers[0], model.layers[1]
    # Four batches of 16 in training mode: the moving mean is the mean of their means,
    # whatever the layer's momentum (0.99 would have kept most of the old statistics).
    expected = np.mean([dense(x[i : i + 16]).numpy().mean(axis=0) for i in range(0, 64, 16)], 0)
    np.testing.assert_allclose(norm.moving_mean.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.99


def test_too_few_epochs_to_average_keep_the_last_weights():
    seen, model, average, _ = _averaged_fit(3, 0.9)
    assert average.epochs is None
    for kept, last in zip(model.trainable_weights, seen[-1], strict=True):
        np.testing.assert_array_equal(kept.numpy(), last)


# --- the time budget ------------------------------------------------------------------


def _budget_fit(epochs: int, deadline: float | None, pause=0.0):
    """A tiny fit on the shortenable cosine schedule, optionally under a TimeBudget and
    with ``pause`` seconds of sleep in every epoch (or ``pause(epoch)`` seconds). Returns
    (history, weights, budget, schedule)."""
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
            time.sleep(pause(epoch) if callable(pause) else pause)

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


def test_a_slow_epoch_cuts_the_plan_only_until_the_pace_recovers(caplog):
    import logging
    import time

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="inspector.trainer"):
        # Epoch 2 takes 2 s (something else had the cores), the others a few ms: at its end
        # 8 epochs of 2 s cannot fit in what is left of 10 s, later the pace allows them all.
        losses, _, budget, schedule = _budget_fit(
            8, started + 10.0, pause=lambda epoch: 2.0 if epoch == 1 else 0.0
        )
    assert "training fewer" in caplog.text and "training more again" in caplog.text
    assert len(losses) == 8 and budget.shortened is None
    assert float(schedule.decay_steps.numpy()) == 8 * 4
