"""Choose the default architecture on real data: train each candidate on NEU steel-surface
defects (6 classes × 300, /work/shared/datasets/neu) exactly as the product would, and
measure held-out accuracy against the CPU cost of training and of serving.

- Split: the product's — ``split_of(sha256(file bytes), SplitPolicy(heldout=0.2,
  validation=0.1))``.
- Input: ``make_dataset`` on the JPEG files (they play the local cache), training with
  the product's ``Augmentation``; validation and held-out without.
- Model: ``build_model``; Adam + sparse categorical cross-entropy; early stopping on
  validation loss (best weights restored); the learning-rate schedule of ``--schedule``;
  a per-candidate training budget (``--budget-minutes``) that stops training when spent.
- Held-out accuracy and macro-F1 are measured through the exported SavedModel's
  ``serving_default`` signature on the encoded bytes (and checked against Keras'
  predictions), as are latency at batch 1 and throughput at batch 32.

The first candidate is the baseline: every speed is also printed as a ratio to it.

    .venv/bin/python bench/train_neu.py
    .venv/bin/python bench/train_neu.py --candidates compact_cnn:128:1 --epochs 3   # smoke
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench import common

SCHEDULES = ("plateau", "cosine", "constant")
# The product's default first (TrainConfig: compact_cnn, 128 px, 3 channels).
DEFAULT_CANDIDATES = (
    "compact_cnn:128:3",
    "compact_cnn:128:1",
    "mobilenet_v3_small:128:3",
)


@dataclass(frozen=True)
class Candidate:
    """An architecture at an input size and channel count."""

    architecture: str
    size: int
    channels: int

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """``architecture:size:channels``, e.g. ``compact_cnn:128:1``."""
        try:
            arch, size, channels = text.split(":")
            return cls(arch, int(size), int(channels))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not architecture:size:channels"
            ) from None

    def __str__(self) -> str:
        return f"{self.architecture} {self.size}x{self.size}x{self.channels}"


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


def augmentation_of(args: argparse.Namespace) -> Any:
    """The product's ``Augmentation()`` with the command line's overrides."""
    from inspector.model_input import Augmentation

    return Augmentation(
        flip=not args.no_flip,
        rotation=args.rotation,
        shift=args.shift,
        brightness=args.brightness,
        contrast=args.contrast,
    )


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def train_candidate(
    cand: Candidate, classes: list[str], images: list[common.Image], args: argparse.Namespace
) -> dict[str, Any]:
    """Train, export and measure one candidate; its result row."""
    import keras
    import tensorflow as tf

    from inspector.export import ServingModel, export_saved_model
    from inspector.model_input import InputSpec
    from inspector.modeling import build_model
    from inspector.pipeline_data import class_weights, make_dataset

    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    spec = InputSpec(cand.size, cand.channels)
    by_split = {s: [i for i in images if i.split == s] for s in ("train", "validation", "heldout")}
    augmentation = augmentation_of(args)

    def dataset(split: str, training: bool) -> tf.data.Dataset:
        part = by_split[split]
        return make_dataset(
            [i.path for i in part],
            [i.label for i in part],
            spec,
            batch_size=args.batch_size,
            training=training,
            augmentation=augmentation if training else None,
            seed=args.seed,
        )

    train_ds, val_ds, heldout_ds = (
        dataset("train", True),
        dataset("validation", False),
        dataset("heldout", False),
    )
    model = build_model(cand.architecture, len(classes), spec)
    steps = -(-len(by_split["train"]) // args.batch_size)
    lr: Any = args.lr
    if args.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0, steps * args.epochs, warmup_target=args.lr, warmup_steps=steps * 2, alpha=0.01
        )
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    log = epoch_log(args.budget_minutes * 60, cooperative=not args.no_wait)
    callbacks: list[keras.callbacks.Callback] = [
        log,
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=args.patience,
            restore_best_weights=True,
            start_from_epoch=args.early_stopping_from,
            verbose=0,
        ),
    ]
    if args.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.3, patience=args.plateau_patience, min_lr=args.lr / 100
            )
        )
    weights = class_weights([i.label for i in by_split["train"]], len(classes))
    started, window = time.perf_counter(), common.CpuWindow()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args.epochs,
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
    )
    train_s = time.perf_counter() - started - log.paused_s
    cores = window.cores()
    val_losses = history.history["val_loss"]
    best_epoch = int(np.argmin(val_losses)) + 1

    heldout = by_split["heldout"]
    truth = np.array([i.label for i in heldout])
    keras_pred = np.argmax(model.predict(heldout_ds, verbose=0), axis=1)

    workdir = Path(tempfile.mkdtemp(prefix="neu-bench-"))
    try:
        export_dir = workdir / "saved_model"
        export_saved_model(model, classes, spec, export_dir, threshold=None)
        serving = ServingModel(export_dir)
        encoded = [i.path.read_bytes() for i in heldout]
        probs = np.concatenate(
            [
                serving.predict_bytes(encoded[k : k + 32])["probabilities"]
                for k in range(0, len(encoded), 32)
            ]
        )
        served_pred = np.argmax(probs, axis=1)
        paused = 0.0 if args.no_wait else common.wait_for_quiet_machine()
        latency = serving_speed(serving, encoded, args.latency_runs)
        saved_bytes = dir_bytes(export_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    f1, confusion = macro_f1(truth, served_pred, len(classes))
    return {
        "candidate": str(cand),
        **asdict(cand),
        "params": model.count_params(),
        "saved_model_mb": round(saved_bytes / 2**20, 2),
        "heldout_accuracy": round(float((served_pred == truth).mean()), 4),
        "heldout_macro_f1": round(f1, 4),
        "heldout_errors": int((served_pred != truth).sum()),
        "keras_serving_agreement": round(float((keras_pred == served_pred).mean()), 4),
        "confusion": confusion,
        "train_s": round(train_s, 1),
        "epochs_run": len(val_losses),
        "best_epoch": best_epoch,
        "stopped_by_budget": log.stopped_by_budget,
        "paused_for_other_benchmarks_s": round(log.paused_s + paused, 1),
        "training_cores_own": cores["own"],
        "training_cores_others": cores["others"],
        "epoch_s_median": round(statistics.median(log.epoch_s), 2),
        "first_epoch_s": round(log.epoch_s[0], 2),
        "train_images_per_s": round(
            len(by_split["train"]) / statistics.median(log.epoch_s[1:] or log.epoch_s), 1
        ),
        "best_val_loss": round(float(min(val_losses)), 4),
        "best_val_accuracy": round(float(history.history["val_accuracy"][best_epoch - 1]), 4),
        "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.history.items()},
        **latency,
    }


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


COLUMNS = [
    ("candidate", "candidate"),
    ("params", "params"),
    ("saved_model_mb", "MB"),
    ("heldout_accuracy", "held-out acc"),
    ("heldout_macro_f1", "macro-F1"),
    ("heldout_errors", "errors"),
    ("epochs_run", "epochs"),
    ("best_epoch", "best"),
    ("train_s", "train s"),
    ("train_x", "train × base"),
    ("train_images_per_s", "train img/s"),
    ("latency_b1_ms_median", "b1 ms"),
    ("latency_x", "b1 × base"),
    ("throughput_b32_images_per_s", "b32 img/s"),
    ("training_cores_others", "others' cores"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    from inspector.model_input import Augmentation  # plain settings, no TensorFlow

    product = Augmentation()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=common.NEU_DEFAULT, help="the NEU folder (one folder a class)"
    )
    parser.add_argument(
        "--candidates",
        type=Candidate.parse,
        nargs="+",
        default=[Candidate.parse(c) for c in DEFAULT_CANDIDATES],
        help="architecture:size:channels, the first is the baseline",
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="maximum epochs (cosine: its length)"
    )
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    parser.add_argument(
        "--early-stopping-from", type=int, default=3, help="first epoch early stopping watches"
    )
    parser.add_argument(
        "--budget-minutes", type=float, default=20.0, help="training wall-time cap a candidate"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (Adam)")
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="cosine",
        help="cosine: 2 epochs of linear warm-up to --lr, then cosine decay to 1%% of it at "
        "--epochs; plateau: --lr, cut by 0.3 when val_loss stalls; constant: --lr",
    )
    parser.add_argument(
        "--plateau-patience", type=int, default=4, help="epochs before ReduceLROnPlateau cuts"
    )
    aug = parser.add_argument_group("augmentation (defaults: the product's Augmentation())")
    aug.add_argument("--no-flip", action="store_true", help="no random flips")
    aug.add_argument("--rotation", type=float, default=product.rotation, help="fraction of a turn")
    aug.add_argument("--shift", type=float, default=product.shift, help="fraction of the side")
    aug.add_argument("--brightness", type=float, default=product.brightness, help="of 0-255")
    aug.add_argument("--contrast", type=float, default=product.contrast, help="factor range")
    parser.add_argument("--latency-runs", type=int, default=100, help="batch-1 calls timed")
    parser.add_argument("--seed", type=int, default=0)
    common.add_wait_options(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every candidate, print the table, write the JSON."""
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    classes, images = common.load_neu(args.data.resolve())
    counts = common.split_counts(classes, images)
    print(f"NEU at {args.data.resolve()}: {len(images)} images, {len(classes)} classes\n")
    print(common.counts_table(counts) + "\n")
    waited = 0.0 if args.no_wait else common.wait_for_quiet_machine()
    waited_idle = common.wait_for_idle(args.idle_timeout) if args.idle_timeout > 0 else 0.0
    started = common.utc_now()
    info = common.machine()
    print(f"machine: {common.describe(info)}\n")

    rows = []
    for cand in args.candidates:
        print(f"== {cand}", flush=True)
        row = train_candidate(cand, classes, images, args)
        row["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        rows.append(row)
        print(
            f"   held-out accuracy {row['heldout_accuracy']:.4f}, "
            f"macro-F1 {row['heldout_macro_f1']:.4f}, "
            f"{row['epochs_run']} epochs (best {row['best_epoch']}) in {row['train_s']:.0f} s, "
            f"batch-1 {row['latency_b1_ms_median']} ms, load {row['loadavg_after']}\n",
            flush=True,
        )
    base = rows[0]
    for row in rows:
        row["train_x"] = f"{row['train_s'] / base['train_s']:.2f}"
        row["latency_x"] = f"{row['latency_b1_ms_median'] / base['latency_b1_ms_median']:.2f}"

    print(common.table(rows, COLUMNS))
    print(f"\nratios (× base) are against {base['candidate']}, measured in this run")
    info_end = common.machine()
    result = {
        "benchmark": "train_neu",
        "started": started,
        "finished": common.utc_now(),
        "waited_for_other_benchmarks_s": round(waited, 1),
        "waited_for_idle_machine_s": round(waited_idle, 1),
        "machine": info,
        "loadavg_at_end": info_end["loadavg"],
        "data": str(args.data.resolve()),
        "split_counts": counts,
        "classes": classes,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "candidates"
        },
        "augmentation": asdict(augmentation_of(args)),
        "candidates": [str(c) for c in args.candidates],
        "results": rows,
    }
    out = common.save_results("train_neu", result)
    print(f"results: {out.relative_to(common.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
