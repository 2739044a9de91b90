"""Can the product's model find a needle? Good simulated parts at camera resolution, half of
them with one synthetic defect a few pixels across pasted in, and the product's model
(architecture, head, pooling, augmentation, batch size) trained from scratch to tell the
two apart, once per learning rate, in this process.

    .venv/bin/python bench/needle.py                          # 2e-3 (the default), 5e-4, 3e-4
    .venv/bin/python bench/needle.py --lr 2e-3,1e-3 --kind line --steps 400

Why: on the simulated small-defect line (``bench/real_lines.py sim-small``) a first run
does not learn pits 3-5 px across on 400 px parts, and each try of a change there costs 6
minutes. This probe isolates the same question (one small local anomaly in a 256×400
canvas of texture) and answers it in about 2 minutes per setting. It prints the training
accuracy every 25 steps, the accuracy on 64 fixed images it did not train on, and how
many steps each setting took to reach 80 % against the first one (the baseline).

The learning rate is constant here (the product warms up for two epochs and then decays
it along a cosine), so the numbers say which rates can find the defect at all, not what
a whole run reaches. It trains the classifier alone, without the product's synthetic
defects (``inspector.synthetic_defects``, on by default since): its needles are drawn much
as those are, so with them it would test the pastes against themselves. What they give on
the simulated line is in BENCHMARKS.md ("Synthetic defects teach the small ones").
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import math
import time
from typing import Any

from bench import common

CHUNK = 25


def good_parts(count: int) -> list[Any]:
    """Good grey parts of the sim-small scenario's three sizes (fixed seeds)."""
    from bench.lines import SIM_SIZES
    from inspector.simulate import LineSimulator

    parts = []
    for k, size in enumerate(SIM_SIZES):
        sim = LineSimulator(size=size, seed=300 + k, color=False, defect_size="small")
        parts += [sim.part("ok").image for _ in range(math.ceil(count / len(SIM_SIZES)))]
    return parts[:count]


def paste(images: Any, generator: Any, kind: str) -> Any:
    """float32 [N, H, W, C] 0-255 → the same with one synthetic defect each, somewhere in the
    middle 80 %: a dot 1.5-2.5 px in radius (like the simulator's pits) or a segment 5-60
    px long and 1-2.4 px wide, darker (70 %) or brighter by 1.5-4× the image's spread.
    The place is drawn on the canvas, so about 2 % of the needles land dark on a letterbox
    bar and cannot be seen: accuracy can fall just short of 100 %."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    yy, xx = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )

    def uniform(low: float, high: float) -> tf.Tensor:
        return generator.uniform([n, 1, 1], low, high)

    cy, cx = uniform(0.1 * height, 0.9 * height), uniform(0.1 * width, 0.9 * width)
    dot = tf.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - uniform(1.5, 2.5)
    length, angle, half = uniform(5.0, 60.0), uniform(0.0, math.pi), uniform(0.5, 1.2)
    dy, dx = tf.sin(angle), tf.cos(angle)
    along = tf.clip_by_value((yy - cy) * dy + (xx - cx) * dx, -length / 2, length / 2)
    segment = tf.sqrt((yy - cy - along * dy) ** 2 + (xx - cx - along * dx) ** 2) - half
    share = {"dot": 1.0, "line": 0.0, "both": 0.5}[kind]
    distance = tf.where(generator.uniform([n, 1, 1]) < share, dot, segment)
    alpha = tf.clip_by_value(0.5 - distance, 0.0, 1.0)[..., tf.newaxis]
    spread = tf.maximum(tf.math.reduce_std(images, axis=[1, 2, 3], keepdims=True), 8.0)
    sign = tf.where(generator.uniform([n, 1, 1, 1]) < 0.7, -1.0, 1.0)
    amplitude = sign * generator.uniform([n, 1, 1, 1], 1.5, 4.0) * spread
    return tf.clip_by_value(images + alpha * amplitude, 0.0, 255.0)


def canvases(parts: list[Any], spec: Any) -> Any:
    """The parts as the model sees them (the product's letterboxing)."""
    import numpy as np

    from inspector.pipeline_data import preprocess_pixels

    return np.stack([preprocess_pixels(p[..., np.newaxis], spec).numpy() for p in parts])


def probe(train: Any, test: tuple[Any, Any], spec: Any, lr: float, args: Any) -> dict[str, Any]:
    """One setting: a fresh product model trained ``args.steps`` steps at ``lr``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from inspector import modeling, pipeline_data
    from inspector.model_input import Augmentation
    from inspector.train_config import TrainConfig

    config = TrainConfig(seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    generator = tf.random.Generator.from_seed(args.seed)
    model = modeling.build_model(
        config.architecture, ["ok", "needle"], ["ok"], spec, sharpness=config.pooling_sharpness
    )
    model.compile(
        keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    aug, size = Augmentation(**config.augmentation.model_dump()), config.batch_size

    def batch(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = pipeline_data.augment_batch(images, aug, generator)
        labels = tf.cast(generator.uniform([size]) < 0.5, tf.int64)
        pasted = paste(images, generator, args.kind)
        return tf.where(tf.cast(labels, tf.bool)[:, None, None, None], pasted, images), labels

    ds = tf.data.Dataset.from_tensor_slices(train.astype(np.uint8))
    ds = ds.shuffle(len(train), seed=args.seed).repeat().batch(size, drop_remainder=True)
    ds = ds.map(batch).prefetch(2)
    started, curve = time.monotonic(), []
    for _ in range(args.steps // CHUNK):
        history = model.fit(ds, steps_per_epoch=CHUNK, epochs=1, verbose=0)
        curve.append(round(float(history.history["accuracy"][0]), 3))
    images, labels = test
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    reached = next((CHUNK * (k + 1) for k, acc in enumerate(curve) if acc >= 0.8), None)
    return {
        "learning_rate": lr,
        "curve": curve,
        "steps_to_80": reached,
        "test_accuracy": round(float((predicted == labels).mean()), 3),
        "seconds": round(time.monotonic() - started, 1),
    }


def test_set(parts: Any, kind: str, seed: int) -> tuple[Any, Any]:
    """64 fixed images, half with a needle, never trained on."""
    import numpy as np
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed + 1000)
    labels = np.arange(len(parts)) % 2
    pasted = paste(tf.constant(parts), generator, kind).numpy()
    return np.where(labels[:, None, None, None] == 1, pasted, parts), labels


def main(argv: list[str] | None = None) -> int:
    """Parse, draw, probe each learning rate, print and save."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lr", default="2e-3,5e-4,3e-4", help="learning rates; the first is the baseline"
    )
    parser.add_argument("--kind", choices=("dot", "line", "both"), default="dot")
    parser.add_argument(
        "--steps", type=int, default=300, help=f"training steps (a multiple of {CHUNK})"
    )
    parser.add_argument("--parts", type=int, default=150, help="good parts to train on")
    parser.add_argument("--seed", type=int, default=0)
    common.add_wait_options(parser)
    args = parser.parse_args(argv)
    rates = [float(v) for v in args.lr.split(",")]
    if args.idle_timeout and not args.no_wait:
        common.wait_for_idle(args.idle_timeout)

    from inspector.model_input import ImageShape, choose_input
    from inspector.train_config import TrainConfig

    config = TrainConfig()
    parts = good_parts(args.parts + 64)
    shapes = [ImageShape(p.shape[0], p.shape[1], 1) for p in parts]
    spec = choose_input(
        shapes, samples=config.min_steps * config.batch_size, pixel_budget=config.pixel_budget
    )
    images = canvases(parts, spec)
    test = test_set(images[args.parts :], args.kind, args.seed)
    print(f"canvas {spec}, {args.parts} good parts, {args.kind} needles, {args.steps} steps")
    rows = [probe(images[: args.parts], test, spec, lr, args) for lr in rates]
    base = rows[0]["steps_to_80"]
    for row in rows:
        steps = row["steps_to_80"]
        row["ratio_to_baseline"] = round(steps / base, 2) if steps and base else None
        print(
            f"lr {row['learning_rate']:g}: accuracy every {CHUNK} steps {row['curve']}; "
            f"80 % after {steps or 'never'} steps "
            f"(× {row['ratio_to_baseline'] or '-'} the baseline's); "
            f"test {row['test_accuracy']:.1%}; {row['seconds']} s"
        )
    path = common.save_results(
        "needle",
        {"machine": common.machine(), "canvas": str(spec), "kind": args.kind, "runs": rows},
    )
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
