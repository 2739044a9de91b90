"""What bench/train_neu.py measures beside the training itself: macro-F1 and the
confusion matrix, a SavedModel's size and its serving speed, and the per-epoch log that
stops a candidate when its time budget is spent.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import common


def macro_f1(
    labels: np.ndarray, predicted: np.ndarray, num_classes: int
) -> tuple[float, list[list[int]]]:
    """Macro-averaged F1 and the confusion matrix (rows: true class)."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(tp),
        where=precision + recall > 0,
    )
    return float(f1.mean()), confusion.tolist()


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def epoch_log(budget_s: float, cooperative: bool) -> Any:
    """A Keras callback: epoch wall times, a line per epoch, and a stop when the training
    time budget is spent (built here so that ``--help`` does not import TensorFlow)."""
    import keras

    class _EpochLog(keras.callbacks.Callback):
        def __init__(self, budget_s: float) -> None:
            super().__init__()
            self.budget_s = budget_s
            self.epoch_s: list[float] = []
            self.stopped_by_budget = False
            self.paused_s = 0.0  # waiting for another benchmark: not training time

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch_s.append(time.perf_counter() - self._epoch_start)
            logs = logs or {}
            lr = self.model.optimizer.learning_rate
            print(
                f"    epoch {epoch + 1:3d}  {self.epoch_s[-1]:6.1f} s  "
                f"loss {logs.get('loss', 0):.4f}  acc {logs.get('accuracy', 0):.4f}  "
                f"val_loss {logs.get('val_loss', 0):.4f}  "
                f"val_acc {logs.get('val_accuracy', 0):.4f}  lr {float(np.asarray(lr)):.2e}",
                flush=True,
            )
            if time.perf_counter() - self._start - self.paused_s > self.budget_s:
                self.stopped_by_budget = True
                self.model.stop_training = True
            if cooperative:
                self.paused_s += common.wait_for_quiet_machine()

    return _EpochLog(budget_s)


def serving_speed(serving: Any, encoded: list[bytes], runs: int) -> dict[str, float]:
    """Latency per image at batch 1 and throughput at batch 32 through ``serving_default``."""
    for k in range(3):
        serving.predict_bytes([encoded[k]])
    serving.predict_bytes(encoded[:32])
    single = []
    for k in range(runs):
        image = encoded[k % len(encoded)]
        t = time.perf_counter()
        serving.predict_bytes([image])
        single.append(time.perf_counter() - t)
    batches = [encoded[k : k + 32] for k in range(0, len(encoded) - 31, 32)]
    rounds = max(1, runs // 10)
    t = time.perf_counter()
    for _ in range(rounds):
        for batch in batches:
            serving.predict_bytes(batch)
    batch_s = time.perf_counter() - t
    return {
        "latency_b1_ms_median": round(1000 * statistics.median(single), 2),
        "latency_b1_ms_p90": round(1000 * float(np.percentile(single, 90)), 2),
        "throughput_b32_images_per_s": round(rounds * 32 * len(batches) / batch_s, 1),
    }
