"""Defect maps: where on a part the model saw the defect. Stored, placed and drawn.

A SavedModel's ``defect_map`` output is a grid over its letterboxed canvas (one cell per
8×8 canvas pixels; :func:`inspector.export.evidence_map`). Stored with a verdict it is
:class:`DefectMap`: the grid quantised to bytes (0-255 for 0-1), base64 in JSON, 2.6 kB
for a 640×256 canvas. To show it
on the part, :func:`on_image` resizes it to the canvas, cuts out the image's box
(:func:`inspector.model_input.fit_box`) and resizes that to the image's own size;
:func:`peak` says where the map is highest, in image pixels; :func:`overlay` draws it.
No TensorFlow: the API draws maps for the console.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspector.model_input import InputSpec, fit_box


@dataclass(frozen=True)
class DefectMap:
    """A quantised defect map grid (rows × cols), values 0-255 for P 0-1."""

    rows: int
    cols: int
    data: bytes

    @classmethod
    def from_grid(cls, grid: np.ndarray) -> DefectMap:
        """Quantise a float grid in [0, 1]."""
        grid = np.asarray(grid, np.float32)
        values = np.clip(np.round(grid * 255), 0, 255).astype(np.uint8)
        return cls(int(grid.shape[0]), int(grid.shape[1]), values.tobytes())

    def grid(self) -> np.ndarray:
        """The grid as float32 in [0, 1]."""
        values = np.frombuffer(self.data, np.uint8).reshape(self.rows, self.cols)
        return values.astype(np.float32) / 255

    @property
    def maximum(self) -> float:
        """The highest cell, 0-1."""
        return float(max(self.data, default=0)) / 255

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"rows": self.rows, "cols": self.cols, "b64": base64.b64encode(self.data).decode()}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> DefectMap:
        """From :meth:`to_doc`'s output."""
        data = base64.b64decode(doc["b64"])
        if len(data) != int(doc["rows"]) * int(doc["cols"]):
            raise ValueError("a defect map's data does not match its shape")
        return cls(int(doc["rows"]), int(doc["cols"]), data)


def on_image(grid: np.ndarray, image_height: int, image_width: int, spec: InputSpec) -> np.ndarray:
    """The map at the image's own resolution (float32, same range as ``grid``)."""
    # Bicubic: a bilinear map's maximum always sits on a cell centre, 8 canvas pixels apart.
    canvas = cv2.resize(
        np.asarray(grid, np.float32), (spec.width, spec.height), interpolation=cv2.INTER_CUBIC
    )
    box = fit_box(image_height, image_width, spec)
    inside = canvas[box.top : box.top + box.height, box.left : box.left + box.width]
    return cv2.resize(inside, (image_width, image_height), interpolation=cv2.INTER_LINEAR)


def peak(grid: np.ndarray, image_height: int, image_width: int, spec: InputSpec) -> tuple[int, int]:
    """(row, column) in image pixels where the map is highest."""
    full = on_image(grid, image_height, image_width, spec)
    row, col = np.unravel_index(int(np.argmax(full)), full.shape)
    return int(row), int(col)


def overlay(image: np.ndarray, grid: np.ndarray, spec: InputSpec, *, alpha: float = 0.55) -> bytes:
    """A PNG of ``image`` (grey or BGR uint8) with the map drawn over it: transparent
    where P(defect) is low, red where it is high, and a ring at the peak."""
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image[..., :3].copy()
    h, w = bgr.shape[:2]
    full = np.clip(on_image(grid, h, w, spec), 0, 1)
    heat = cv2.applyColorMap(np.round(full * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * full)[..., np.newaxis]
    drawn = (bgr * (1 - weight) + heat * weight).astype(np.uint8)
    row, col = np.unravel_index(int(np.argmax(full)), full.shape)
    radius = max(4, min(h, w) // 20)
    cv2.circle(drawn, (int(col), int(row)), radius, (255, 255, 255), max(1, radius // 4))
    ok, png = cv2.imencode(".png", drawn)
    if not ok:
        raise ValueError("the overlay could not be encoded")
    return bytes(png)
