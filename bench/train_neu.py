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
from bench.neu_measures import dir_bytes, epoch_log, macro_f1, serving_speed

SCHEDULES = ("plateau", "cosine", "constant")
# What the product trains on NEU first (TrainConfig: fcn16; the pixel budget gives 192 px
# for 200×200 images, one channel for grey ones), then the earlier default.
DEFAULT_CANDIDATES = (
    "fcn16:192:1",
    "compact_cnn:128:1",
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


def train_candidate(
    cand: Candidate, classes: list[str], images: list[common.Image], args: argparse.Namespace
) -> dict[str, Any]:
    """Train, export and measure one candidate; its result row."""
    import keras

    from inspector.model_input import InputSpec
    from inspector.modeling import build_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(args.seed)
    spec = InputSpec.square(cand.size, cand.channels)
    by_split = {s: [i for i in images if i.split == s] for s in ("train", "validation", "heldout")}
    model = build_model(cand.architecture, classes, [], spec)  # NEU: every class a defect
    fitted = _fit(model, by_split, spec, args)
    heldout = by_split["heldout"]
    truth = np.array([i.label for i in heldout])
    keras_pred = np.argmax(
        model.predict(_dataset(heldout, spec, args, training=False), verbose=0), axis=1
    )
    served = _serve(model, classes, spec, heldout, args)
    f1, confusion = macro_f1(truth, served.predicted, len(classes))
    log, history = fitted.log, fitted.history
    val_losses = history["val_loss"]
    best_epoch = int(np.argmin(val_losses)) + 1
    return {
        "candidate": str(cand),
        **asdict(cand),
        "params": model.count_params(),
        "saved_model_mb": round(served.saved_bytes / 2**20, 2),
        "heldout_accuracy": round(float((served.predicted == truth).mean()), 4),
        "heldout_macro_f1": round(f1, 4),
        "heldout_errors": int((served.predicted != truth).sum()),
        "keras_serving_agreement": round(float((keras_pred == served.predicted).mean()), 4),
        "confusion": confusion,
        "train_s": round(fitted.train_s, 1),
        "epochs_run": len(val_losses),
        "best_epoch": best_epoch,
        "stopped_by_budget": log.stopped_by_budget,
        "paused_for_other_benchmarks_s": round(log.paused_s + served.paused_s, 1),
        "training_cores_own": fitted.cores["own"],
        "training_cores_others": fitted.cores["others"],
        "epoch_s_median": round(statistics.median(log.epoch_s), 2),
        "first_epoch_s": round(log.epoch_s[0], 2),
        "train_images_per_s": round(
            len(by_split["train"]) / statistics.median(log.epoch_s[1:] or log.epoch_s), 1
        ),
        "best_val_loss": round(float(min(val_losses)), 4),
        "best_val_accuracy": round(float(history["val_accuracy"][best_epoch - 1]), 4),
        "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.items()},
        **served.latency,
    }


@dataclass
class _Fitted:
    """What training one candidate left to measure."""

    history: dict[str, list[float]]
    log: Any  # the epoch log (neu_measures.epoch_log)
    train_s: float
    cores: dict[str, float]


@dataclass
class _Served:
    """The exported candidate's held-out predictions and serving measurements."""

    predicted: np.ndarray
    latency: dict[str, float]
    saved_bytes: int
    paused_s: float


def _dataset(
    part: list[common.Image], spec: Any, args: argparse.Namespace, *, training: bool
) -> Any:
    """The product's tf.data pipeline on the JPEG files (they play the local cache)."""
    from inspector.pipeline_data import make_dataset

    return make_dataset(
        [i.path for i in part],
        [i.label for i in part],
        spec,
        batch_size=args.batch_size,
        training=training,
        augmentation=augmentation_of(args) if training else None,
        seed=args.seed,
    )


def _fit(
    model: Any,
    by_split: dict[str, list[common.Image]],
    spec: Any,
    args: argparse.Namespace,
) -> _Fitted:
    """Adam, the schedule of ``--schedule``, early stopping and the time budget."""
    import keras

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
    started, window = time.perf_counter(), common.CpuWindow()
    history = model.fit(
        _dataset(by_split["train"], spec, args, training=True),
        validation_data=_dataset(by_split["validation"], spec, args, training=False),
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=0,
    )
    train_s = time.perf_counter() - started - log.paused_s
    return _Fitted(history.history, log, train_s, window.cores())


def _serve(
    model: Any, classes: list[str], spec: Any, heldout: list[common.Image], args: argparse.Namespace
) -> _Served:
    """Export the SavedModel and judge the held-out images through ``serving_default`` on
    their encoded bytes; its size and speed."""
    from inspector.export import ServingModel, export_saved_model

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
        paused = 0.0 if args.no_wait else common.wait_for_quiet_machine()
        latency = serving_speed(serving, encoded, args.latency_runs)
        return _Served(np.argmax(probs, axis=1), latency, dir_bytes(export_dir), paused)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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
    waited, waited_idle = common.wait_before_measuring(args)
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
    print(f"results: {common.shown(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
