"""The ways bench/pipeline.py feeds the model, each built as a ``tf.data`` dataset: (a) the
ceiling, the decoded and resized images held in memory as one float32 tensor; (b) and (b0)
the product's ``make_dataset`` on the JPEG files, augmentation on and off; (c) the naive
way, a Python generator that reads and decodes each file with OpenCV and yields numpy
batches through ``from_generator``; and (k) the pipeline as it augmented before
2026-11-26, with Keras' random layers. :func:`feeds` lists them with their keys and names,
each as a function that builds its dataset; nothing here is timed.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inspector.model_input import Augmentation, InputSpec


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
    spec: InputSpec,
    batch_size: int,
    seed: int,
) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(c) a generator function: shuffle, then read + decode + resize each file to the
    canvas in Python (stretched: NEU's square images fill a square canvas either way)."""
    import cv2

    rng = random.Random(seed)
    channels = spec.channels
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = list(range(len(paths)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            images = []
            for k in chunk:
                read = cv2.imread(str(paths[k]), flag)
                if read is None:
                    raise ValueError(f"OpenCV cannot read {paths[k]}")
                image = cv2.resize(read, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
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


def naive_dataset(generate: Callable[[], Iterator[Any]], spec: InputSpec, steps: int) -> Any:
    """(c) the generator as a dataset, as people first write it (no prefetch); its length
    is declared so that Keras does not warn about running out of data."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec([None, spec.height, spec.width, spec.channels], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ),
    )
    return dataset.apply(tf.data.experimental.assert_cardinality(steps))


def make_dataset_keras_layers(
    paths: Sequence[Path],
    labels: Sequence[int],
    spec: InputSpec,
    *,
    batch_size: int,
    training: bool,
    augmentation: Augmentation | None = None,
    seed: int = 0,
) -> Any:
    """(k) how ``inspector.pipeline_data.make_dataset`` augmented before 2026-11-26: a
    cast map, then Keras' five random layers in another (each image resampled twice and
    flipped in a third pass). Kept to show what ``augment_batch`` changed."""
    import keras
    import tensorflow as tf

    from inspector.pipeline_data import cached_batches

    if augmentation is None:
        raise ValueError("(k) is the Keras layers' augmentation: it needs one")
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


Feed = tuple[str, str, Callable[[], Any]]  # key, name, and what builds the dataset


def feeds(
    paths: Sequence[Path], labels: Sequence[int], spec: InputSpec, args: argparse.Namespace
) -> list[Feed]:
    """(a), (b), (b0), (c) and, with ``--keras-layers``, (k): each path's key, name and the
    function that builds its dataset (on ``spec``'s canvas, with ``--batch-size`` and
    ``--seed``). The ceiling's pixels are decoded here, once."""
    import tensorflow as tf

    from inspector.model_input import Augmentation
    from inspector.pipeline_data import make_dataset, preprocess_encoded

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
    batch, steps = args.batch_size, -(-len(paths) // args.batch_size)
    generate = naive_batches(paths, labels, spec, batch, args.seed)

    made: list[Feed] = [
        ("a", "ceiling: in-memory tensor", lambda: ceiling_dataset(pixels, label_array, batch)),
        ("b", "make_dataset (files, aug on)", product),
        ("b0", "make_dataset (files, aug off)", lambda: product(augment=False)),
        ("c", "naive generator (cv2, no aug)", lambda: naive_dataset(generate, spec, steps)),
    ]
    if args.keras_layers:
        made.append(("k", "Keras aug layers (before)", lambda: product(keras_layers=True)))
    return made
