"""The simulator's canvas: part surfaces, the helpers defects are drawn with, light and colour.

A part is built in one float32 luminance plane: :data:`SURFACE_DRAWERS` draws a surface
(brushed metal, textured plastic) into it, the defect drawings in
:mod:`inspector.sim_defects` change it through a :class:`Patch`, and
:func:`light_and_sensor` then lights it and adds sensor noise; :func:`to_bgr` applies the
surface's colour (and a stain's) once at the end. Smooth fields (light, highlights) are
computed on a coarse grid and resized up, so a 1-megapixel part takes a few tens of
milliseconds. Every size in a drawing is a fraction of the image's short side, so a part
looks the same at 64 px and at 4000 px. :mod:`inspector.simulate` puts these together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # BGR weights of Rec. 601 luma


# --- drawing helpers ----------------------------------------------------------------------


def _coarse_grid(w: int, h: int, cells: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of a coarse grid over the image; the long side spans [-1, 1]."""
    long = max(w, h)
    gw, gh = max(2, round(cells * w / long)), max(2, round(cells * h / long))
    x = np.linspace(-w / long, w / long, gw, dtype=np.float32)
    y = np.linspace(-h / long, h / long, gh, dtype=np.float32)
    return np.meshgrid(x, y)


def _up(field_: np.ndarray, w: int, h: int) -> np.ndarray:
    return cv2.resize(field_, (w, h), interpolation=cv2.INTER_CUBIC)


def _streaks(
    rng: np.random.Generator, w: int, h: int, angle: float, along: float, across: float
) -> np.ndarray:
    """Unit noise stretched ``along`` px in direction ``angle`` and ``across`` px wide.

    One inverse-mapped warp from a small noise array does the stretch and the rotation
    together, so no full-size intermediate is ever made.
    """
    diag = math.hypot(w, h)
    cols, rows = int(diag / along) + 3, int(diag / across) + 3
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    c, s = math.cos(angle), math.sin(angle)
    cu, cv = (w - 1) / 2, (h - 1) / 2
    src = np.array(
        [
            [c / along, s / along, (cols - 1) / 2 - (c * cu + s * cv) / along],
            [-s / across, c / across, (rows - 1) / 2 - (-s * cu + c * cv) / across],
        ],
        np.float32,
    )
    return cv2.warpAffine(
        noise,
        src,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )


class Patch:
    """An 8-bit mask over the bounding box of some points, for anti-aliased drawing.

    OpenCV anti-aliases only on 8-bit images, so defects are drawn here and blended
    into the float image; the box keeps the work proportional to the defect, not the image.
    """

    def __init__(self, shape: tuple[int, ...], points: np.ndarray, pad: float) -> None:
        h, w = shape[:2]
        x0 = min(max(0, math.floor(points[:, 0].min() - pad)), w - 1)
        y0 = min(max(0, math.floor(points[:, 1].min() - pad)), h - 1)
        x1 = max(min(w, math.ceil(points[:, 0].max() + pad) + 1), x0 + 1)
        y1 = max(min(h, math.ceil(points[:, 1].max() + pad) + 1), y0 + 1)
        self.box = (slice(y0, y1), slice(x0, x1))
        self.origin = np.array([x0, y0], np.float64)
        self.shape = (y1 - y0, x1 - x0)

    def mask(self) -> np.ndarray:
        return np.zeros(self.shape, np.uint8)

    def fixed(self, points: np.ndarray) -> np.ndarray:
        """Points in patch coordinates with 4 fractional bits (OpenCV's ``shift=4``)."""
        return np.round((points - self.origin) * 16).astype(np.int32)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates of every patch pixel."""
        ys, xs = np.mgrid[self.box[0], self.box[1]]
        return xs.astype(np.float32), ys.astype(np.float32)


def polyline(
    mask: np.ndarray, points: np.ndarray, thickness: np.ndarray, value: np.ndarray
) -> None:
    # Segment by segment, so thickness and intensity can change along the line.
    for k in range(len(points) - 1):
        p, q = points[k], points[k + 1]
        cv2.line(
            mask,
            (int(p[0]), int(p[1])),
            (int(q[0]), int(q[1])),
            int(value[k]),
            int(thickness[k]),
            cv2.LINE_AA,
            4,
        )


def alpha(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) * np.float32(1 / 255)


# --- surfaces ---------------------------------------------------------------------------


@dataclass
class Surface:
    lum: np.ndarray  # float32 HxW on a 0-255 scale
    tint: np.ndarray  # BGR gains with luma 1
    level: float  # the mean luminance the texture varies around
    grain: float  # extra per-pixel noise (sigma, grey levels)
    small: bool = False  # simulate.DEFECT_SIZES "small": defects a few px, any image size


def _metal(rng: np.random.Generator, w: int, h: int) -> Surface:
    """Brushed metal: fine streaks along one direction, broad bands, a specular band."""
    short = min(w, h)
    level = float(rng.uniform(105, 170))
    angle = float(rng.uniform(0, math.pi))
    lum = _streaks(rng, w, h, angle, short * rng.uniform(0.08, 0.35), max(1.0, short / 300))
    lum *= np.float32(rng.uniform(5, 11))
    lum += _streaks(rng, w, h, angle, short * 0.6, short * rng.uniform(0.015, 0.04)) * np.float32(
        rng.uniform(3, 8)
    )
    # A brushed finish smears the highlight across the brushing direction.
    x, y = _coarse_grid(w, h)
    x0, y0 = rng.uniform(-0.6, 0.6, 2)
    across = (x - x0) * math.cos(angle) + (y - y0) * math.sin(angle)
    band = np.exp(-((across / rng.uniform(0.15, 0.45)) ** 2)) * rng.uniform(10, 45)
    lum += _up(band.astype(np.float32) + np.float32(level), w, h)
    warm = rng.uniform(-0.04, 0.04)
    tint = np.array([1 - warm, 1, 1 + warm], np.float32)
    return Surface(lum, tint / float(tint @ LUMA), level, 0.0)


def _plastic(rng: np.random.Generator, w: int, h: int) -> Surface:
    """Moulded plastic: a flat colour, orange-peel bumps lit from one side, a soft gloss."""
    short = min(w, h)
    if rng.random() < 0.3:
        tint = np.ones(3, np.float32)
    else:
        hsv = np.array(
            [[[rng.uniform(0, 180), rng.uniform(60, 190), rng.uniform(120, 230)]]], np.uint8
        )
        bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) + 1
        tint = bgr / float(bgr @ LUMA)
    # Keep every channel below saturation, and bright enough that dark defects show.
    level = float(min(rng.uniform(80, 190), 230 / tint.max()))

    cell = short * rng.uniform(0.008, 0.016)
    bumps = rng.standard_normal((int(h / cell) + 3, int(w / cell) + 3), dtype=np.float32)
    light = rng.uniform(0, 2 * math.pi)
    shade = math.cos(light) * cv2.Sobel(bumps, cv2.CV_32F, 1, 0) + math.sin(light) * cv2.Sobel(
        bumps, cv2.CV_32F, 0, 1
    )
    shade *= np.float32(rng.uniform(2.5, 6) / (shade.std() + 1e-6))
    lum = _up(shade, w, h)

    x, y = _coarse_grid(w, h)
    mottle = cv2.resize(rng.standard_normal((5, 5), dtype=np.float32), x.shape[::-1])
    x0, y0 = rng.uniform(-0.7, 0.7, 2)
    gloss = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * rng.uniform(0.15, 0.45) ** 2))
    smooth = gloss * rng.uniform(8, 35) + mottle * rng.uniform(1.5, 5) + level
    lum += _up(smooth.astype(np.float32), w, h)
    return Surface(lum, tint, level, float(rng.uniform(1, 3)))


SURFACE_DRAWERS: dict[str, Callable[[np.random.Generator, int, int], Surface]] = {
    "metal": _metal,
    "plastic": _plastic,
}


# --- light, sensor, colour ----------------------------------------------------------------


@dataclass
class Stain:
    """A discoloured region a defect leaves, which :func:`to_bgr` colours."""

    box: tuple[slice, slice]
    weight: np.ndarray  # how much of the stain's colour each pixel of the box takes
    tint: np.ndarray


def light_and_sensor(rng: np.random.Generator, surface: Surface) -> np.ndarray:
    """Apply contrast, a lighting gradient and vignette, sometimes blur, then sensor noise."""
    lum = surface.lum
    h, w = lum.shape
    x, y = _coarse_grid(w, h)
    towards = rng.uniform(0, 2 * math.pi)
    gain = 1 + rng.uniform(0.05, 0.25) * (x * math.cos(towards) + y * math.sin(towards))
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    gain *= 1 - rng.uniform(0, 0.3) * ((x - cx) ** 2 + (y - cy) ** 2) / 2
    gain *= rng.uniform(0.8, 1.15)
    contrast = np.float32(rng.uniform(0.85, 1.2))
    lum *= contrast
    lum += np.float32(surface.level * (1 - contrast))
    lum *= _up(gain.astype(np.float32), w, h)
    if rng.random() < 0.25:
        lum = cv2.GaussianBlur(lum, (0, 0), min(w, h) * rng.uniform(0.002, 0.004))
    sigma = math.hypot(rng.uniform(1.5, 4.5), surface.grain)
    lum += rng.standard_normal((h, w), dtype=np.float32) * np.float32(sigma)
    np.maximum(lum, 0, out=lum)
    return lum


def to_bgr(lum: np.ndarray, tint: np.ndarray, stain: Stain | None) -> np.ndarray:
    # convertScaleAbs saturates to 0-255 in one SIMD pass per channel (lum is already >= 0).
    image = cv2.merge([cv2.convertScaleAbs(lum, alpha=float(g)) for g in tint])
    if stain is not None:
        weight = stain.weight[..., None]
        gains = tint * (1 - weight) + stain.tint * weight
        image[stain.box] = np.clip(lum[stain.box][..., None] * gains, 0, 255).astype(np.uint8)
    return image
