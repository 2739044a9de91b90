"""The model's input: chosen from the images, letterboxed in the graph exactly where the
Python geometry says, and legacy square inputs still read."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from inspector.model_input import ImageShape, InputSpec, choose_input, fit_box
from inspector.pipeline_data import preprocess_pixels


def test_the_canvas_keeps_the_parts_aspect_ratio_and_never_upscales():
    tall = [ImageShape(1260, 500, 1)] * 5
    spec = choose_input(tall, samples=16_000, pixel_budget=2e9)
    assert spec.channels == 1
    assert spec.height % 16 == 0 and spec.width % 16 == 0
    assert spec.height / spec.width == pytest.approx(1260 / 500, rel=0.08)
    assert spec.height * spec.width <= 2e9 / 16_000 * 1.1
    small = choose_input([ImageShape(100, 60, 3)] * 3, samples=100, pixel_budget=2e9)
    assert (small.height, small.width, small.channels) == (96, 64, 3)  # its own size, aligned


def test_a_fixed_long_side_and_channels_override_the_choice():
    spec = choose_input(
        [ImageShape(400, 200, 1)], samples=10, pixel_budget=1, long_side=320, channels=3
    )
    assert (spec.height, spec.width, spec.channels) == (320, 160, 3)
    wide = choose_input([ImageShape(100, 300, 1)], samples=10, pixel_budget=1, long_side=288)
    assert (wide.height, wide.width) == (96, 288)


def test_mixed_grey_and_colour_images_get_three_channels():
    shapes = [ImageShape(64, 64, 1), ImageShape(64, 64, 3)]
    assert choose_input(shapes, samples=1, pixel_budget=1e9).channels == 3


def test_legacy_square_inputs_are_read():
    assert InputSpec.from_doc({"size": 128, "channels": 3}) == InputSpec(128, 128, 3)
    assert InputSpec.from_doc(InputSpec(64, 32, 1).to_doc()) == InputSpec(64, 32, 1)


@pytest.mark.parametrize(
    ("height", "width"), [(90, 30), (30, 90), (64, 33), (61, 31), (250, 100), (101, 17)]
)
def test_the_graph_letterboxes_where_fit_box_says(height, width):
    spec = InputSpec(64, 32, 1)
    box = fit_box(height, width, spec)
    image = np.full((height, width, 1), 200, np.uint8)
    canvas = preprocess_pixels(tf.constant(image), spec).numpy()[..., 0]
    inside = np.zeros_like(canvas, bool)
    inside[box.top : box.top + box.height, box.left : box.left + box.width] = True
    assert (canvas[inside] > 150).all()
    assert (canvas[~inside] == 0).all()


def test_a_nearly_matching_aspect_ratio_is_stretched_not_barred():
    # Bars of a pixel or two would be thin dark lines that augmentation mirrors inward.
    box = fit_box(1258, 500, InputSpec(448, 176, 1))
    assert (box.top, box.left, box.height, box.width) == (0, 0, 448, 176)
