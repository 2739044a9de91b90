"""A synthetic production line: a seeded stream of part images, clean or with one defect.

:class:`LineSimulator` draws part surfaces (brushed metal, textured plastic) under
varying light, either clean (``ok``) or with one defect (scratch, pit, crack, stain),
using only NumPy and OpenCV; the same seed gives the same parts in the same order. It
also parses the command line's size and class-mix options, encodes an image as a camera
would send it, and lays out a contact sheet. The drawing itself lives in
:mod:`inspector.sim_surfaces` (surfaces, light, colour) and :mod:`inspector.sim_defects`;
:mod:`inspector.camera` uploads a line to the API.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from inspector import images
from inspector.sim_defects import DEFECT_DRAWERS
from inspector.sim_surfaces import SURFACE_DRAWERS, light_and_sensor, to_bgr

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

    def next_stream(self, label: str | None = None) -> tuple[str, np.random.Generator]:
        """The next part's class and its own random stream, without drawing the part.

        The class is ``label`` or (None) one drawn from the mix. :meth:`render` then draws
        the part, in any thread, exactly as :meth:`part` would have.
        """
        if label is None:
            label = self.next_label()
        elif label not in CLASSES:
            raise ValueError(f"unknown class {label!r}; the known classes are {', '.join(CLASSES)}")
        return label, np.random.default_rng(self._seeds.spawn(1)[0])

    def render(self, label: str, rng: np.random.Generator) -> SimulatedPart:
        """Draw the part that :meth:`next_stream` gave ``label`` and ``rng``."""
        # Surface, defect and light draw from separate streams, so the same seed with and
        # without a defect gives the same part under the same light: only the defect differs.
        surface_rng, defect_rng, light_rng = rng.spawn(3)
        name = self.surfaces[int(surface_rng.integers(len(self.surfaces)))]
        surface = SURFACE_DRAWERS[name](surface_rng, self.width, self.height)
        surface.small = self.small
        stain = DEFECT_DRAWERS[label](defect_rng, surface) if label != "ok" else None
        lum = light_and_sensor(light_rng, surface)
        image = to_bgr(lum, surface.tint, stain) if self.color else cv2.convertScaleAbs(lum)
        return SimulatedPart(label, name, image)

    def part(self, label: str | None = None) -> SimulatedPart:
        """The next part, of class ``label`` or (None) of a class drawn from the mix."""
        return self.render(*self.next_stream(label))

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
