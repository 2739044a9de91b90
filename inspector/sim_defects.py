"""The defects the simulator draws on a part's surface: scratch, pit, crack and stain.

Each drawing in :data:`DEFECT_DRAWERS` takes its own random stream and a
:class:`~inspector.sim_surfaces.Surface`, changes the surface's luminance in place
(through a :class:`~inspector.sim_surfaces.Patch` around the defect), and returns a
:class:`~inspector.sim_surfaces.Stain` when the defect also changes the colour. Sizes are
fractions of the part's short side, or a few pixels when the surface asks for small
defects, so a defect stays visible after the training pipeline downscales the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from inspector.sim_surfaces import LUMA, Patch, Stain, Surface, alpha, polyline


def _centre(rng: np.random.Generator, w: int, h: int, margin: float = 0.25) -> np.ndarray:
    return np.array([w, h], np.float64) * rng.uniform(margin, 1 - margin, 2)


def _scratch(rng: np.random.Generator, surface: Surface) -> Stain | None:
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
    patch = Patch(surface.lum.shape, np.vstack([points, points + offset]), thickness + 3)
    core, shoulder = patch.mask(), patch.mask()
    polyline(core, patch.fixed(points), widths, 255 * fade)
    polyline(shoulder, patch.fixed(points + offset), widths, 255 * fade)

    if surface.level < 100:
        sign = 1.0
    elif surface.level > 175:
        sign = -1.0
    else:
        sign = 1.0 if rng.random() < 0.5 else -1.0
    amplitude = sign * rng.uniform(70, 110)
    surface.lum[patch.box] += np.float32(amplitude) * (alpha(core) - 0.35 * alpha(shoulder))
    return None


def _pit(rng: np.random.Generator, surface: Surface) -> Stain | None:
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
        patch = Patch(surface.lum.shape, c[None, :], 2.2 * r)
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
        hole_a = cv2.GaussianBlur(alpha(hole), (0, 0), soft)
        rim_a = cv2.GaussianBlur(alpha(rim), (0, 0), soft)
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


def _crack(rng: np.random.Generator, surface: Surface) -> Stain | None:
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

    patch = Patch(surface.lum.shape, np.vstack([p for p, _ in paths]), thick + 3)
    mask = patch.mask()
    for k, (points, width) in enumerate(paths):
        t = (np.arange(len(points) - 1) + 0.5) / (len(points) - 1)
        # The trunk is widest in its middle, a branch at its root; both vary a little.
        profile = 0.4 + 0.6 * np.sin(np.pi * t) if k == 0 else 1 - 0.6 * t
        widths = np.maximum(1, np.round(width * profile * rng.uniform(0.8, 1.2, len(t))))
        polyline(mask, patch.fixed(points), widths, np.full(len(t), 255))
    surface.lum[patch.box] *= 1 - alpha(mask) * np.float32(rng.uniform(0.6, 0.8))
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


def _stain(rng: np.random.Generator, surface: Surface) -> Stain | None:
    """A discoloured blob with soft, irregular edges and a darker tide mark."""
    h, w = surface.lum.shape
    radius = min(w, h) * (rng.uniform(0.03, 0.05) if surface.small else rng.uniform(0.1, 0.2))
    centre = _centre(rng, w, h)
    patch = Patch(surface.lum.shape, centre[None, :], 1.5 * radius)
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
    return Stain(patch.box, np.clip(weight, 0, 1), colour / float(colour @ LUMA))


DEFECT_DRAWERS: dict[str, Callable[[np.random.Generator, Surface], Stain | None]] = {
    "scratch": _scratch,
    "pit": _pit,
    "crack": _crack,
    "stain": _stain,
}
