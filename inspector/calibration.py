"""A warm start's new classes, calibrated: one logit offset for the classes its head grew
for, fitted on the run's validation images.

Pure NumPy, no TensorFlow: :mod:`inspector.trainer` measures the validation logits, calls
:func:`fit_offset`, and adds the offset to the new classes' biases
(:func:`inspector.modeling.shift_logits`; the class pooling passes a constant through, so
every new class's logit moves by exactly the offset).

Why: a warm start trains its new classes on all of their images and the old ones on a
replayed sample, from a network that knew only the old ones, and it comes out favouring
the new classes. On NEU's second day (+ rolled-in scale, + scratches; seed 0) 4 of the
9 errors on the held-back parts were crazing judged rolled-in scale, where a run from
scratch on the same images judged every crazing right. Wu et al.,
"Large scale incremental learning" (BiC, CVPR 2019), correct that bias with a linear
layer on the new classes' logits fitted on a small validation set; here one offset, the
one that minimises the class-balanced cross-entropy of the validation images, searched
on a grid of ±``MAX_OFFSET`` logits (ties: the smallest). On NEU's seeds 0, 1 and 2 it
was −0.95, −0.45 and −1.25: held back 98.3 → 99.1 %, 98.5 → 98.9 % and 96.1 →
96.6 %; crazing's forgetting 4.3 → 0, 2.2 → 0 and 11.8 → 7.5 pp (BENCHMARKS.md, "A warm
start's new classes, calibrated").

With fewer than ``MIN_IMAGES`` validation images of a new class (or of the old ones) the
offset is 0 and the note says why: a handful of images would set it by chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MAX_OFFSET = 4.0  # logits: as far as a grown head starts its new classes below the old
STEP = 0.05
MIN_IMAGES = 5  # validation images of each new class, and of the old classes together


@dataclass(frozen=True)
class NewClassOffset:
    """The offset added to the new classes' logits, and what it did on validation."""

    offset: float
    classes: tuple[str, ...]
    validation_images: int
    loss_before: float | None = None
    loss_after: float | None = None
    note: str = ""

    def to_doc(self) -> dict[str, Any]:
        """As stored in the version document (``training.new_class_offset``)."""
        doc = asdict(self)
        doc["classes"] = list(self.classes)
        return doc


def balanced_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """The cross-entropy of ``logits`` [N, K] for ``labels`` [N], averaged per class
    first (each class present counts the same, as balanced sampling trains them)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    losses = -log_p[np.arange(len(labels)), labels]
    return float(np.mean([losses[labels == c].mean() for c in np.unique(labels)]))


def _too_few(labels: np.ndarray, new: np.ndarray, classes: Sequence[str]) -> str:
    counts = np.bincount(labels, minlength=len(new))
    short = [
        f"{classes[int(c)]} {counts[c]}" for c in np.flatnonzero(new) if counts[c] < MIN_IMAGES
    ]
    if short:
        return f"too few validation images of a new class ({', '.join(short)})"
    if counts[~new].sum() < MIN_IMAGES:
        return f"too few validation images of the old classes ({counts[~new].sum()})"
    return ""


def fit_offset(
    logits: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    new: Sequence[bool],
    classes: Sequence[str],
) -> NewClassOffset:
    """The offset for the ``new`` classes' ``logits`` ([N, K], K = len(classes)) that
    minimises :func:`balanced_loss` on the validation ``labels``; 0 where they are too
    few to say."""
    flags = np.asarray(new, dtype=bool)
    y = np.asarray(labels, dtype=int)
    names = tuple(c for c, f in zip(classes, flags, strict=True) if f)
    reason = _too_few(y, flags, classes)
    if reason:
        return NewClassOffset(0.0, names, len(y), note=f"{reason}: not calibrated")
    x = np.asarray(logits, dtype=np.float64)
    grid = np.arange(-MAX_OFFSET, MAX_OFFSET + STEP / 2, STEP)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]  # ties: the smallest offset
    losses = np.array([balanced_loss(x + b * flags, y) for b in grid])
    best = round(float(grid[int(np.argmin(losses))]), 2) + 0.0  # never -0.0
    before, after = balanced_loss(x, y), float(losses.min())
    return NewClassOffset(
        best,
        names,
        len(y),
        round(before, 5),
        round(after, 5),
        f"the new classes' logits moved by {best:+.2f} (validation loss {before:.4f} → "
        f"{after:.4f} on {len(y)} images)",
    )
