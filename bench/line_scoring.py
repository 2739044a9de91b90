"""How a run of bench/real_lines.py is scored: the verdicts on the held-back parts against
their true classes, as a plant would judge them.

- escape rate: defective parts judged good, over the defective parts;
- false-reject rate: good parts judged defective, over the good parts;
- recall per class (the label had to be right: a crack judged "pit" is not recalled);
- defect-map peak: for parts with a defect mask, whether the map's highest point on the
  image lies inside the mask dilated by 16 pixels;
- the ranking apart from the threshold: AUROC of P(defect), good against defective, and
  the false-reject rate the same verdicts would have had at the highest threshold that
  lets no defective part pass (so a bad threshold and a bad ranking can be told apart).

No TensorFlow.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from bench.lines import Item
from inspector import defect_maps, thresholds
from inspector.defect_maps import DefectMap
from inspector.model_input import InputSpec

MASK_DILATION_PX = 16


@dataclass(frozen=True)
class Judged:
    """A held-back part and the verdict it got."""

    item: Item
    verdict: dict[str, Any]


def peak_in_mask(item: Item, verdict: dict[str, Any], spec: InputSpec) -> bool | None:
    """Whether the verdict's defect-map peak lies in the part's dilated mask (None: no
    mask, or no map)."""
    if item.mask is None or "defect_map" not in verdict:
        return None
    image = cv2.imread(str(item.mask), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"OpenCV cannot read the mask {item.mask}")
    mask = image > 127
    grid = DefectMap.from_doc(verdict["defect_map"]).grid()
    row, col = defect_maps.peak(grid, mask.shape[0], mask.shape[1], spec)
    size = 2 * MASK_DILATION_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    dilated = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return bool(dilated[row, col])


def ranking(judged: Sequence[Judged], good: str) -> dict[str, float | None]:
    """AUROC of P(defect) (:func:`inspector.thresholds.curves`, as the report computes it)
    and the false-reject rate at the threshold that passes no defective part (None where
    a side is empty or a verdict has no P(defect))."""
    p = [j.verdict.get("p_defect") for j in judged]
    defective = np.asarray([j.item.label != good for j in judged], bool)
    if None in p or defective.all() or not defective.any():
        return {"auroc": None, "false_reject_at_no_escape": None}
    scores = np.asarray(p, float)
    return {
        "auroc": round(thresholds.curves(scores.tolist(), defective.tolist())["auroc"], 4),
        "false_reject_at_no_escape": round(
            float((scores[~defective] >= scores[defective].min()).mean()), 4
        ),
    }


def score(judged: Sequence[Judged], good: str, spec: InputSpec | None) -> dict[str, Any]:
    """Escape and false-reject rates, accuracy, recall per class and map peaks."""
    defective = [j for j in judged if j.item.label != good]
    goods = [j for j in judged if j.item.label == good]
    escapes = [j for j in defective if not j.verdict["defect"]]
    rejects = [j for j in goods if j.verdict["defect"]]
    by_class: dict[str, list[bool]] = defaultdict(list)
    for j in judged:
        by_class[j.item.label].append(j.verdict["label"] == j.item.label)
    peaks = [
        p
        for p in (peak_in_mask(j.item, j.verdict, spec) for j in defective if spec is not None)
        if p is not None
    ]
    masked = sum(1 for j in defective if j.item.mask is not None)
    return {
        "parts": len(judged),
        "defective": len(defective),
        "good": len(goods),
        "escape_rate": round(len(escapes) / len(defective), 4) if defective else None,
        "false_reject_rate": round(len(rejects) / len(goods), 4) if goods else None,
        "accuracy": round(sum(j.verdict["label"] == j.item.label for j in judged) / len(judged), 4)
        if judged
        else None,
        "recall": {c: round(sum(v) / len(v), 4) for c, v in sorted(by_class.items())},
        "escaped": [j.item.name for j in escapes],
        "false_rejects": [j.item.name for j in rejects],
        # Misjudged parts by true and judged class ("crazing→rolled_in_scale": 2).
        "confusions": dict(
            sorted(
                Counter(
                    f"{j.item.label}→{j.verdict['label']}"
                    for j in judged
                    if j.verdict["label"] != j.item.label
                ).items()
            )
        ),
        **ranking(judged, good),
        # Every part's P(defect): how far from the threshold each wrong pass or reject was,
        # and another threshold rule weighed without training again.
        "p_defect": {j.item.name: j.verdict.get("p_defect") for j in judged},
        "map_peak_in_mask": round(sum(peaks) / masked, 4) if masked else None,
        "maps_missing": masked - len(peaks),
    }


def forgetting(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Recall lost per class known before (before − after, in points of 1)."""
    return {c: round(before[c] - after.get(c, 0.0), 4) for c in before}
