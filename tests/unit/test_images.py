"""Image validation: cheapest check first, every rejection with its code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector import images
from inspector.errors import ImageRejected, ImageTooLarge
from tests.factories import part_image, png_bomb


@pytest.mark.parametrize("fmt", ["jpeg", "png", "bmp", "tiff"])
def test_header_dimensions_match_the_decoded_image(fmt):
    image = np.zeros((37, 53, 3), np.uint8)
    _ok, buf = cv2.imencode(
        {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif"}[fmt], image
    )
    data = buf.tobytes()
    assert images.sniff_format(data) == fmt
    assert images.header_size(data, fmt) == (53, 37)
    info = images.inspect_upload(data, images.ImageLimits())
    assert (info.width, info.height, info.channels, info.format) == (53, 37, 3, fmt)
    assert info.image_id == images.content_id(data)


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = png_bomb()
    with pytest.raises(ImageTooLarge, match="30000×30000"):
        images.inspect_upload(bomb, images.ImageLimits(max_pixels=50_000_000))


def test_the_side_limit_holds_for_thin_images():
    with pytest.raises(ImageTooLarge):
        images.check_limits(25_000, 10, images.ImageLimits(max_pixels=10**9, max_side=20_000))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_body"),
        (b"hello world", "unsupported_format"),
        (b"GIF89a" + bytes(30), "unsupported_format"),
        (b"\xff\xd8\xff\xe0" + bytes(10), "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(8), "corrupt_image"),
        (b"BM" + (10_000).to_bytes(4, "little") + bytes(30), "corrupt_image"),
        (b"II*\x00" + (8).to_bytes(4, "little") + bytes(2), "corrupt_image"),
    ],
    ids=["empty", "text", "gif", "jpeg-header-only", "png-no-ihdr", "bmp-short", "tiff-no-dims"],
)
def test_rejections_carry_a_code(data, code):
    with pytest.raises(ImageRejected) as caught:
        images.inspect_upload(data, images.ImageLimits())
    assert caught.value.code == code


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_images_are_refused_though_opencv_would_decode_them(fmt):
    data = part_image("scratch", seed=1, size=128, fmt=fmt)
    truncated = data[: len(data) * 2 // 3]
    with pytest.raises(ImageRejected) as caught:
        images.inspect_upload(truncated, images.ImageLimits())
    assert caught.value.code == "corrupt_image"


def test_canonical_copy_keeps_the_aspect_ratio_and_colour_mode():
    image = np.full((300, 600, 3), 128, np.uint8)
    rgb = images.canonicalise(image, 128, "rgb")
    gray = images.canonicalise(image, 128, "gray")
    assert rgb.shape == (64, 128, 3)
    assert gray.shape == (64, 128)
    sixteen_bit = np.full((10, 20), 65535, np.uint16)
    assert images.canonicalise(sixteen_bit, 40, "rgb").dtype == np.uint8


def test_statistics_separate_bright_flat_and_sharp_images():
    flat = np.full((64, 64), 200, np.uint8)
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    flat_stats, checker_stats = images.image_stats(flat), images.image_stats(checker)
    assert flat_stats["brightness"] == pytest.approx(200)
    assert flat_stats["contrast"] == pytest.approx(0)
    assert checker_stats["sharpness"] > 1000 > flat_stats["sharpness"]
