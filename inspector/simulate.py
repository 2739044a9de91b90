"""A synthetic production line, and a camera that uploads it to the API.

:class:`LineSimulator` draws part surfaces (brushed metal, textured plastic) under
varying light, either clean (``ok``) or with one defect (scratch, pit, crack, stain),
using only NumPy and OpenCV. :func:`run_simulation` plays such a line against
``POST /v1/images`` the way a camera would: at a steady rate, from several threads,
retrying transient failures so that an API restart loses no part.

Images are built in one float32 luminance plane; smooth fields (light, highlights) are
computed on a coarse grid and resized up, and colour is applied once at the end, so a
1-megapixel part takes a few tens of milliseconds. Every size in a drawing is a
fraction of the image's short side, so a part looks the same at 64 px and at 4000 px,
and a defect stays visible after the training pipeline downscales it.
"""

from __future__ import annotations

import itertools
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cv2
import httpx
import numpy as np

from inspector import images

CLASSES: tuple[str, ...] = ("ok", "scratch", "pit", "crack", "stain")
SURFACES: tuple[str, ...] = ("metal", "plastic")
DEFAULT_MIX: dict[str, float] = {
    "ok": 0.8,
    "scratch": 0.05,
    "pit": 0.05,
    "crack": 0.05,
    "stain": 0.05,
}

_MIN_SIDE = 16
_LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # BGR weights of Rec. 601 luma

Size = int | tuple[int, int]
# "normal": every size in a drawing is a fraction of the part; "small": pits 3-5 px across
# and 1-px scratches and cracks whatever the image size, as on parts whose defects are a
# few pixels of a camera image (a model that squashes the image loses them).
DEFECT_SIZES = ("normal", "small")


# --- the mix of classes -----------------------------------------------------------------


def _normalise_mix(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(CLASSES))
    if unknown:
        raise ValueError(
            f"unknown class {', '.join(map(repr, unknown))} in the mix; "
            f"the known classes are {', '.join(CLASSES)}"
        )
    for name, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"the weight of {name!r} must be a finite number >= 0, not {weight}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(
            f"the mix weights sum to {total}; give at least one of {', '.join(CLASSES)} "
            "a positive weight"
        )
    return {name: weights.get(name, 0.0) / total for name in CLASSES}


def parse_size(spec: str) -> Size:
    """``"256"`` (square) or ``"320x128"`` (width × height) in pixels."""
    width, sep, height = spec.lower().partition("x")
    try:
        dims = (int(width), int(height)) if sep else int(width)
    except ValueError:
        raise ValueError(f"size {spec!r} is not N or WIDTHxHEIGHT, e.g. 256 or 320x128") from None
    _dims(dims)
    return dims


def parse_mix(spec: str) -> dict[str, float]:
    """Parse ``"ok=0.7,scratch=0.1,..."`` into weights over every class, summing to 1."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep:
            raise ValueError(f"mix item {item!r} is not name=weight, e.g. 'ok=0.8,scratch=0.2'")
        if name in weights:
            raise ValueError(f"class {name!r} appears twice in the mix")
        try:
            weights[name] = float(value)
        except ValueError as exc:
            raise ValueError(f"the weight {value!r} of {name!r} is not a number") from exc
    return _normalise_mix(weights)


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


class _Patch:
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


def _polyline(
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


def _alpha(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) * np.float32(1 / 255)


# --- surfaces ---------------------------------------------------------------------------


@dataclass
class _Surface:
    lum: np.ndarray  # float32 HxW on a 0-255 scale
    tint: np.ndarray  # BGR gains with luma 1
    level: float  # the mean luminance the texture varies around
    grain: float  # extra per-pixel noise (sigma, grey levels)
    small: bool = False  # defects a few pixels wide (DEFECT_SIZES), whatever the image size


def _metal(rng: np.random.Generator, w: int, h: int) -> _Surface:
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
    return _Surface(lum, tint / float(tint @ _LUMA), level, 0.0)


def _plastic(rng: np.random.Generator, w: int, h: int) -> _Surface:
    """Moulded plastic: a flat colour, orange-peel bumps lit from one side, a soft gloss."""
    short = min(w, h)
    if rng.random() < 0.3:
        tint = np.ones(3, np.float32)
    else:
        hsv = np.array(
            [[[rng.uniform(0, 180), rng.uniform(60, 190), rng.uniform(120, 230)]]], np.uint8
        )
        bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) + 1
        tint = bgr / float(bgr @ _LUMA)
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
    return _Surface(lum, tint, level, float(rng.uniform(1, 3)))


_SURFACES: dict[str, Callable[[np.random.Generator, int, int], _Surface]] = {
    "metal": _metal,
    "plastic": _plastic,
}


# --- defects ----------------------------------------------------------------------------


@dataclass
class _Stain:
    box: tuple[slice, slice]
    weight: np.ndarray  # how much of the stain's colour each pixel of the box takes
    tint: np.ndarray


def _centre(rng: np.random.Generator, w: int, h: int, margin: float = 0.25) -> np.ndarray:
    return np.array([w, h], np.float64) * rng.uniform(margin, 1 - margin, 2)


def _scratch(rng: np.random.Generator, surface: _Surface) -> _Stain | None:
    """A thin, long, slightly curved groove: one bright or dark core and a faint shoulder."""
    h, w = surface.lum.shape
    short = min(w, h)
    length = short * (rng.uniform(0.15, 0.35) if surface.small else rng.uniform(0.4, 0.85))
    angle = rng.uniform(0, math.pi)
    along = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-along[1], along[0]])
    t = np.linspace(-0.5, 0.5, 25)
    bow = (1 - 4 * t**2) * length * rng.uniform(-0.1, 0.1)
    points = _centre(rng, w, h, 0.3) + np.outer(t * length, along) + np.outer(bow, normal)
    thickness = 1 if surface.small else max(1, round(short * rng.uniform(0.006, 0.012)))
    # Scratches fade out at their ends rather than stopping square.
    fade = np.minimum(1.0, (0.5 - np.abs((t[:-1] + t[1:]) / 2)) * rng.uniform(4, 10))
    widths = np.full(len(t) - 1, thickness)

    offset = normal * (thickness + 1)
    patch = _Patch(surface.lum.shape, np.vstack([points, points + offset]), thickness + 3)
    core, shoulder = patch.mask(), patch.mask()
    _polyline(core, patch.fixed(points), widths, 255 * fade)
    _polyline(shoulder, patch.fixed(points + offset), widths, 255 * fade)

    if surface.level < 100:
        sign = 1.0
    elif surface.level > 175:
        sign = -1.0
    else:
        sign = 1.0 if rng.random() < 0.5 else -1.0
    amplitude = sign * rng.uniform(70, 110)
    surface.lum[patch.box] += np.float32(amplitude) * (_alpha(core) - 0.35 * _alpha(shoulder))
    return None


def _pit(rng: np.random.Generator, surface: _Surface) -> _Stain | None:
    """One to three small dark pits, each with a rim lit on one side."""
    h, w = surface.lum.shape
    short = min(w, h)
    centre = _centre(rng, w, h)
    light = rng.uniform(0, 2 * math.pi)
    count = 1 if rng.random() < 0.6 or surface.small else int(rng.integers(2, 4))
    radius = rng.uniform(1.5, 2.5) if surface.small else short * rng.uniform(0.02, 0.04)
    for k in range(count):
        r = radius * (1.0 if k == 0 else rng.uniform(0.5, 0.85))
        c = centre + (rng.normal(0, 2.5 * radius, 2) if k else 0)
        patch = _Patch(surface.lum.shape, c[None, :], 2.2 * r)
        at = patch.fixed(c[None, :])[0]
        axes = (max(1, round(r * 16)), max(1, round(r * rng.uniform(0.7, 1.0) * 16)))
        tilt = float(rng.uniform(0, 180))
        hole, rim = patch.mask(), patch.mask()
        cv2.ellipse(hole, (int(at[0]), int(at[1])), axes, tilt, 0, 360, 255, -1, cv2.LINE_AA, 4)
        rim_axes = (round(axes[0] * 1.2), round(axes[1] * 1.2))
        cv2.ellipse(
            rim,
            (int(at[0]), int(at[1])),
            rim_axes,
            tilt,
            0,
            360,
            255,
            max(1, round(r * 0.45)),
            cv2.LINE_AA,
            4,
        )
        soft = max(0.5, r * 0.2)
        hole_a = cv2.GaussianBlur(_alpha(hole), (0, 0), soft)
        rim_a = cv2.GaussianBlur(_alpha(rim), (0, 0), soft)
        xs, ys = patch.grid()
        toward = ((xs - c[0]) * math.cos(light) + (ys - c[1]) * math.sin(light)) / r
        lit = np.clip(toward, 0, 1)
        # Inside the pit the wall facing the light is lit and the near wall is in shadow.
        depth = rng.uniform(0.55, 0.8) * (0.85 - 0.2 * np.clip(toward, -1, 1))
        box = surface.lum[patch.box]
        box *= 1 - hole_a * depth.astype(np.float32)
        box += rim_a * lit * np.float32(rng.uniform(25, 55))
    return None


def _walk(
    rng: np.random.Generator, start: np.ndarray, heading: float, steps: int, step: float
) -> np.ndarray:
    """A jagged path that wanders around ``heading`` (its turns revert towards it)."""
    turn, points = 0.0, [start]
    for _ in range(steps):
        turn = 0.55 * turn + rng.normal(0, 0.5)
        length = step * rng.uniform(0.6, 1.3)
        points.append(
            points[-1] + length * np.array([math.cos(heading + turn), math.sin(heading + turn)])
        )
    return np.array(points)


def _crack(rng: np.random.Generator, surface: _Surface) -> _Stain | None:
    """A dark jagged line that thins out towards its end, with one or two branches."""
    h, w = surface.lum.shape
    short = min(w, h)
    heading = rng.uniform(0, 2 * math.pi)
    steps = int(rng.integers(12, 20) if surface.small else rng.integers(18, 30))
    step = short * (rng.uniform(0.01, 0.015) if surface.small else rng.uniform(0.02, 0.03))
    start = (
        _centre(rng, w, h, 0.35)
        - np.array([math.cos(heading), math.sin(heading)]) * step * steps / 2
    )
    main = _walk(rng, start, heading, steps, step)
    thick = 1.0 if surface.small else short * rng.uniform(0.006, 0.01)
    paths = [(main, thick)]
    for _ in range(int(rng.integers(1, 3))):
        at = int(rng.integers(steps // 4, 3 * steps // 4))
        side = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.1)
        paths.append((_walk(rng, main[at], heading + side, steps // 3, step * 0.8), thick * 0.6))

    patch = _Patch(surface.lum.shape, np.vstack([p for p, _ in paths]), thick + 3)
    mask = patch.mask()
    for k, (points, width) in enumerate(paths):
        t = (np.arange(len(points) - 1) + 0.5) / (len(points) - 1)
        # The trunk is widest in its middle, a branch at its root; both vary a little.
        profile = 0.4 + 0.6 * np.sin(np.pi * t) if k == 0 else 1 - 0.6 * t
        widths = np.maximum(1, np.round(width * profile * rng.uniform(0.8, 1.2, len(t))))
        _polyline(mask, patch.fixed(points), widths, np.full(len(t), 255))
    surface.lum[patch.box] *= 1 - _alpha(mask) * np.float32(rng.uniform(0.6, 0.8))
    return None


_STAIN_COLOURS = np.array(
    [
        [0.6, 0.85, 1.35],  # rust
        [0.7, 1.0, 1.15],  # oil, yellowish
        [1.2, 1.05, 0.8],  # coolant, blue-green
        [0.85, 0.9, 1.05],  # dried residue, brown-grey
    ],
    np.float32,
)


def _stain(rng: np.random.Generator, surface: _Surface) -> _Stain | None:
    """A discoloured blob with soft, irregular edges and a darker tide mark."""
    h, w = surface.lum.shape
    radius = min(w, h) * (rng.uniform(0.03, 0.05) if surface.small else rng.uniform(0.1, 0.2))
    centre = _centre(rng, w, h)
    patch = _Patch(surface.lum.shape, centre[None, :], 1.5 * radius)
    xs, ys = patch.grid()
    tilt = rng.uniform(0, math.pi)
    u = ((xs - centre[0]) * math.cos(tilt) + (ys - centre[1]) * math.sin(tilt)) / radius
    v = (-(xs - centre[0]) * math.sin(tilt) + (ys - centre[1]) * math.cos(tilt)) / radius
    stretch = rng.uniform(0.65, 1.0)
    wobble = sum(
        cv2.resize(
            rng.standard_normal((n, n), dtype=np.float32),
            patch.shape[::-1],
            interpolation=cv2.INTER_CUBIC,
        )
        * amount
        for n, amount in ((5, 0.45), (11, 0.2))
    )
    shape = 1 - u**2 * stretch - v**2 / stretch + wobble
    blob = cv2.GaussianBlur(np.clip((shape - 0.15) * 3, 0, 1), (0, 0), max(0.7, radius * 0.12))
    tide = 4 * blob * (1 - blob)  # peaks where the edge of the blob is
    patchy = 1 - 0.6 * np.abs(wobble)  # uneven inside, as a dried liquid is
    weight = blob * patchy * np.float32(rng.uniform(0.5, 0.8)) + tide * np.float32(
        rng.uniform(0.05, 0.3)
    )
    surface.lum[patch.box] *= 1 - weight * np.float32(rng.uniform(0.35, 0.5))
    colour = _STAIN_COLOURS[int(rng.integers(len(_STAIN_COLOURS)))]
    return _Stain(patch.box, np.clip(weight, 0, 1), colour / float(colour @ _LUMA))


_DEFECTS: dict[str, Callable[[np.random.Generator, _Surface], _Stain | None]] = {
    "scratch": _scratch,
    "pit": _pit,
    "crack": _crack,
    "stain": _stain,
}


# --- light, camera, output ----------------------------------------------------------------


def _light_and_sensor(rng: np.random.Generator, surface: _Surface) -> np.ndarray:
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


def _to_bgr(lum: np.ndarray, tint: np.ndarray, stain: _Stain | None) -> np.ndarray:
    # convertScaleAbs saturates to 0-255 in one SIMD pass per channel (lum is already >= 0).
    image = cv2.merge([cv2.convertScaleAbs(lum, alpha=float(g)) for g in tint])
    if stain is not None:
        weight = stain.weight[..., None]
        gains = tint * (1 - weight) + stain.tint * weight
        image[stain.box] = np.clip(lum[stain.box][..., None] * gains, 0, 255).astype(np.uint8)
    return image


# --- the line ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedPart:
    """One photographed part: its true class, its surface and the image (uint8, BGR or gray)."""

    label: str
    surface: str
    image: np.ndarray


def _dims(size: Size) -> tuple[int, int]:
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < _MIN_SIDE:
        raise ValueError(
            f"image size {width}x{height} is too small; each side needs >= {_MIN_SIDE} px"
        )
    return int(width), int(height)


class LineSimulator:
    """A stream of synthetic parts; the same seed gives the same parts in the same order.

    Each part is drawn from its own child seed (``SeedSequence.spawn``), so parts can
    be rendered in any thread and still match a sequential run.
    """

    def __init__(
        self,
        *,
        size: Size = 256,
        mix: Mapping[str, float] | None = None,
        surfaces: tuple[str, ...] = SURFACES,
        seed: int | None = 0,
        color: bool = True,
        defect_size: str = "normal",
    ) -> None:
        self.width, self.height = _dims(size)
        if defect_size not in DEFECT_SIZES:
            raise ValueError(
                f"unknown defect size {defect_size!r}; the known ones are {', '.join(DEFECT_SIZES)}"
            )
        self.small = defect_size == "small"
        self.mix = _normalise_mix(DEFAULT_MIX if mix is None else mix)
        unknown = sorted(set(surfaces) - set(SURFACES))
        if unknown or not surfaces:
            raise ValueError(
                f"unknown or no surfaces {unknown or list(surfaces)}; "
                f"the known ones are {', '.join(SURFACES)}"
            )
        self.surfaces = tuple(surfaces)
        self.color = color
        self._seeds = np.random.SeedSequence(seed)
        self._rng = np.random.default_rng(self._seeds)
        self._p = np.array([self.mix[name] for name in CLASSES])

    def next_label(self) -> str:
        """Draw the next part's class from the mix."""
        return CLASSES[int(self._rng.choice(len(CLASSES), p=self._p))]

    def _next(self, label: str | None) -> tuple[str, np.random.Generator]:
        if label is None:
            label = self.next_label()
        elif label not in CLASSES:
            raise ValueError(f"unknown class {label!r}; the known classes are {', '.join(CLASSES)}")
        return label, np.random.default_rng(self._seeds.spawn(1)[0])

    def _render(self, label: str, rng: np.random.Generator) -> SimulatedPart:
        # Surface, defect and light draw from separate streams, so the same seed with and
        # without a defect gives the same part under the same light: only the defect differs.
        surface_rng, defect_rng, light_rng = rng.spawn(3)
        name = self.surfaces[int(surface_rng.integers(len(self.surfaces)))]
        surface = _SURFACES[name](surface_rng, self.width, self.height)
        surface.small = self.small
        stain = _DEFECTS[label](defect_rng, surface) if label != "ok" else None
        lum = _light_and_sensor(light_rng, surface)
        image = _to_bgr(lum, surface.tint, stain) if self.color else cv2.convertScaleAbs(lum)
        return SimulatedPart(label, name, image)

    def part(self, label: str | None = None) -> SimulatedPart:
        """The next part, of class ``label`` or (None) of a class drawn from the mix."""
        return self._render(*self._next(label))

    def parts(self, n: int) -> Iterator[SimulatedPart]:
        """The next ``n`` parts, classes drawn from the mix."""
        if n < 0:
            raise ValueError(f"cannot make {n} parts")
        for _ in range(n):
            yield self.part()


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 92) -> bytes:
    """The image as a camera would send it: JPEG (at ``quality``), PNG, BMP or TIFF bytes."""
    params: dict[str, list[int]] = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, quality],
        "png": [cv2.IMWRITE_PNG_COMPRESSION, 3],
        "bmp": [],
        "tiff": [],
    }
    if fmt not in params:
        raise ValueError(f"unknown image format {fmt!r}; choose one of {', '.join(images.FORMATS)}")
    ok, buf = cv2.imencode("." + images.EXTENSIONS[fmt], image, params[fmt])
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {fmt}")
    return buf.tobytes()


def contact_sheet(
    *, size: int = 128, samples: int = 2, seed: int = 0, color: bool = True
) -> np.ndarray:
    """A grid for eyeballing the drawing: one column per class, ``samples`` rows per surface."""
    rows = []
    for k, surface in enumerate(SURFACES):
        sim = LineSimulator(size=size, surfaces=(surface,), seed=seed + k, color=color)
        for _ in range(samples):
            rows.append(np.hstack([sim.part(label).image for label in CLASSES]))
    sheet = np.vstack(rows)
    header = np.full((18, sheet.shape[1], *sheet.shape[2:]), 255, np.uint8)
    for k, label in enumerate(CLASSES):
        cv2.putText(
            header, label, (k * size + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA
        )
    return np.vstack([header, sheet])


# --- the camera ---------------------------------------------------------------------------

_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})  # worth the same request again, later
_AUTH_STATUS = frozenset({401, 403})  # every further upload would fail the same way
_MAX_BACKOFF = 5.0
_PROGRESS_INTERVAL = 0.1


def schedule(i: int, rate: float | None) -> float:
    """Seconds after the start at which upload ``i`` is due (``i / rate``; 0 if unthrottled).

    Every upload has a fixed slot, so a slow response delays only its own upload and
    the line never drifts from its rate.
    """
    return 0.0 if rate is None else i / rate


@dataclass
class SimulationReport:
    """What a simulation run did: counts by outcome and by class, latencies, timing.

    ``sent`` counts parts whose upload finished, whatever the outcome:
    ``sent == accepted + duplicates + sum(rejected.values()) + failed``.
    ``latencies_ms`` is the camera's view of each answered upload, retries included.
    """

    planned: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    sent_by_class: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    aborted: str | None = None

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of upload latency, or None before any answer."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    @property
    def p50_ms(self) -> float | None:
        """Median upload latency in milliseconds."""
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float | None:
        """99th-percentile upload latency in milliseconds."""
        return self.percentile_ms(99)

    @property
    def rate(self) -> float:
        """Achieved uploads per second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """A few human-readable lines."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        def counts(d: Mapping[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"

        lines = [
            f"sent {self.sent}/{self.planned} parts in {self.elapsed:.1f} s ({self.rate:.1f}/s): "
            f"{self.accepted} accepted, {self.duplicates} duplicates, "
            f"{sum(self.rejected.values())} rejected, {self.failed} failed, {self.retries} retries",
            f"by class: {counts(self.sent_by_class)}",
            f"latency ms: p50 {ms(self.p50_ms)}, p99 {ms(self.p99_ms)}",
        ]
        if self.rejected:
            lines.append(f"rejected: {counts(self.rejected)}")
        if self.failures:
            lines.append(f"failed: {counts(self.failures)}")
        if self.aborted:
            lines.append(f"aborted: {self.aborted}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Outcome:
    kind: str  # accepted | duplicate | rejected | failed
    code: str = ""
    message: str = ""
    retries: int = 0
    status: int = 0


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200]


def _retry_after(response: httpx.Response | None) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), 30.0) if response is not None else None
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: fall back to our own backoff


def _upload(
    client: httpx.Client,
    url: str,
    request: dict[str, Any],
    *,
    retries: int,
    backoff: float,
    stop: threading.Event,
) -> _Outcome:
    """One part's upload, retrying what an API restart or overload would cause."""
    attempt = 0
    while True:
        response: httpx.Response | None = None
        try:
            response = client.post(url, **request)
        except httpx.TransportError as exc:
            reason = type(exc).__name__
        else:
            status = response.status_code
            if status < 300:
                try:
                    duplicate = bool(response.json().get("duplicate", status == 200))
                except (ValueError, AttributeError):
                    duplicate = status == 200
                return _Outcome("duplicate" if duplicate else "accepted", retries=attempt)
            if status not in _TRANSIENT_STATUS:
                kind = "rejected" if status < 500 else "failed"
                return _Outcome(kind, *_error(response), retries=attempt, status=status)
            reason = _error(response)[0]
        # Jitter keeps a fleet of cameras from retrying in lockstep after an API restart.
        delay = _retry_after(response) or min(_MAX_BACKOFF, backoff * 2**attempt) * random.uniform(
            0.5, 1
        )
        if attempt == retries or stop.wait(delay):
            return _Outcome("failed", reason, retries=attempt)
        attempt += 1


def run_simulation(
    base_url: str,
    token: str,
    *,
    count: int,
    rate: float | None = None,
    concurrency: int = 8,
    labels: bool = True,
    mix: Mapping[str, float] | None = None,
    size: Size = 256,
    defect_size: str = "normal",
    fmt: str = "jpeg",
    line: str = "line-1",
    station: str = "station-1",
    camera_id: str = "cam-1",
    seed: int | None = 0,
    progress: Callable[[SimulationReport], None] | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    retries: int = 6,
    backoff: float = 0.25,
) -> SimulationReport:
    """Upload ``count`` simulated parts to ``POST {base_url}/v1/images`` as a camera would.

    Part ``i`` is the ``i``-th part of ``LineSimulator(size=size, mix=mix, seed=seed,
    defect_size=defect_size)``,
    due at ``schedule(i, rate)``; images are drawn in the worker threads ahead of their
    slot. A 401/403 stops the run (every further upload would fail the same way).
    """
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
    if count < 0 or concurrency < 1 or retries < 0:
        raise ValueError("count and retries must be >= 0 and concurrency >= 1")
    if rate is not None and not rate > 0:
        raise ValueError(
            f"rate must be a positive number of uploads per second, or None, not {rate}"
        )
    if fmt not in images.FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; choose one of {', '.join(images.FORMATS)}")

    url = base_url.rstrip("/") + "/v1/images"
    headers = {"Authorization": f"Bearer {token}"}
    sim = LineSimulator(size=size, mix=mix, seed=seed, defect_size=defect_size)
    run = str(seed)[:12] if seed is not None else secrets.token_hex(4)
    report = SimulationReport(planned=count)
    lock, stop = threading.Lock(), threading.Event()
    indices = itertools.count()
    last_progress = 0.0
    start = time.perf_counter()

    def take() -> tuple[int, str, np.random.Generator] | None:
        with lock:  # indices, labels and seeds advance together, in order
            i = next(indices)
            return (i, *sim._next(None)) if i < count else None

    def record(label: str, outcome: _Outcome, latency_ms: float) -> None:
        nonlocal last_progress
        with lock:
            report.sent += 1
            report.sent_by_class[label] = report.sent_by_class.get(label, 0) + 1
            report.retries += outcome.retries
            if outcome.kind == "failed":
                report.failed += 1
                report.failures[outcome.code] = report.failures.get(outcome.code, 0) + 1
            else:
                report.latencies_ms.append(latency_ms)
                if outcome.kind == "accepted":
                    report.accepted += 1
                elif outcome.kind == "duplicate":
                    report.duplicates += 1
                else:
                    report.rejected[outcome.code] = report.rejected.get(outcome.code, 0) + 1
            if outcome.status in _AUTH_STATUS:
                report.aborted = report.aborted or f"{outcome.code}: {outcome.message}"
                stop.set()
            now = time.perf_counter()
            report.elapsed = now - start
            if progress is not None and now - last_progress >= _PROGRESS_INTERVAL:
                last_progress = now
                progress(report)

    def camera(http: httpx.Client) -> None:
        while not stop.is_set() and (job := take()) is not None:
            i, label, rng = job
            data = encode(sim._render(label, rng).image, fmt)
            wait = start + schedule(i, rate) - time.perf_counter()
            if wait > 0 and stop.wait(wait):
                return
            part_id = f"{camera_id[:40]}-{run}-{i:06d}"
            fields = {
                "line": line,
                "station": station,
                "camera_id": camera_id,
                "part_id": part_id,
                "captured_at": datetime.now(UTC).isoformat(),
            }
            if labels:
                fields["label"] = label
            request = {
                "headers": headers,
                "data": fields,
                "files": {
                    "file": (f"{part_id}.{images.EXTENSIONS[fmt]}", data, images.CONTENT_TYPES[fmt])
                },
                "timeout": timeout,
            }
            sent_at = time.perf_counter()
            outcome = _upload(http, url, request, retries=retries, backoff=backoff, stop=stop)
            record(label, outcome, (time.perf_counter() - sent_at) * 1000)

    http = client or httpx.Client(limits=httpx.Limits(max_connections=concurrency))
    try:
        with ThreadPoolExecutor(
            max_workers=max(1, min(concurrency, count)), thread_name_prefix="camera"
        ) as pool:
            futures = [pool.submit(camera, http) for _ in range(min(concurrency, count))]
            try:
                for future in futures:
                    future.result()
            finally:
                stop.set()  # on an error or Ctrl-C, the other cameras stop after their upload
    finally:
        if client is None:
            http.close()
    report.elapsed = time.perf_counter() - start
    if progress is not None:
        progress(report)
    return report
