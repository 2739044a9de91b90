"""Whether a run learnt: its recall per class on its own (unaugmented) training images,
judged against chance, and for a warm start, whether it learnt the classes new to its
parent and kept the ones its parent knew.

No TensorFlow: :mod:`inspector.trainer` measures the recalls and calls these checks. A
run at chance fails ("the model did not learn") and publishes nothing; a warm start that
did not learn a new class (``new_class_recall``) or forgot an old one (``kept_class_recall``)
raises :class:`WarmStartFailed`, on which :mod:`inspector.training` trains again on every
image (``fallback``).
"""

from __future__ import annotations

from typing import Any

from inspector.training import TrainingFailed
from inspector.training_data import TrainingData

LEARNED_FRACTION = 0.25  # of the way from chance to perfect, on the training images


class WarmStartFailed(TrainingFailed):
    """A warm start fitted, but did not learn the classes its head grew for, or lost
    classes its parent knew."""

    code = "warm_start_failed"


def check(recalls: dict[str, float], epochs: int) -> dict[str, Any]:
    """The balanced accuracy and ``recalls`` as the version records them;
    :class:`TrainingFailed` when the balanced accuracy is too close to chance."""
    balanced = sum(recalls.values()) / len(recalls)
    chance = 1 / len(recalls)
    needed = chance + LEARNED_FRACTION * (1 - chance)
    if balanced < needed:
        raise TrainingFailed(
            f"the model did not learn: after {epochs} epochs it tells the classes apart on "
            f"{balanced:.0%} of its own training images (balanced accuracy; chance is "
            f"{chance:.0%}, at least {needed:.0%} is needed; per class: {_per_class(recalls)}). "
            "Check the labels, label more images of the rare classes, or make the defects "
            "visible at the model's input (image_size); no version was created",
            code="did_not_learn",
        )
    return {"balanced_accuracy": round(balanced, 5), "recall": recalls}


def check_warm_start(
    recalls: dict[str, float], data: TrainingData, *, new: float, kept: float
) -> None:
    """:class:`WarmStartFailed` when a warm start recalls fewer than ``new`` of the training
    images of a class new to its parent (it did not learn it), or fewer than ``kept`` of
    those of a class its parent knew (it forgot it: its replayed images are among them);
    nothing to check in a run without a parent."""
    if data.parent is None:
        return
    missed = {c: recalls[c] for c in data.new_classes if recalls.get(c, 1.0) < new}
    if missed:
        raise WarmStartFailed(
            f"the warm start from version {data.parent} did not learn its new classes: it "
            f"recalls {_per_class(missed)} of their own training images (at least "
            f"{new:.0%} is needed)",
        )
    old = [c for c in data.classes if c not in data.new_classes]
    forgot = {c: recalls[c] for c in old if recalls.get(c, 1.0) < kept}
    if forgot:
        raise WarmStartFailed(
            f"the warm start from version {data.parent} forgot classes its parent knew: it "
            f"recalls {_per_class(forgot)} of their own training images (at least "
            f"{kept:.0%} is needed)",
        )


def _per_class(recalls: dict[str, float]) -> str:
    return ", ".join(f"{name} {recall:.0%}" for name, recall in recalls.items())
