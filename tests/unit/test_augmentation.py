"""The training pipeline's augmentation: one affine resampling and one photometric
expression per image, with the distributions its settings name."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from inspector.model_input import Augmentation, InputSpec
from inspector.pipeline_data import augment_batch, make_dataset
from inspector.simulate import LineSimulator, encode

OFF = {
    "flip": False,
    "rotation": 0.0,
    "shift": 0.0,
    "zoom": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
}


def _batch(n: int = 8, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)


def _run(images: np.ndarray, seed: int = 1, **settings: float | bool) -> np.ndarray:
    aug = Augmentation(**{**OFF, **settings})
    generator = tf.random.Generator.from_seed(seed)
    return augment_batch(tf.constant(images), aug, generator).numpy()


def test_with_everything_off_the_images_pass_unchanged():
    images = _batch()
    out = _run(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, images.astype(np.float32), atol=1e-3)


def test_flips_give_each_image_one_of_its_four_mirrorings_and_all_of_them_occur():
    images = _batch(n=64)
    out = _run(images, flip=True)
    seen = set()
    for original, flipped in zip(images.astype(np.float32), out, strict=True):
        variants = {
            "none": original,
            "left-right": original[:, ::-1],
            "up-down": original[::-1, :],
            "both": original[::-1, ::-1],
        }
        matches = [k for k, v in variants.items() if np.allclose(v, flipped, atol=1e-3)]
        assert matches, "a flipped image is not a mirroring of its original"
        seen.add(matches[0])
    assert seen == {"none", "left-right", "up-down", "both"}


def test_a_shift_moves_the_content_by_at_most_the_configured_fraction():
    size = 40
    images = np.zeros((32, size, size, 1), np.uint8)
    images[:, 18:22, 18:22] = 255  # a bright square in the centre
    out = _run(images, shift=0.1)
    moved = []
    for image in out:
        ys, xs = np.nonzero(image[..., 0] > 128)
        moved.append((abs(ys.mean() - 19.5), abs(xs.mean() - 19.5)))
    moved_arr = np.array(moved)
    assert moved_arr.max() <= 0.1 * size + 0.5
    assert moved_arr.max() > 1.0, "nothing moved"


def test_a_rotation_keeps_the_centre_and_turns_an_off_centre_mark():
    size = 41
    images = np.zeros((32, size, size, 1), np.uint8)
    images[:, 20, 20] = 255
    images[:, 20, 35:38] = 255  # a mark 15-17 px right of the centre
    out = _run(images, rotation=0.05)
    angles = []
    for image in out:
        assert image[20, 20, 0] > 100, "the centre moved"
        ys, xs = np.nonzero(image[..., 0] > 60)
        far = (xs - 20) ** 2 + (ys - 20) ** 2 > 100
        angles.append(np.degrees(np.arctan2(ys[far].mean() - 20, xs[far].mean() - 20)))
    angles_arr = np.abs(np.array(angles))
    assert angles_arr.max() <= 0.05 * 360 + 2
    assert angles_arr.max() > 3, "nothing turned"


def test_a_zoom_scales_a_centred_square_within_its_range_both_ways():
    size = 41
    images = np.zeros((64, size, size, 1), np.uint8)
    images[:, 15:26, 15:26] = 255  # 11 px wide, centred
    out = _run(images, zoom=0.25)
    widths = np.array([(image[20, :, 0] > 128).sum() for image in out])
    assert widths.min() >= 11 * 2**-0.25 - 1.5 and widths.max() <= 11 * 2**0.25 + 1.5
    assert widths.min() < 11 and widths.max() > 11, "it did not shrink and grow"
    assert all(image[20, 20, 0] > 200 for image in out), "the centre moved"


@pytest.mark.parametrize("setting", ["brightness", "contrast"])
def test_photometric_jitter_stays_in_range_and_varies_per_image(setting):
    images = np.full((64, 16, 16, 1), 100, np.uint8)
    images[:, :8] = 160
    out = _run(images, **{setting: 0.2})
    assert out.min() >= 0 and out.max() <= 255
    means = out.mean(axis=(1, 2, 3))
    spreads = out.max(axis=(1, 2, 3)) - out.min(axis=(1, 2, 3))
    if setting == "brightness":
        assert np.abs(means - 130).max() <= 0.2 * 255 + 1e-3
        assert means.std() > 5
        np.testing.assert_allclose(spreads, 60, atol=1e-3)
    else:
        np.testing.assert_allclose(means, 130, atol=1e-3)
        assert spreads.min() >= 60 * 0.8 - 1e-3 and spreads.max() <= 60 * 1.2 + 1e-3
        assert spreads.std() > 1


def test_a_tall_canvas_is_shifted_by_its_own_sides():
    images = np.zeros((32, 64, 24, 1), np.uint8)
    images[:, 30:34, 10:14] = 255
    out = _run(images, shift=0.1)
    ys, xs = zip(*[np.nonzero(image[..., 0] > 128) for image in out], strict=True)
    dy = np.array([abs(y.mean() - 31.5) for y in ys])
    dx = np.array([abs(x.mean() - 11.5) for x in xs])
    assert dy.max() <= 0.1 * 64 + 0.5 and dx.max() <= 0.1 * 24 + 0.5
    assert dy.max() > 0.1 * 24 + 0.5, "the long side moved only as far as the short one"


def test_the_training_dataset_augments_and_the_evaluation_dataset_does_not(tmp_path):
    spec = InputSpec.square(32, channels=1)
    paths = []
    for i, part in enumerate(LineSimulator(size=32, seed=3).parts(8)):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encode(part.image, "png"))
        paths.append(path)
    labels = [0] * len(paths)

    def first_epoch(training: bool) -> np.ndarray:
        ds = make_dataset(
            paths, labels, spec, batch_size=8, training=training, augmentation=Augmentation()
        )
        return next(iter(ds))[0].numpy()

    plain = first_epoch(False)
    assert plain.dtype == np.float32 and plain.shape == (8, 32, 32, 1)
    np.testing.assert_array_equal(plain, first_epoch(False))
    augmented = first_epoch(True)
    assert augmented.shape == plain.shape
    assert not np.allclose(np.sort(augmented.ravel()), np.sort(plain.ravel()))


def test_the_training_stream_draws_every_class_equally_however_rare(tmp_path):
    from inspector.pipeline_data import sampling_weights, training_dataset

    paths, labels = [], []
    for i, part in enumerate(LineSimulator(size=32, seed=4).parts(40)):
        path = tmp_path / f"{i}.png"
        path.write_bytes(encode(part.image, "png"))
        paths.append(path)
        labels.append(0 if i < 36 else 1)  # 36 good parts, 4 defective ones
    ds = training_dataset(
        paths,
        labels,
        InputSpec.square(32, 1),
        batch_size=50,
        sampling="balanced",
        augmentation=None,
    )
    drawn = np.concatenate([y.numpy() for _, y in ds.take(8)])
    assert abs(drawn.mean() - 0.5) < 0.1  # 1 in 10 uploaded, half of what trains
    assert sampling_weights([36, 4], "natural") == [0.9, 0.1]
    assert sampling_weights([36, 4], "sqrt") == pytest.approx([6 / 8, 2 / 8])


@pytest.mark.parametrize(
    ("sampling", "good", "defect"), [("balanced", 4 / 6, 4 / 2), ("natural", 1.0, 1.0)]
)
def test_validation_images_weigh_as_training_draws_their_class(sampling, good, defect):
    import tensorflow as tf

    from inspector.pipeline_data import weighted_like_sampling

    labels = np.array([0, 0, 0, 1])  # three good parts, one defect: 2 of each drawn
    images = np.zeros((4, 2, 2, 1), "float32")
    plain = tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)
    _, _, weights = zip(*weighted_like_sampling(plain, labels, sampling), strict=True)
    assert np.concatenate(weights).tolist() == pytest.approx([good] * 3 + [defect])
    two = tf.data.Dataset.from_tensor_slices(
        (images, {"classes": labels, "cells": np.zeros((4, 1))})
    ).batch(4)
    ((_, _, named),) = list(weighted_like_sampling(two, labels, sampling, "classes"))
    assert named["classes"].numpy().tolist() == pytest.approx([good] * 3 + [defect])
    assert named["cells"].numpy().tolist() == [1.0] * 4


def test_the_training_stream_runs_without_the_autotuning_thread(tmp_path):
    # Its timed sleep held up the teardown of a fit's stream for up to a minute.
    import tensorflow as tf

    from inspector import synthetic_defects
    from inspector.pipeline_data import training_dataset, without_autotune_thread

    paths = []
    for i, part in enumerate(LineSimulator(size=32, seed=5).parts(4)):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode(part.image, "png"))
    ds = training_dataset(
        paths,
        [0, 0, 1, 1],
        InputSpec.square(32, 1),
        batch_size=4,
        sampling="balanced",
        augmentation=None,
    )
    assert ds.options().autotune.enabled is False
    # The fit's stream (synthetic defects drawn in, prefetched) inherits it.
    pasted = synthetic_defects.with_targets(ds, [True, False], rate=0.5, cell=8, seed=0)
    assert pasted.options().autotune.enabled is False
    assert without_autotune_thread(tf.data.Dataset.range(3)).options().autotune.enabled is False
    images, labels = next(iter(ds))
    assert images.shape == (4, 32, 32, 1) and set(labels.numpy().tolist()) <= {0, 1}
