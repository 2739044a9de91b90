"""Snapshot → tf.data: parallel fetch into a local cache, decode and resize in the graph,
augment, shuffle, batch, prefetch.

The decode-and-resize step is :func:`preprocess_encoded`, the very function the exported
SavedModel runs on the bytes it is sent (see :mod:`inspector.export`), so what the model
saw in training is what it sees in serving. Training reads the raw bytes the camera
sent, not a copy made by other code, for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import tensorflow as tf

from inspector.batch_draws import Uniform, map_batches
from inspector.datasets import DatasetError, ManifestEntry
from inspector.model_input import STRETCH_TOLERANCE, Augmentation, InputSpec
from storage import NotFound, ObjectStore

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE

# TensorFlow decodes JPEG, PNG, BMP and GIF in the graph, but not TIFF: TIFF uploads are
# converted losslessly to PNG when they enter the cache (and by the inference worker).
_GRAPH_DECODABLE = (b"\xff\xd8\xff", b"\x89PNG", b"BM")


def preprocess_encoded(encoded: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """Encoded image bytes → float32 [height, width, channels] on a 0-255 scale.

    Shared by the training pipeline and the SavedModel's serving signature.
    """
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    return preprocess_pixels(image, spec)


def _fit(image_height: tf.Tensor, image_width: tf.Tensor, spec: InputSpec) -> list[tf.Tensor]:
    """top, left, height, width of the image on the canvas: :func:`fit_box` in the graph."""
    h, w = tf.cast(image_height, tf.float64), tf.cast(image_width, tf.float64)
    scale_h, scale_w = spec.height / h, spec.width / w
    low, high = tf.minimum(scale_h, scale_w), tf.maximum(scale_h, scale_w)
    stretch = high / low <= STRETCH_TOLERANCE
    fitted_h = tf.clip_by_value(tf.floor(h * low + 0.5), 1.0, float(spec.height))
    fitted_w = tf.clip_by_value(tf.floor(w * low + 0.5), 1.0, float(spec.width))
    height = tf.where(stretch, tf.constant(spec.height, tf.float64), fitted_h)
    width = tf.where(stretch, tf.constant(spec.width, tf.float64), fitted_w)
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    return [(spec.height - height) // 2, (spec.width - width) // 2, height, width]


def preprocess_pixels(image: tf.Tensor, spec: InputSpec) -> tf.Tensor:
    """uint8 [H, W, 1 or 3] → float32 [height, width, channels] of whole numbers 0-255.

    The image is resized to fit the canvas with its aspect ratio kept (antialiased) and
    centred on black (:func:`inspector.model_input.fit_box`). Rounded to whole numbers so
    that the training pipeline can cache the result as uint8 and still feed the model
    exactly what serving feeds it.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    shape = tf.shape(image)
    top, left, height, width = _fit(shape[0], shape[1], spec)
    resized = tf.image.resize(tf.cast(image, tf.float32), [height, width], antialias=True)
    canvas = tf.pad(
        resized,
        [[top, spec.height - height - top], [left, spec.width - width - left], [0, 0]],
    )
    canvas = tf.ensure_shape(canvas, [spec.height, spec.width, 3])
    if spec.channels == 1:
        canvas = tf.image.rgb_to_grayscale(canvas)
    return tf.round(tf.clip_by_value(canvas, 0.0, 255.0))


# --- the local cache --------------------------------------------------------------------


def _cache_path(cache_dir: Path, entry: ManifestEntry) -> Path:
    return cache_dir / entry.image_id[:2] / entry.image_id


def _fetch_one(store: ObjectStore, cache_dir: Path, entry: ManifestEntry) -> Path:
    path = _cache_path(cache_dir, entry)
    if path.exists():
        return path
    try:
        data = store.get_bytes(entry.raw_key)
    except NotFound as exc:
        raise DatasetError(
            f"image {entry.image_id} of the snapshot is missing from the store ({entry.raw_key})",
            code="corrupt_dataset",
        ) from exc
    if hashlib.sha256(data).hexdigest() != entry.image_id:
        raise DatasetError(
            f"image {entry.image_id} in the store does not match its content hash: it is "
            "corrupt; relabel or remove it and train again",
            code="corrupt_dataset",
        )
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise DatasetError(f"image {entry.image_id} cannot be decoded", code="corrupt_dataset")
    if not data.startswith(_GRAPH_DECODABLE) or decoded.dtype != np.uint8:
        from inspector.images import canonicalise, encode_png

        color = "gray" if decoded.ndim == 2 else "rgb"
        data = encode_png(canonicalise(decoded, max(decoded.shape[:2]), color))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def fetch_to_cache(
    store: ObjectStore, entries: Sequence[ManifestEntry], cache_dir: Path, *, workers: int = 16
) -> list[Path]:
    """Download the images of ``entries`` in parallel into ``cache_dir`` (content-addressed:
    a cached file is reused), verifying each one's hash; paths in the order of ``entries``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda e: _fetch_one(store, cache_dir, e), entries))


def verify_cache(paths: Sequence[Path]) -> None:
    """Fail clearly, naming the file, if a cached image no longer decodes."""
    for path in paths:
        if cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED) is None:
            raise DatasetError(
                f"cached image {path} is corrupt; delete it (it is fetched again) and retry",
                code="corrupt_cache",
            )


# --- datasets ---------------------------------------------------------------------------


def _affine(
    n: tf.Tensor, height: int, width: int, aug: Augmentation, generator: Uniform
) -> tf.Tensor:
    """[N, 8] projective transforms: flips, rotation, zoom and shift about the centre."""
    ones = tf.ones([n])
    turn = aug.rotation * 2 * math.pi
    theta = generator.uniform([n], -turn, turn) if aug.rotation else 0 * ones
    shift_x = generator.uniform([n], -aug.shift, aug.shift) * width if aug.shift else 0 * ones
    shift_y = generator.uniform([n], -aug.shift, aug.shift) * height if aug.shift else 0 * ones
    flip_x = tf.where(generator.uniform([n]) < 0.5, -ones, ones) if aug.flip else ones
    flip_y = tf.where(generator.uniform([n]) < 0.5, -ones, ones) if aug.flip else ones
    # Sampling the input at 1/scale of the distance: the content grows by ``scale``.
    inverse = tf.pow(2.0, generator.uniform([n], -aug.zoom, aug.zoom)) if aug.zoom else ones
    # Output pixel p samples input pixel c + R(theta)·F·(p - c)/scale - shift, F = diag(flips).
    cos, sin = tf.cos(theta) * inverse, tf.sin(theta) * inverse
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1, b0, b1 = cos * flip_x, -sin * flip_y, sin * flip_x, cos * flip_y
    offset_x = cx - a0 * cx - a1 * cy - shift_x
    offset_y = cy - b0 * cx - b1 * cy - shift_y
    return tf.stack([a0, a1, offset_x, b0, b1, offset_y, 0 * ones, 0 * ones], axis=1)


def _photometric(pixels: tf.Tensor, aug: Augmentation, generator: Uniform) -> tf.Tensor:
    """Brightness ±``brightness``·255 and contrast ×[1 ± ``contrast``] about each image's
    mean, in one expression."""
    if not (aug.brightness or aug.contrast):
        return pixels
    n = tf.shape(pixels)[0]
    delta = (
        generator.uniform([n, 1, 1, 1], -aug.brightness * 255, aug.brightness * 255)
        if aug.brightness
        else 0.0
    )
    factor = (
        generator.uniform([n, 1, 1, 1], 1 - aug.contrast, 1 + aug.contrast) if aug.contrast else 1.0
    )
    mean = tf.reduce_mean(pixels, axis=[1, 2], keepdims=True)
    return (pixels - mean) * factor + mean + delta


def augment_batch(images: tf.Tensor, aug: Augmentation, generator: Uniform) -> tf.Tensor:
    """Augment a batch of uint8 [N, height, width, C] images; float32 0-255 out.

    Flips (both axes), rotation ±``rotation``·2π, a scale of 2^±``zoom`` about the centre
    and shift ±``shift``·side are one affine matrix per image, applied in one bilinear
    resampling pass with reflected borders; brightness ±``brightness``·255 and contrast
    ×[1 ± ``contrast``] about each image's mean are one expression; the result is clipped
    to 0-255. The same distributions as Keras' RandomFlip/RandomRotation/
    RandomTranslation/RandomBrightness/RandomContrast layers, at a fraction of their
    cost: those resample each image twice, flip it in a third pass and run in five maps
    (measured in bench/pipeline.py, see BENCHMARKS.md).
    """
    height, width = int(images.shape[1]), int(images.shape[2])
    pixels = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=_affine(tf.shape(images)[0], height, width, aug, generator),
        output_shape=[height, width],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return tf.clip_by_value(_photometric(pixels, aug, generator), 0.0, 255.0)


def _decoded(paths: Sequence[Path], labels: Sequence[int], spec: InputSpec) -> tf.data.Dataset:
    """(uint8 image, label) per file: parallel read + decode, in order, cached."""
    ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in paths], np.asarray(labels, np.int32)))
    ds = ds.map(
        lambda path, label: (
            tf.cast(preprocess_encoded(tf.io.read_file(path), spec), tf.uint8),
            label,
        ),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    # Decoded, resized images are small: keep them after the first epoch (uint8: 4x smaller).
    return ds.cache()


def cached_batches(
    paths: Sequence[Path],
    labels: Sequence[int],
    spec: InputSpec,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
) -> tf.data.Dataset:
    """Files → (uint8 images, labels) batches: parallel read + decode, cache, then (for
    training) shuffle; batched. Evaluation keeps the order of ``paths``."""
    if not paths:
        raise DatasetError("no images for this dataset", code="empty_split")
    ds = _decoded(paths, labels, spec)
    if training:
        ds = ds.shuffle(min(len(paths), 10_000), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=False)


def _augmented(
    ds: tf.data.Dataset, augmentation: Augmentation | None, seed: int
) -> tf.data.Dataset:
    if augmentation is not None and augmentation.enabled:
        aug = augmentation
        ds = map_batches(ds, seed, lambda draws, images, y: (augment_batch(images, aug, draws), y))
    else:
        ds = ds.map(lambda images, y: (tf.cast(images, tf.float32), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def make_dataset(
    paths: Sequence[Path],
    labels: Sequence[int],
    spec: InputSpec,
    *,
    batch_size: int,
    training: bool,
    augmentation: Augmentation | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """Files → (float32 images, labels) batches, one pass: :func:`cached_batches`,
    augmentation (training only), prefetch."""
    ds = cached_batches(paths, labels, spec, batch_size=batch_size, training=training, seed=seed)
    return _augmented(ds, augmentation if training else None, seed)


Sampling = Literal["balanced", "sqrt", "natural"]


def sampling_weights(counts: Sequence[int], sampling: Sampling) -> list[float]:
    """How often each class is drawn: equally (``balanced``), in proportion to the square
    root of its count (``sqrt``), or as it occurs (``natural``)."""
    raw = [
        (1.0 if n else 0.0)
        if sampling == "balanced"
        else (math.sqrt(n) if sampling == "sqrt" else float(n))
        for n in counts
    ]
    total = sum(raw)
    return [r / total for r in raw]


def weighted_like_sampling(
    ds: tf.data.Dataset, labels: np.ndarray, sampling: Sampling, output: str | None = None
) -> tf.data.Dataset:
    """Validation (images, targets) batches → (images, targets, weights): each image
    weighted by how much more (or less) often training draws its class than the
    validation split holds it (``balanced``: a class's images weigh as much together as
    any other class's), so the validation loss measures what training minimises. Weights
    average 1. Where targets are a dict (several outputs), ``output`` names the class
    targets, the one output weighted."""
    counts = np.bincount(labels, minlength=int(labels.max()) + 1)
    drawn = np.asarray(sampling_weights(counts.tolist(), sampling))
    per_class = tf.constant(
        np.where(counts > 0, drawn * len(labels) / np.maximum(counts, 1), 0.0), tf.float32
    )

    def weigh(images: tf.Tensor, targets):
        classes = targets[output] if isinstance(targets, dict) else targets
        weights = tf.gather(per_class, tf.reshape(tf.cast(classes, tf.int32), [-1]))
        if not isinstance(targets, dict):
            return images, targets, weights
        return (
            images,
            targets,
            {name: weights if name == output else tf.ones_like(weights) for name in targets},
        )

    return ds.map(weigh, num_parallel_calls=tf.data.AUTOTUNE)


def without_autotune_thread(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` without tf.data's autotuning thread (its parallel calls then default to the
    cores, its prefetch buffers still size themselves). The thread sleeps between its
    optimisations for up to a minute, and the iterator's teardown waits for it: a
    training stream that lived through a fit held the run up to a minute as ``fit``
    returned (BENCHMARKS.md, "The threshold on kept scores, …")."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def training_dataset(
    paths: Sequence[Path],
    labels: Sequence[int],
    spec: InputSpec,
    *,
    batch_size: int,
    sampling: Sampling,
    augmentation: Augmentation | None,
    seed: int = 0,
) -> tf.data.Dataset:
    """An endless stream of augmented training batches, each class drawn with the weight
    :func:`sampling_weights` gives it (each class decoded once and cached), without the
    autotuning thread (:func:`without_autotune_thread`; datasets built on it inherit that)."""
    if not paths:
        raise DatasetError("no images for this dataset", code="empty_split")
    label_array = np.asarray(labels, np.int32)
    present = sorted(set(label_array.tolist()))
    counts = [int((label_array == c).sum()) for c in present]
    streams = []
    for c in present:
        members = [p for p, label in zip(paths, label_array, strict=True) if label == c]
        ds = _decoded(members, [c] * len(members), spec).repeat()
        streams.append(ds.shuffle(min(len(members), 2_000), seed=seed + c))
    mixed = tf.data.Dataset.sample_from_datasets(
        streams, weights=sampling_weights(counts, sampling), seed=seed
    )
    return without_autotune_thread(_augmented(mixed.batch(batch_size), augmentation, seed))
