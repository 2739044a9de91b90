"""Synthetic defects drawn into twins of good training parts, with where they are: a
dense signal that teaches the trunk what a defect a few pixels across looks like.

A defect one cell of 400 wide, labelled only for the whole image, is a needle: through
the class maps' pooling its one cell gets 1/400 of the gradient, and a few hundred
augmented steps from scratch find it by chance or not at all (BENCHMARKS.md, "Why the
small defects are not learnt"). So while it trains, the model also answers a question
whose answer it is told cell by cell. Beside a share of the good parts of each batch goes
a twin of the part with a generic defect drawn in — a dot or a short stroke (a capsule
of random length, width, angle and place), darker or brighter than the part by 1-4
times its spread, or, for a share of the twins (``synthetic_blobs``, a third by
default), a soft blob 4-16 px in radius (a stain, a dent) at 0.7-2.5 times — and a 1×1
convolution on the trunk's features (``anomaly``, used only in training) learns which
cells hold it. A twin is not a good part: the class loss asks the model to call it
defective, of whichever defect class, so "unlike a good part" means
"not ok" from the first step; the clean part stays in the batch, so the good class keeps
its share. A twin the model judges below ``give_up`` (P(defect), 0.2 by default) no
longer pulls the classes: on a textured part many faint twins stay unseen, and asking
for them taught the model to doubt every good part (BENCHMARKS.md, "Twins the model
cannot see"). The parts of defect classes leave the cell loss (nobody knows where their
defect is). The exported model is the classifier alone: what the trunk learnt is in its
features, which the class maps then only have to weigh.

Nothing here is chosen per line: the same shapes for every line, in units of the part's
own spread (the scale :class:`inspector.modeling.Standardize` gives the network).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from inspector.batch_draws import Uniform, map_batches
from inspector.modeling import FEATURES, STANDARDIZE_FLOOR

ANOMALY = "anomaly"
PROBABILITIES = "probabilities"
IGNORE = -1.0  # a cell target the cell loss skips
PASTED = -1  # the class target of a twin: a defect, not which
MAX_HALF_LENGTH = 30.0  # px: strokes up to 60 px long
RADIUS = (0.6, 3.5)  # px, log-uniform: from a hair to a pit a few pixels across
AMPLITUDE = (1.0, 4.0)  # × (the part's spread + Standardize's floor)
# A share of the twins (``blobs``) may get a soft blob instead: a stain or a dent.
BLOB_RADIUS = (4.0, 16.0)  # px, log-uniform
BLOB_AMPLITUDE = (0.7, 2.5)  # × (the part's spread + Standardize's floor)


def _log_uniform(generator: Uniform, n: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return tf.exp(generator.uniform([n, 1, 1], math.log(bounds[0]), math.log(bounds[1])))


def _shapes(
    n: tf.Tensor, height: int, width: int, generator: Uniform, blobs: float = 0.0
) -> tuple[tf.Tensor, tf.Tensor]:
    """[N, height, width] coverage (0-1, antialiased) of one random shape per image, and
    [N] whether it is a blob (a share ``blobs`` of them). Of the others, half are dots
    (length 0), half strokes up to 2·MAX_HALF_LENGTH long; a blob is a soft ellipse with
    a flat core."""
    cx = generator.uniform([n, 1, 1], 0.0, float(width))
    cy = generator.uniform([n, 1, 1], 0.0, float(height))
    angle = generator.uniform([n, 1, 1], 0.0, math.pi)
    stroke = tf.cast(generator.uniform([n, 1, 1]) < 0.5, tf.float32)
    half = stroke * generator.uniform([n, 1, 1], 2.0, MAX_HALF_LENGTH)
    radius = _log_uniform(generator, n, RADIUS)
    xs = tf.range(width, dtype=tf.float32)[tf.newaxis, tf.newaxis, :] + 0.5 - cx
    ys = tf.range(height, dtype=tf.float32)[tf.newaxis, :, tf.newaxis] + 0.5 - cy
    along = xs * tf.cos(angle) + ys * tf.sin(angle)
    across = -xs * tf.sin(angle) + ys * tf.cos(angle)
    beyond = along - tf.clip_by_value(along, -half, half)
    capsule = tf.clip_by_value(radius + 0.5 - tf.sqrt(beyond**2 + across**2), 0.0, 1.0)
    if blobs <= 0:  # no draws for blobs: the batches are those measured without them
        return capsule, tf.zeros([n], tf.bool)
    blob = generator.uniform([n, 1, 1]) < blobs
    blob_radius = _log_uniform(generator, n, BLOB_RADIUS)
    aspect = generator.uniform([n, 1, 1], 1.0, 1.6)
    ellipse = tf.sqrt((along / (blob_radius * aspect)) ** 2 + (across / blob_radius) ** 2)
    soft = tf.clip_by_value(2.0 * (1.0 - ellipse), 0.0, 1.0)
    return tf.where(blob, soft, capsule), tf.reshape(blob, [n])


def _on_part(images: tf.Tensor, coverage: tf.Tensor) -> tf.Tensor:
    """[N] whether the capsule lies on the part, not on a letterbox bar (black canvas)."""
    brightness = tf.reduce_mean(images, axis=-1)
    inside = tf.reduce_sum(coverage * brightness, axis=[1, 2])
    return inside > tf.reduce_sum(coverage, axis=[1, 2])  # above 1 grey level on average


def cell_targets(coverage: tf.Tensor, cell: int) -> tf.Tensor:
    """[N, height/cell, width/cell]: 1 where a cell is at least half covered by the drawn
    defect, :data:`IGNORE` beside such a cell (the trunk sees across cell borders), else 0."""
    covered = tf.nn.max_pool2d(coverage[..., tf.newaxis], cell, cell, "VALID")[..., 0]
    hit = tf.cast(covered >= 0.5, tf.float32)
    near = tf.nn.max_pool2d(hit[..., tf.newaxis], 3, 1, "SAME")[..., 0]
    return tf.where((near > 0) & (hit == 0), IGNORE, hit)


def paste(
    images: tf.Tensor,
    labels: tf.Tensor,
    good: tf.Tensor,
    generator: Uniform,
    *,
    rate: float,
    cell: int,
    blobs: float = 0.0,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """One augmented batch (float32 [N, H, W, C], 0-255; int labels; ``good`` a bool per
    class) → the batch as it was, followed by a twin of about ``rate`` of its good parts
    with a defect drawn in; and the targets of the two outputs: the labels (:data:`PASTED`
    for a twin) and each cell's target.

    The clean part stays in the batch beside its twin, so the good class keeps its share
    of every batch (with the twins in its place, the few clean good parts left taught the
    model to call everything defective) and the network sees the very same part with and
    without the defect."""
    n = tf.shape(images)[0]
    height, width = int(images.shape[1]), int(images.shape[2])
    coverage, blob = _shapes(n, height, width, generator, blobs)
    is_good = tf.gather(good, labels)
    chosen = is_good & (generator.uniform([n]) < rate) & _on_part(images, coverage)
    spread = tf.math.reduce_std(images, axis=[1, 2, 3])
    sign = tf.where(generator.uniform([n]) < 0.5, -1.0, 1.0)
    times = generator.uniform([n], *AMPLITUDE)
    if blobs > 0:
        times = tf.where(blob, generator.uniform([n], *BLOB_AMPLITUDE), times)
    amplitude = sign * times * (spread + STANDARDIZE_FLOOR)
    picked = tf.reshape(tf.where(chosen), [-1])
    coverage = tf.gather(coverage, picked)
    twins = (
        tf.gather(images, picked)
        + (tf.gather(amplitude, picked)[:, None, None] * coverage)[..., tf.newaxis]
    )
    clean = tf.zeros([n, height // cell, width // cell])
    cells = tf.concat(
        [
            tf.where(is_good[:, None, None], clean, IGNORE),
            cell_targets(coverage, cell),
        ],
        axis=0,
    )
    classes = tf.concat([labels, tf.fill(tf.shape(picked), tf.constant(PASTED, labels.dtype))], 0)
    batch = tf.concat([images, tf.clip_by_value(twins, 0.0, 255.0)], axis=0)
    return batch, {PROBABILITIES: classes, ANOMALY: cells}


def class_loss(
    good: Sequence[bool], give_up: float = 0.0
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Cross-entropy per image: −log P(its class), and for a twin (:data:`PASTED`)
    −log P(defect), the sum over the defect classes (it is defective; which defect it is,
    nobody knows) — but capped at −log ``give_up``, with no gradient beyond: a twin the
    model judges below that is one it cannot see, and asking it to is asking it to doubt
    every good part."""
    defect = tf.constant([0.0 if g else 1.0 for g in good])
    floor = max(float(give_up), 1e-7)

    def loss(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        p = tf.clip_by_value(probabilities, 1e-7, 1.0)
        known = tf.gather(p, tf.maximum(labels, 0), batch_dims=1)
        p_defect = tf.clip_by_value(tf.reduce_sum(p * defect, axis=-1), floor, 1.0)
        return -tf.math.log(tf.where(labels >= 0, known, p_defect))

    return loss


def class_accuracy(good: Sequence[bool]) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """1 per image judged its class (a twin: judged any defect)."""
    defect = tf.constant([not g for g in good])

    def accuracy(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        right = tf.where(labels >= 0, predicted == labels, tf.gather(defect, predicted))
        return tf.cast(right, tf.float32)

    return accuracy


def cell_loss(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of the anomaly logits, the mean over defect cells and the mean
    over clean cells weighed equally (a batch holds a few defect cells among thousands);
    :data:`IGNORE` cells are skipped. 0 when no cell counts."""
    logits = tf.reshape(logits, tf.shape(targets))
    positive = tf.cast(targets > 0.5, tf.float32)
    negative = tf.cast(tf.equal(targets, 0.0), tf.float32)
    loss = tf.nn.sigmoid_cross_entropy_with_logits(positive, logits)

    def mean(mask: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(mask * loss) / tf.maximum(tf.reduce_sum(mask), 1.0)

    return 0.5 * (mean(positive) + mean(negative))


def training_model(model: keras.Model) -> keras.Model:
    """``model`` with a second output: the anomaly logits of each feature cell (a new 1×1
    convolution on :data:`inspector.modeling.FEATURES`); the layers are shared."""
    features = model.get_layer(FEATURES).output
    anomaly = keras.layers.Conv2D(1, 1, name=ANOMALY)(features)
    return keras.Model(model.inputs, {PROBABILITIES: model.outputs[0], ANOMALY: anomaly})


def losses(good: Sequence[bool], give_up: float = 0.0) -> tuple[dict, dict]:
    """The losses and metrics of :func:`training_model`'s two outputs, by output name."""
    return (
        {PROBABILITIES: class_loss(good, give_up), ANOMALY: cell_loss},
        {PROBABILITIES: [class_accuracy(good)]},
    )


def feature_cell(model: keras.Model) -> int:
    """The side, in canvas pixels, of one cell of the model's feature map."""
    height = int(model.inputs[0].shape[1])
    return height // int(model.get_layer(FEATURES).output.shape[1])


def with_targets(
    ds: tf.data.Dataset,
    good: list[bool],
    *,
    rate: float,
    cell: int,
    seed: int,
    blobs: float = 0.0,
) -> tf.data.Dataset:
    """A training stream of (images, labels) batches → pasted images with both outputs'
    targets."""
    flags = tf.constant(good)
    return map_batches(
        ds,
        seed + 7919,
        lambda draws, images, labels: paste(
            images, labels, flags, draws, rate=rate, cell=cell, blobs=blobs
        ),
    ).prefetch(tf.data.AUTOTUNE)


def without_cells(ds: tf.data.Dataset, cell: int) -> tf.data.Dataset:
    """Validation (images, labels) batches with every cell ignored: the class loss only."""

    def targets(images: tf.Tensor, labels: tf.Tensor):
        shape = tf.shape(images)
        cells = tf.fill([shape[0], shape[1] // cell, shape[2] // cell], IGNORE)
        return images, {PROBABILITIES: labels, ANOMALY: cells}

    return ds.map(targets, num_parallel_calls=tf.data.AUTOTUNE)
