"""Keras callbacks of a training run: progress for the CLI and console, a guard that
stops a run whose loss diverges, and early stopping that says which weights it kept."""

from __future__ import annotations

import logging
import time
from typing import Any

import keras

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
