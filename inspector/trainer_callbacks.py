"""Keras callbacks of a training run: progress for the CLI and console, a guard that
stops a run whose loss diverges, the weights a run keeps (early stopping that says which
epoch it kept, or the average of the last epochs' weights), and a time budget that ends
the fit in time (with the cosine schedule it can shorten)."""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import numpy as np

from inspector.training import Progress, eta_seconds, finite

log = logging.getLogger("inspector.trainer")


class ProgressCallback(keras.callbacks.Callback):
    """Reports epoch, batch, loss and ETA at most a few times a second."""

    def __init__(self, progress: Progress, epochs: int, steps: int, interval: float = 0.5) -> None:
        super().__init__()
        self.progress, self.epochs, self.steps, self.interval = progress, epochs, steps, interval
        self.epoch = 0
        self.started = time.monotonic()
        self.last = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now - self.last < self.interval and batch + 1 < self.steps:
            return
        self.last = now
        done = self.epoch * self.steps + batch + 1
        self.progress(
            {
                "phase": "training",
                "epoch": self.epoch + 1,
                "epochs": self.epochs,
                "batch": batch + 1,
                "batches": self.steps,
                "loss": float((logs or {}).get("loss", float("nan"))),
                "eta_seconds": eta_seconds(now - self.started, done, self.epochs * self.steps),
            }
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {k: round(float(v), 5) for k, v in (logs or {}).items()}
        log.info("epoch %d/%d: %s", epoch + 1, self.epochs, values)
        elapsed = time.monotonic() - self.started
        done = (epoch + 1) * self.steps
        self.progress(
            {
                "phase": "training",
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "batch": self.steps,
                "batches": self.steps,
                "loss": values.get("loss", float("nan")),
                "eta_seconds": eta_seconds(elapsed, done, self.epochs * self.steps),
                "epoch_logs": values,
            }
        )


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the loss is NaN/inf or has grown ``factor`` times its start."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor
        self.first: float | None = None
        self.reason: str | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if self.first is None and finite(loss):
            self.first = max(loss, 1e-3)
        if not finite(loss):
            self.reason = f"the training loss became {loss} at batch {batch + 1}"
        elif self.first is not None and loss > self.factor * self.first:
            self.reason = f"the training loss grew from {self.first:.3g} to {loss:.3g}: diverged"
        if self.reason:
            self.model.stop_training = True


class EarlyStop(keras.callbacks.EarlyStopping):
    """Early stopping on the validation loss that says which weights the run keeps.

    ``keep="best_epoch"``: the weights of the epoch with the lowest monitored loss (from
    ``start_from_epoch`` on), whether or not the run stopped early. ``keep="last"``: the
    last epoch's weights when the run went its whole schedule (the cosine decay ends
    there, at 1 % of the learning rate), the best epoch's only when it stopped early.
    """

    def __init__(self, keep: str, **kwargs: Any) -> None:
        super().__init__(restore_best_weights=True, **kwargs)
        self.keep = keep

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.keep == "last" and not self.stopped_epoch:
            self.best_weights = None
            log.info("kept the last epoch's weights (the run went its whole schedule)")
            return
        if self.best_weights is not None:
            log.info(
                "kept the weights of epoch %d, the lowest %s (%.5f)%s",
                self.best_epoch + 1,
                self.monitor,
                self.best,
                f"; stopped early after epoch {self.stopped_epoch + 1}"
                if self.stopped_epoch
                else "",
            )
        super().on_train_end(logs)


class AverageWeights(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al., "Averaging weights leads to wider
    optima and better generalization", UAI 2018): the mean of the trainable weights at the
    end of every epoch after ``share`` of the planned epochs (a :class:`TimeBudget` may
    shorten the plan) replaces the last weights when the fit ends. The batch-norm
    statistics, which the last weights left, are then re-estimated on ``batches`` batches
    of ``data`` in training mode (nothing is learnt from them). ``epochs`` says which
    epochs were averaged (1-based, first and last); with fewer than two, the last weights
    stay."""

    def __init__(
        self,
        share: float,
        data: Any,
        epochs: int,
        budget: TimeBudget | None = None,
        batches: int = 40,
    ) -> None:
        super().__init__()
        self.share, self.data, self.planned, self.budget = share, data, epochs, budget
        self.batches = batches
        self.sums: list[np.ndarray] = []
        self.epochs: tuple[int, int] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        planned = self.budget.epochs if self.budget is not None else self.planned
        if self.epochs is None and epoch + 1 <= int(self.share * planned):
            return  # not yet; once begun, every epoch counts (the plan may grow meanwhile)
        weights = [w.numpy() for w in self.model.trainable_weights]
        self.sums = (
            [a + b for a, b in zip(self.sums, weights, strict=True)] if self.sums else weights
        )
        self.epochs = (self.epochs[0] if self.epochs else epoch + 1, epoch + 1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.epochs is None or self.epochs[1] == self.epochs[0]:
            self.epochs = None
            log.info("kept the last epoch's weights (too few epochs to average)")
            return
        count = self.epochs[1] - self.epochs[0] + 1
        for variable, total in zip(self.model.trainable_weights, self.sums, strict=True):
            variable.assign(total / count)
        _reestimate_batch_norms(self.model, self.data.take(self.batches))
        log.info(
            "kept the mean of the weights of epochs %d-%d (batch-norm statistics "
            "re-estimated on %d batches)",
            *self.epochs,
            self.batches,
        )


def _batch_norms(layer: Any) -> list[keras.layers.BatchNormalization]:
    """Every trainable batch norm in ``layer``, nested models included."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [layer] if layer.trainable else []
    return [bn for child in getattr(layer, "layers", []) for bn in _batch_norms(child)]


def _reestimate_batch_norms(model: keras.Model, batches: Any) -> None:
    """Set every batch norm's moving statistics to the mean of its statistics over
    ``batches`` ((images, targets) pairs) in training mode: batch k (from 0) enters the
    moving average with momentum k / (k + 1), so none of the old statistics remain."""
    norms = _batch_norms(model)
    kept = [bn.momentum for bn in norms]
    try:
        for k, (images, _) in enumerate(batches):
            for bn in norms:
                bn.momentum = k / (k + 1)
            model(images, training=True)
    finally:
        for bn, momentum in zip(norms, kept, strict=True):
            bn.momentum = momentum


@keras.saving.register_keras_serializable(package="inspector")
class ShortenableCosine(keras.optimizers.schedules.CosineDecay):
    """Keras' cosine decay with warm-up, whose ``decay_steps`` a :class:`TimeBudget` may
    cut while training runs (a variable the traced train step reads, not a constant).
    Uncut, it computes what ``CosineDecay`` computes, to the bit."""

    @property
    def decay_steps(self) -> keras.Variable:
        return self._decay_steps

    @decay_steps.setter
    def decay_steps(self, steps: Any) -> None:
        self._decay_steps = keras.Variable(
            float(steps), dtype="float32", trainable=False, name="decay_steps"
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "decay_steps": int(self._decay_steps.numpy())}


class TimeBudget(keras.callbacks.Callback):
    """Ends the fit in time for ``deadline`` (``time.monotonic()``): from the second
    epoch on (the first one also traces the step), it projects the remaining epochs at the
    median epoch's wall time so far and plans as many as fit, never more than the fit's
    own: fewer where they would overrun (the cosine schedule's end moves with them, so the
    learning rate still decays), and more again, up to the fit's own, where the pace
    recovers with an epoch to spare (a slow epoch or two while something else shared the
    cores does not cut the run for good). It stops after the last planned epoch.
    ``shortened`` says what it did."""

    def __init__(
        self,
        deadline: float,
        epochs: int,
        steps_per_epoch: int,
        *,
        schedule: ShortenableCosine | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__()
        self.deadline, self.epochs, self.steps_per_epoch = deadline, epochs, steps_per_epoch
        self.schedule, self.progress = schedule, progress
        self.planned = epochs
        self.epoch_seconds: list[float] = []
        self.shortened: dict[str, Any] | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        self.epoch_seconds.append(now - self._epoch_started)
        if epoch >= 1:
            pace = sorted(self.epoch_seconds[1:])[(len(self.epoch_seconds) - 2) // 2]
            affordable = epoch + 1 + int(max(0.0, self.deadline - now) // max(pace, 1e-9))
            if affordable < self.epochs:
                self._replan(max(affordable, epoch + 1), pace)
            elif self.epochs < self.planned and affordable - 1 > self.epochs:  # a spare epoch
                self._replan(min(affordable - 1, self.planned), pace)
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True

    def _replan(self, epochs: int, pace: float) -> None:
        longer = epochs > self.epochs
        self.epochs = epochs
        if self.schedule is not None:
            # The decay ends where the plan now ends (it started at the plan's steps).
            self.schedule.decay_steps.assign(float(epochs * self.steps_per_epoch))
        if self.progress is not None:
            self.progress.epochs = epochs
        self.shortened = (
            {"planned_epochs": self.planned, "epochs": epochs, "epoch_seconds": round(pace, 1)}
            if epochs < self.planned
            else None
        )
        log.warning(
            "the run's time budget allows %d of its %d epochs (%.1f s an epoch here): "
            "training %s, with the learning rate's decay ending there",
            epochs,
            self.planned,
            pace,
            "more again, as the pace recovered" if longer else "fewer",
        )
