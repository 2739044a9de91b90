"""Input pipeline benchmark: the product's ``make_dataset`` against its ceiling and the
naive way, training the same model on the same NEU train split in one process.

(a) ceiling    the images decoded and resized once, held in memory as a float32 tensor:
               ``from_tensor_slices(...).batch(32).prefetch(AUTOTUNE)``, no augmentation;
(b) pipeline   ``make_dataset(...)`` on the JPEG files with the production settings
               (shuffle, augmentation on): its first epoch decodes and fills the cache,
               the later ones read the cache and augment;
(b0) no aug    ``make_dataset(...)`` with augmentation off: what the pipeline costs
               without the augmentation (diagnosis);
(c) naive      a Python generator that reads and decodes each file with OpenCV, one by
               one, and yields numpy batches via ``from_generator`` (no prefetch, no
               augmentation: it is omitted, which flatters this path);
(k) layers    (with ``--keras-layers``) the pipeline as it augmented before 2026-11-26,
               with Keras' random layers (:func:`make_dataset_keras_layers`).

Every path trains the one compiled model (traced once beforehand), one epoch at a time,
in interleaved rounds: round 0 is every path's first epoch (the one in which (b) decodes),
then ``--rounds`` rounds of one epoch each (more, up to ``--max-rounds``, until every path
has three clean epochs), in an order rotated every round, so that a drift or a burst of
load elsewhere on the machine lands on every path alike; each round first waits a little
for an idle machine. Each epoch records its wall time, the CPU this process used and the
cores the rest of the machine used; the medians of the steady epochs are reported, over
the epochs in which the rest of the machine stayed under 0.25 cores when there are at
least three such epochs. CPU milliseconds per trained image are reported too: on a
shared machine they move much less than wall time. Then each pipeline is iterated
without the model, to show how much CPU it needs per image (on 2 cores every core-second
the pipeline spends is one the training step does not get).

    .venv/bin/python bench/pipeline.py
    .venv/bin/python bench/pipeline.py --architecture compact_cnn --size 128 --channels 1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import common


def cpu_seconds() -> float:
    """CPU time this process has used (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def epoch_timer() -> Any:
    """A Keras callback that records each epoch's wall time, own CPU and others' cores."""
    import keras

    class _EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[dict[str, float]] = []

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._wall, self._cpu, self._window = (
                time.perf_counter(),
                cpu_seconds(),
                common.CpuWindow(),
            )

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            wall = time.perf_counter() - self._wall
            cpu = cpu_seconds() - self._cpu
            self.epochs.append({"wall": wall, "cpu": cpu, "others": self._window.cores()["others"]})

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


def naive_dataset(generate: Callable[[], Iterator[Any]], spec: Any, steps: int) -> Any:
    """(c) the generator as a dataset, as people first write it (no prefetch); its length
    is declared so that Keras does not warn about running out of data."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([None, spec.size, spec.size, spec.channels], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ),
    )
    return dataset.apply(tf.data.experimental.assert_cardinality(steps))


def make_dataset_keras_layers(
    paths: Sequence[Path],
    labels: Sequence[int],
    spec: Any,
    *,
    batch_size: int,
    training: bool,
    augmentation: Any = None,
    seed: int = 0,
) -> Any:
    """(k) how ``inspector.pipeline_data.make_dataset`` augmented before 2026-11-26: a
    cast map, then Keras' five random layers in another (each image resampled twice and
    flipped in a third pass). Kept to show what ``augment_batch`` changed."""
    import keras
    import tensorflow as tf

    from inspector.pipeline_data import cached_batches

    autotune = tf.data.AUTOTUNE
    ds = cached_batches(paths, labels, spec, batch_size=batch_size, training=training, seed=seed)
    ds = ds.map(lambda images, y: (tf.cast(images, tf.float32), y), num_parallel_calls=autotune)
    aug = augmentation
    layers = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(aug.rotation, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomTranslation(
                aug.shift, aug.shift, fill_mode="reflect", seed=seed + 2
            ),
            keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255), seed=seed + 3),
            keras.layers.RandomContrast(aug.contrast, value_range=(0, 255), seed=seed + 4),
        ]
    )
    ds = ds.map(lambda images, y: (layers(images, training=True), y), num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def decode_costs(neu: Sequence[Path], spec: Any, count: int = 40) -> dict[str, dict[str, float]]:
    """Milliseconds to decode and resize one image, the product's way (TensorFlow, as the
    first epoch and serving do) and the naive way (OpenCV), for NEU's small JPEGs and for
    camera-sized ones (1152×864 simulated parts, as bench/ingest.py uploads)."""
    import cv2
    import tensorflow as tf

    from inspector.pipeline_data import preprocess_encoded
    from inspector.simulate import LineSimulator, encode

    camera = [
        encode(part.image, "jpeg") for part in LineSimulator(size=(1152, 864), seed=0).parts(count)
    ]
    sets = {"NEU 200x200": [p.read_bytes() for p in neu[:count]], "camera 1152x864": camera}
    graph = tf.function(lambda data: preprocess_encoded(data, spec))
    flag = cv2.IMREAD_GRAYSCALE if spec.channels == 1 else cv2.IMREAD_COLOR

    def opencv(data: bytes) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        return cv2.resize(image, (spec.size, spec.size), interpolation=cv2.INTER_AREA)

    out = {}
    for name, blobs in sets.items():
        row = {"kib": round(statistics.mean(len(b) for b in blobs) / 1024, 1)}
        for way, fn in (
            ("tensorflow_ms", lambda b: graph(tf.constant(b)).numpy()),
            ("opencv_ms", opencv),
        ):
            fn(blobs[0])
            t = time.perf_counter()
            for blob in blobs:
                fn(blob)
            row[way] = round(1000 * (time.perf_counter() - t) / len(blobs), 2)
        out[name] = row
    return out


# --- measuring ------------------------------------------------------------------------


CLEAN = 0.25  # cores the rest of the machine may use for an epoch to count as clean


@dataclass
class Way:
    """One way of feeding the model, and its timed epochs."""

    key: str
    name: str
    dataset: Any
    epochs: list[dict[str, float]] = field(default_factory=list)

    def train_epoch(self, model: Any) -> dict[str, float]:
        """One epoch of training; its record."""
        timer = epoch_timer()
        model.fit(self.dataset, epochs=1, callbacks=[timer], verbose=0)
        self.epochs.append(timer.epochs[0])
        return timer.epochs[0]

    def summary(self, n: int) -> dict[str, Any]:
        """First epoch, and medians over the steady (clean if possible) epochs."""
        steady = self.epochs[1:]
        clean = [e for e in steady if e["others"] <= CLEAN]
        used = clean if len(clean) >= 3 else steady
        return {
            "path": self.key,
            "name": self.name,
            "first_epoch_images_per_s": round(n / self.epochs[0]["wall"], 1),
            "median_images_per_s": round(n / statistics.median(e["wall"] for e in used), 1),
            "median_all_images_per_s": round(n / statistics.median(e["wall"] for e in steady), 1),
            "cpu_ms_per_image": round(1000 * statistics.median(e["cpu"] for e in used) / n, 2),
            "own_cores": round(statistics.median(e["cpu"] / e["wall"] for e in used), 2),
            "clean_epochs": f"{len(clean)}/{len(steady)}",
            "median_from": "clean epochs" if used is clean else "all steady epochs",
            "others_cores_median": round(statistics.median(e["others"] for e in steady), 2),
            "epochs": [{k: round(v, 3) for k, v in e.items()} for e in self.epochs],
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
    parser.add_argument(
        "--rounds", type=int, default=6, help="steady epochs of each path (after the first)"
    )
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=24,
        help="more rounds, up to this many, until every path has 3 clean epochs",
    )
    parser.add_argument(
        "--round-idle-timeout",
        type=float,
        default=90,
        help="before each round, wait up to this many seconds for an idle machine",
    )
    parser.add_argument(
        "--alone-epochs", type=int, default=4, help="epochs of each pipeline without the model"
    )
    parser.add_argument(
        "--keras-layers",
        action="store_true",
        help="also run (k) the earlier augmentation with Keras' random layers",
    )
    parser.add_argument("--seed", type=int, default=0)
    common.add_wait_options(parser)
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

    def product(keras_layers: bool = False, augment: bool = True) -> Any:
        make = make_dataset_keras_layers if keras_layers else make_dataset
        return make(
            paths,
            labels,
            spec,
            batch_size=args.batch_size,
            training=True,
            augmentation=augmentation if augment else None,
            seed=args.seed,
        )

    # The ceiling's pixels are exactly what the pipeline feeds (the same preprocessing).
    decode = tf.function(lambda data: preprocess_encoded(data, spec))
    pixels = np.stack([decode(tf.constant(p.read_bytes())).numpy() for p in paths])
    label_array = np.asarray(labels, np.int32)
    batch, steps = args.batch_size, -(-n // args.batch_size)
    generate = naive_batches(paths, labels, args.size, args.channels, batch, args.seed)

    model = build_model(args.architecture, len(classes), spec)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # Trace the training step (full and last partial batch) before any timing.
    model.fit(ceiling_dataset(pixels, label_array, batch), epochs=1, verbose=0)

    waited, waited_idle = common.wait_before_measuring(args)
    info = common.machine()
    started = common.utc_now()
    print(f"machine: {common.describe(info)}")
    shape = f"{args.size}x{args.size}x{args.channels}"
    print(f"model: {args.architecture} {shape}; 1 + {args.rounds} epochs a path, interleaved")
    print("each round: images/s of an epoch [cores the rest of the machine used]\n")

    makers: list[tuple[str, str, Callable[[], Any]]] = [
        ("a", "ceiling: in-memory tensor", lambda: ceiling_dataset(pixels, label_array, batch)),
        ("b", "make_dataset (files, aug on)", product),
        ("b0", "make_dataset (files, aug off)", lambda: product(augment=False)),
        ("c", "naive generator (cv2, no aug)", lambda: naive_dataset(generate, spec, steps)),
    ]
    if args.keras_layers:
        makers.append(("k", "Keras aug layers (before)", lambda: product(keras_layers=True)))
    ways = [Way(key, name, make()) for key, name, make in makers]

    round_ = 0
    while True:
        clean = min(sum(e["others"] <= CLEAN for e in way.epochs[1:]) for way in ways)
        if round_ > args.rounds and (clean >= 3 or round_ > args.max_rounds):
            break
        if args.round_idle_timeout > 0:
            common.wait_for_idle(args.round_idle_timeout, log=lambda _: None)
        shift = round_ % len(ways)
        line = []
        for way in ways[shift:] + ways[:shift]:
            if not args.no_wait:
                common.wait_for_quiet_machine()
            epoch = way.train_epoch(model)
            line.append(f"({way.key}) {n / epoch['wall']:6.1f} img/s [{epoch['others']:.2f}]")
        label = "first" if round_ == 0 else f"{round_:5d}"
        print(f"   round {label}: " + "  ".join(line), flush=True)
        round_ += 1

    rows = [way.summary(n) for way in ways]
    by = {r["path"]: r for r in rows}
    ceiling = by["a"]
    for row in rows:
        row["ratio_to_ceiling"] = round(
            row["median_images_per_s"] / ceiling["median_images_per_s"], 3
        )
        row["first_epoch_ratio"] = round(
            row["first_epoch_images_per_s"] / ceiling["median_images_per_s"], 3
        )
        row["cpu_ratio_to_ceiling"] = round(
            ceiling["cpu_ms_per_image"] / row["cpu_ms_per_image"], 3
        )

    print("\n== the pipelines alone (no model)", flush=True)
    for (key, _, make), row in zip(makers, rows, strict=True):
        alone = iterate_only(make, n, args.alone_epochs, not args.no_wait)
        row["alone_first_images_per_s"] = alone["first_epoch_images_per_s"]
        row["alone_images_per_s"] = alone["median_images_per_s"]
        row["alone_cpu_ms_per_image"] = alone["cpu_ms_per_image"]
        print(f"   ({key}) {alone}", flush=True)

    print("\n== decode + resize, one image at a time (ms)", flush=True)
    decode_ms = decode_costs(paths, spec)
    for name, row in decode_ms.items():
        print(f"   {name}: {row}")

    columns = [
        ("path", "path"),
        ("name", "what"),
        ("first_epoch_images_per_s", "1st epoch img/s"),
        ("median_images_per_s", "median img/s"),
        ("ratio_to_ceiling", "÷ (a)"),
        ("first_epoch_ratio", "1st ÷ (a)"),
        ("cpu_ms_per_image", "CPU ms/img"),
        ("cpu_ratio_to_ceiling", "(a) CPU ÷ this"),
        ("own_cores", "cores"),
        ("clean_epochs", "clean"),
        ("others_cores_median", "others"),
        ("alone_first_images_per_s", "alone 1st img/s"),
        ("alone_images_per_s", "alone img/s"),
        ("alone_cpu_ms_per_image", "alone CPU ms/img"),
    ]
    print()
    print(common.table(rows, columns))
    print(
        f"\n(a) = {ceiling['median_images_per_s']} images/s; 'others' = median cores the rest of "
        f"the machine used per epoch; medians from epochs where it used ≤ {CLEAN} cores"
    )
    print(f"(b)/(a) = {by['b']['ratio_to_ceiling']:.3f}   target ≥ 0.90")
    print(f"(b) first epoch/(a) = {by['b']['first_epoch_ratio']:.3f}")
    print(f"(b0)/(a) = {by['b0']['ratio_to_ceiling']:.3f}   (no augmentation)")
    print(f"(c)/(a) = {by['c']['ratio_to_ceiling']:.3f}")
    if "k" in by:
        print(f"(k)/(a) = {by['k']['ratio_to_ceiling']:.3f}   (Keras augmentation layers)")

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
        "ceiling_images_per_s": ceiling["median_images_per_s"],
        "rows": rows,
        "decode_ms": decode_ms,
    }
    out = common.save_results("pipeline", result)
    print(f"results: {common.shown(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
