"""Input pipeline benchmark: the product's ``make_dataset`` against its ceiling and the
naive way, training the same model on the same NEU train split in one process.

(a) ceiling    the images decoded and resized once, held in memory as a float32 tensor:
               ``from_tensor_slices(...).batch(32).prefetch(AUTOTUNE)``, no augmentation;
(b) pipeline   ``make_dataset(...)`` on the JPEG files with the production settings
               (shuffle, augmentation on): its first epoch decodes and fills the cache,
               the later ones read the cache and augment;
(c) naive      a Python generator that reads and decodes each file with OpenCV, one by
               one, and yields numpy batches via ``from_generator`` (no prefetch, no
               augmentation: it is omitted, which flatters this path);
(b') fixed     (with ``--fixed``) a local copy of ``make_dataset`` with the fix proposed in
               this file's :func:`make_dataset_fixed`, to prove it.

Every path trains the one compiled model (traced once beforehand) for ``--epochs``
epochs; the median epoch's images/s is reported, and its ratio to (a). (a) runs first
and again last, so drift on the machine shows. Then each pipeline is iterated without
the model, to show how much CPU it needs per image (on 2 cores, every core-second the
pipeline spends is one the training step does not get).

    .venv/bin/python bench/pipeline.py
    .venv/bin/python bench/pipeline.py --architecture compact_cnn --size 128 --channels 1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import math
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from bench import common


def cpu_seconds() -> float:
    """CPU time this process has used (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def epoch_timer(cooperative: bool) -> Any:
    """A Keras callback that records each epoch's wall and CPU seconds (and, if
    ``cooperative``, pauses between epochs while another benchmark runs)."""
    import keras

    class _EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.wall: list[float] = []
            self.cpu: list[float] = []
            self.paused_s = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._wall, self._cpu = time.perf_counter(), cpu_seconds()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.wall.append(time.perf_counter() - self._wall)
            self.cpu.append(cpu_seconds() - self._cpu)
            if cooperative:
                self.paused_s += common.wait_for_quiet_machine()

    return _EpochTimer()


# --- the three (four) ways ------------------------------------------------------------


def ceiling_dataset(pixels: np.ndarray, labels: np.ndarray, batch_size: int) -> Any:
    """(a) decoded, resized images in memory."""
    import tensorflow as tf

    x = tf.constant(pixels.astype(np.float32))
    return (
        tf.data.Dataset.from_tensor_slices((x, labels.astype(np.int32)))
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def naive_batches(
    paths: Sequence[Path],
    labels: Sequence[int],
    size: int,
    channels: int,
    batch_size: int,
    seed: int,
) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(c) a generator function: shuffle, then read + decode + resize each file in Python."""
    import cv2

    rng = random.Random(seed)
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = list(range(len(paths)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            images = []
            for k in chunk:
                image = cv2.imread(str(paths[k]), flag)
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                if channels == 1:
                    image = image[:, :, None]
                else:
                    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                images.append(image)
            yield (
                np.stack(images).astype(np.float32),
                np.array([labels[k] for k in chunk], np.int32),
            )

    return generate


def naive_dataset(generate: Callable[[], Iterator[Any]], size: int, channels: int) -> Any:
    """(c) the generator as a dataset, as people first write it (no prefetch)."""
    import tensorflow as tf

    return tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([None, size, size, channels], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ),
    )


def augment_batch(images: Any, aug: Any, size: int, generator: Any) -> Any:
    """The product's augmentation in one resampling pass: uint8 [N, size, size, C] →
    float32 0-255.

    The same distributions as the Keras layers of ``inspector.pipeline_data.augmenter``
    (flips, rotation ±``rotation``·2π, shift ±``shift``·side, both with reflected
    borders and bilinear sampling; brightness ±``brightness``·255; contrast ×[1 ±
    ``contrast``] about each image's mean; clipped to 0-255), but the flips, rotation and
    shift are one affine matrix per image, so each image is resampled once instead of
    twice (and flipped by a third pass), and brightness and contrast are one expression.
    """
    import tensorflow as tf

    n = tf.shape(images)[0]
    turn = aug.rotation * 2 * math.pi
    theta = generator.uniform([n], -turn, turn)
    shift_x = generator.uniform([n], -aug.shift, aug.shift) * size
    shift_y = generator.uniform([n], -aug.shift, aug.shift) * size
    ones = tf.ones([n])
    flip_x = tf.where(generator.uniform([n]) < 0.5, -ones, ones) if aug.flip else ones
    flip_y = tf.where(generator.uniform([n]) < 0.5, -ones, ones) if aug.flip else ones
    # Output pixel p samples input pixel c + R(theta)·F·(p - c) - shift, F = diag(flips).
    cos, sin, c = tf.cos(theta), tf.sin(theta), (size - 1) / 2
    a0, a1, b0, b1 = cos * flip_x, -sin * flip_y, sin * flip_x, cos * flip_y
    transforms = tf.stack(
        [
            a0,
            a1,
            c - (a0 + a1) * c - shift_x,
            b0,
            b1,
            c - (b0 + b1) * c - shift_y,
            0 * ones,
            0 * ones,
        ],
        axis=1,
    )
    pixels = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=[size, size],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    delta = generator.uniform([n, 1, 1, 1], -aug.brightness * 255, aug.brightness * 255)
    factor = generator.uniform([n, 1, 1, 1], 1 - aug.contrast, 1 + aug.contrast)
    mean = tf.reduce_mean(pixels, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((pixels - mean) * factor + mean + delta, 0.0, 255.0)


def make_dataset_fixed(
    paths: Sequence[Path],
    labels: Sequence[int],
    spec: Any,
    *,
    batch_size: int,
    training: bool,
    augmentation: Any = None,
    seed: int = 0,
) -> Any:
    """(b') a copy of ``inspector.pipeline_data.make_dataset`` with the proposed fix:
    augment with :func:`augment_batch` (one map on the uint8 batch) instead of the
    cast map followed by the five Keras layers."""
    import tensorflow as tf

    from inspector.pipeline_data import preprocess_encoded

    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], np.asarray(labels, np.int32)))
    ds = ds.map(
        lambda path, label: (
            tf.cast(preprocess_encoded(tf.io.read_file(path), spec), tf.uint8),
            label,
        ),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(paths), 10_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if training and augmentation is not None and augmentation.enabled:
        generator = tf.random.Generator.from_seed(seed)
        ds = ds.map(
            lambda images, y: (augment_batch(images, augmentation, spec.size, generator), y),
            num_parallel_calls=autotune,
        )
    else:
        ds = ds.map(lambda images, y: (tf.cast(images, tf.float32), y), num_parallel_calls=autotune)
    return ds.prefetch(autotune)


# --- measuring ------------------------------------------------------------------------


def fit_epochs(model: Any, dataset: Any, epochs: int, n: int, cooperative: bool) -> dict[str, Any]:
    """Train ``epochs`` epochs; images/s of each, the median and the first."""
    timer, window = epoch_timer(cooperative), common.CpuWindow()
    model.fit(dataset, epochs=epochs, callbacks=[timer], verbose=0)
    cores = window.cores()
    rates = [n / s for s in timer.wall]
    steady = rates[1:] if len(rates) > 1 else rates
    return {
        "epoch_s": [round(s, 2) for s in timer.wall],
        "epoch_cpu_cores": [round(c / w, 2) for c, w in zip(timer.cpu, timer.wall, strict=True)],
        "first_epoch_images_per_s": round(rates[0], 1),
        "median_images_per_s": round(statistics.median(steady), 1),
        "median_all_images_per_s": round(statistics.median(rates), 1),
        "paused_for_other_benchmarks_s": round(timer.paused_s, 1),
        "cores_others": cores["others"],
    }


def iterate_only(make: Callable[[], Any], n: int, epochs: int, cooperative: bool) -> dict[str, Any]:
    """Iterate a pipeline with no model: images/s and CPU ms per image (steady epochs)."""
    dataset = make()
    wall, cpu = [], []
    for _ in range(epochs):
        if cooperative:
            common.wait_for_quiet_machine()
        t, c = time.perf_counter(), cpu_seconds()
        for _batch in dataset:
            pass
        wall.append(time.perf_counter() - t)
        cpu.append(cpu_seconds() - c)
    steady = slice(1, None) if epochs > 1 else slice(None)
    return {
        "first_epoch_images_per_s": round(n / wall[0], 1),
        "median_images_per_s": round(n / statistics.median(wall[steady]), 1),
        "cpu_ms_per_image": round(1000 * statistics.median(cpu[steady]) / n, 3),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=common.NEU_DEFAULT, help="the NEU folder")
    parser.add_argument("--architecture", default="compact_cnn")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=1, choices=(1, 3))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs for each path")
    parser.add_argument("--fixed", action="store_true", help="also run (b') the proposed fix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600,
        help="first wait up to this many seconds for an idle machine (0: do not)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for (or pause during) other benchmarks"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Time the paths, print the table and the ratios, write the JSON."""
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    classes, images = common.load_neu(args.data.resolve())
    train = [i for i in images if i.split == "train"]
    paths, labels = [i.path for i in train], [i.label for i in train]
    n = len(train)
    print(f"NEU train split: {n} images, {len(classes)} classes, batch {args.batch_size}")

    import keras
    import tensorflow as tf

    from inspector.model_input import Augmentation, InputSpec
    from inspector.modeling import build_model
    from inspector.pipeline_data import make_dataset, preprocess_encoded

    keras.utils.set_random_seed(args.seed)
    spec = InputSpec(args.size, args.channels)
    augmentation = Augmentation()

    def product(fix: bool = False) -> Any:
        make = make_dataset_fixed if fix else make_dataset
        return make(
            paths,
            labels,
            spec,
            batch_size=args.batch_size,
            training=True,
            augmentation=augmentation,
            seed=args.seed,
        )

    # The ceiling's pixels are exactly what the pipeline feeds (the same preprocessing).
    decode = tf.function(lambda data: preprocess_encoded(data, spec))
    pixels = np.stack([decode(tf.constant(p.read_bytes())).numpy() for p in paths])
    label_array = np.asarray(labels, np.int32)
    generate = naive_batches(paths, labels, args.size, args.channels, args.batch_size, args.seed)

    model = build_model(args.architecture, len(classes), spec)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # Trace the training step (full and last partial batch) before any timing.
    model.fit(ceiling_dataset(pixels, label_array, args.batch_size), epochs=1, verbose=0)

    waited = 0.0 if args.no_wait else common.wait_for_quiet_machine()
    waited_idle = common.wait_for_idle(args.idle_timeout) if args.idle_timeout > 0 else 0.0
    info = common.machine()
    started = common.utc_now()
    print(f"machine: {common.describe(info)}")
    shape = f"{args.size}x{args.size}x{args.channels}"
    print(f"model: {args.architecture} {shape}, {args.epochs} epochs a path\n")

    paths_to_time: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "a",
            "ceiling: in-memory tensor",
            lambda: ceiling_dataset(pixels, label_array, args.batch_size),
        ),
        ("b", "make_dataset (files, aug on)", product),
        (
            "c",
            "naive generator (cv2, no aug)",
            lambda: naive_dataset(generate, args.size, args.channels),
        ),
    ]
    if args.fixed:
        paths_to_time.append(("b'", "make_dataset fixed (aug on)", lambda: product(fix=True)))
    paths_to_time.append(("a2", "ceiling again (drift check)", paths_to_time[0][2]))

    rows = []
    for key, name, make in paths_to_time:
        print(f"== ({key}) {name}", flush=True)
        row = {
            "path": key,
            "name": name,
            **fit_epochs(model, make(), args.epochs, n, not args.no_wait),
        }
        row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        print(f"   epochs s {row['epoch_s']}, cores used {row['epoch_cpu_cores']}", flush=True)
        rows.append(row)

    ceiling = statistics.mean(r["median_images_per_s"] for r in rows if r["path"] in ("a", "a2"))
    for row in rows:
        row["ratio_to_ceiling"] = round(row["median_images_per_s"] / ceiling, 3)
        row["first_epoch_ratio"] = round(row["first_epoch_images_per_s"] / ceiling, 3)

    print("\n== the pipelines alone (no model)", flush=True)
    alone = {
        key: iterate_only(make, n, args.epochs, not args.no_wait)
        for key, _, make in paths_to_time
        if key != "a2"
    }
    for row in rows:
        only = alone.get(row["path"], alone["a"])
        row["alone_images_per_s"] = only["median_images_per_s"]
        row["alone_first_images_per_s"] = only["first_epoch_images_per_s"]
        row["pipeline_cpu_ms_per_image"] = only["cpu_ms_per_image"]

    columns = [
        ("path", "path"),
        ("name", "what"),
        ("first_epoch_images_per_s", "1st epoch img/s"),
        ("median_images_per_s", "median img/s"),
        ("ratio_to_ceiling", "÷ (a)"),
        ("first_epoch_ratio", "1st ÷ (a)"),
        ("alone_first_images_per_s", "alone 1st img/s"),
        ("alone_images_per_s", "alone img/s"),
        ("pipeline_cpu_ms_per_image", "alone CPU ms/img"),
    ]
    print()
    print(common.table(rows, columns))
    by = {r["path"]: r for r in rows}
    print(
        f"\n(a) = {ceiling:.1f} images/s (mean of the first and last ceiling runs: "
        f"{by['a']['median_images_per_s']} and {by['a2']['median_images_per_s']})"
    )
    print(f"(b)/(a) = {by['b']['ratio_to_ceiling']:.3f}   target ≥ 0.90")
    print(f"(b) first epoch/(a) = {by['b']['first_epoch_ratio']:.3f}")
    print(f"(c)/(a) = {by['c']['ratio_to_ceiling']:.3f}")
    if "b'" in by:
        fixed = by["b'"]
        print(f"(b')/(a) = {fixed['ratio_to_ceiling']:.3f}")

    result = {
        "benchmark": "pipeline",
        "started": started,
        "finished": common.utc_now(),
        "waited_for_other_benchmarks_s": round(waited, 1),
        "waited_for_idle_machine_s": round(waited_idle, 1),
        "machine": info,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "data": str(args.data.resolve()),
        "train_images": n,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "ceiling_images_per_s": round(ceiling, 1),
        "rows": rows,
    }
    out = common.save_results("pipeline", result)
    print(f"results: {out.relative_to(common.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
