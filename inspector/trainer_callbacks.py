"""Keras callbacks of a training run: progress for the CLI and console, and a guard that
stops a run whose loss diverges."""

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
