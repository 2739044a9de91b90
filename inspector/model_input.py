"""What a model takes in (and what its signatures give out), how the input is chosen from
the data, and how training varies it:
plain settings, no TensorFlow, so the API can validate a training request without
loading TensorFlow.

The input is a canvas of ``height`` × ``width`` pixels: each image is resized to fit it
with its aspect ratio kept and centred on black padding (letterboxing), so a 1:2.5 part
is never squashed into a square. :func:`choose_input` picks the canvas for a first model
from the training images themselves: the median aspect ratio, as many pixels as the
images have (never upscaled), and no more than the run's compute budget allows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspector.errors import InspectorError

# What every signature of an exported version returns, by name (inspector.export builds
# them; the TF Serving API lists and returns them).
SIGNATURE_OUTPUTS = (
    "probabilities",
    "class_names",
    "label",
    "confidence",
    "p_defect",
    "defect",
    "defect_map",
)

# Side lengths are multiples of the networks' total stride, so the class maps tile the
# canvas exactly.
STRIDE = 16
MIN_SIDE = 32
MAX_SIDE = 1024


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: a ``height`` × ``width`` canvas with ``channels`` channels."""

    height: int = 128
    width: int = 128
    channels: int = 3

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or not all(
            MIN_SIDE <= side <= MAX_SIDE for side in (self.height, self.width)
        ):
            raise InspectorError(
                f"input must be 1 or 3 channels and {MIN_SIDE}-{MAX_SIDE} px a side, not {self}",
                code="invalid_input",
            )

    @classmethod
    def square(cls, size: int, channels: int = 3) -> InputSpec:
        """A square canvas."""
        return cls(size, size, channels)

    def to_doc(self) -> dict[str, int]:
        """As stored in a version document."""
        return {"height": self.height, "width": self.width, "channels": self.channels}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> InputSpec:
        """From a version document (versions before letterboxing stored one ``size``)."""
        if "size" in doc:
            return cls(int(doc["size"]), int(doc["size"]), int(doc["channels"]))
        return cls(int(doc["height"]), int(doc["width"]), int(doc["channels"]))

    def __str__(self) -> str:
        return f"{self.height}×{self.width}×{self.channels}"


# A canvas whose aspect ratio is within 5 % of the image's is filled by stretching: the
# letterbox bars would be a pixel or two wide, and a thin black bar is a line that
# augmentation's reflected borders would copy into the part (a fake crack).
STRETCH_TOLERANCE = 1.05


@dataclass(frozen=True)
class Box:
    """Where an image lands on the canvas, in canvas pixels."""

    top: int
    left: int
    height: int
    width: int


def fit_box(image_height: int, image_width: int, spec: InputSpec) -> Box:
    """The image's place on ``spec``'s canvas: aspect ratio kept, centred (the same
    arithmetic as :func:`inspector.pipeline_data.preprocess_pixels`, in float64)."""
    scale_h, scale_w = spec.height / image_height, spec.width / image_width
    low, high = min(scale_h, scale_w), max(scale_h, scale_w)
    if high / low <= STRETCH_TOLERANCE:
        return Box(0, 0, spec.height, spec.width)
    height = min(spec.height, max(1, math.floor(image_height * low + 0.5)))
    width = min(spec.width, max(1, math.floor(image_width * low + 0.5)))
    return Box((spec.height - height) // 2, (spec.width - width) // 2, height, width)


@dataclass(frozen=True)
class ImageShape:
    """An image's height, width and channel count, as its upload record gives them."""

    height: int
    width: int
    channels: int


def _side(value: float, ceiling: int) -> int:
    aligned = max(MIN_SIDE, round(value / STRIDE) * STRIDE)
    return min(aligned, ceiling)


def _ceil_stride(value: float) -> int:
    return max(MIN_SIDE, min(MAX_SIDE, math.ceil(value / STRIDE) * STRIDE))


def choose_input(
    shapes: Sequence[ImageShape],
    *,
    samples: int,
    pixel_budget: float,
    long_side: int | None = None,
    channels: int | None = None,
) -> InputSpec:
    """The canvas for a first model trained on images of ``shapes``.

    Aspect ratio: the median of the images' height / width. Pixels: the median image's
    own (never upscaled), at most ``pixel_budget / samples`` (the training run sees
    ``samples`` images), unless ``long_side`` fixes the canvas's longer side. Channels: 1
    when every image is single-channel, else 3, unless ``channels`` fixes them. Sides are
    rounded to multiples of :data:`STRIDE`.
    """
    if not shapes:
        raise InspectorError("no images to choose a model input from", code="empty_split")
    aspect = statistics.median(s.height / s.width for s in shapes)
    if long_side is not None:
        height, width = (
            (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
        )
        ceiling_h = ceiling_w = MAX_SIDE
    else:
        native_h = statistics.median(s.height for s in shapes)
        native_w = statistics.median(s.width for s in shapes)
        pixels = min(native_h * native_w, pixel_budget / max(samples, 1))
        height, width = math.sqrt(pixels * aspect), math.sqrt(pixels / aspect)
        ceiling_h, ceiling_w = _ceil_stride(native_h), _ceil_stride(native_w)
    if channels is None:
        channels = 1 if all(s.channels == 1 for s in shapes) else 3
    return InputSpec(_side(height, ceiling_h), _side(width, ceiling_w), channels)


@dataclass(frozen=True)
class Augmentation:
    """Inspection-safe augmentation: surfaces have no up or down, defects no colour shift."""

    flip: bool = True
    rotation: float = 0.03  # fraction of a full turn (0.03 ≈ ±11°)
    shift: float = 0.1  # fraction of the image side
    zoom: float = 0.0  # scale by 2^±zoom about the centre (0.25: ×0.84-1.19)
    brightness: float = 0.15  # fraction of the 0-255 range
    contrast: float = 0.15

    @property
    def enabled(self) -> bool:
        """Whether any augmentation is on."""
        return bool(
            self.flip
            or self.rotation
            or self.shift
            or self.zoom
            or self.brightness
            or self.contrast
        )
