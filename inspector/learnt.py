"""Whether a run learnt: its recall per class on its own (unaugmented) training images,
judged against chance, and for a warm start, against the classes new to its parent.

No TensorFlow: :mod:`inspector.trainer` measures the recalls and calls these checks. A
run at chance fails ("the model did not learn") and publishes nothing; a warm start that
did not learn a new class raises :class:`NewClassesNotLearnt`, on which
:mod:`inspector.training` trains again on every image (``fallback``).
"""

from __future__ import annotations

from typing import Any

from inspector.training import TrainingFailed
from inspector.training_data import TrainingData

LEARNED_FRACTION = 0.25  # of the way from chance to perfect, on the training images


class NewClassesNotLearnt(TrainingFailed):
    """A warm start fitted, but did not learn the classes its head grew for."""

    code = "new_classes_not_learnt"


def check(recalls: dict[str, float], epochs: int) -> dict[str, Any]:
    """The balanced accuracy and ``recalls`` as the version records them;
    :class:`TrainingFailed` when the balanced accuracy is too close to chance."""
    balanced = sum(recalls.values()) / len(recalls)
    chance = 1 / len(recalls)
    needed = chance + LEARNED_FRACTION * (1 - chance)
    if balanced < needed:
        per_class = ", ".join(f"{name} {recall:.0%}" for name, recall in recalls.items())
        raise TrainingFailed(
            f"the model did not learn: after {epochs} epochs it tells the classes apart on "
            f"{balanced:.0%} of its own training images (balanced accuracy; chance is "
            f"{chance:.0%}, at least {needed:.0%} is needed; per class: {per_class}). "
            "Check the labels, label more images of the rare classes, or make the defects "
            "visible at the model's input (image_size); no version was created",
            code="did_not_learn",
        )
    return {"balanced_accuracy": round(balanced, 5), "recall": recalls}


def check_new_classes(recalls: dict[str, float], data: TrainingData, needed: float) -> None:
    """:class:`NewClassesNotLearnt` when a warm start recalls fewer than ``needed`` of the
    training images of a class new to its parent."""
    missed = {c: recalls[c] for c in data.new_classes if recalls.get(c, 1.0) < needed}
    if missed:
        per_class = ", ".join(f"{name} {recall:.0%}" for name, recall in missed.items())
        raise NewClassesNotLearnt(
            f"the warm start from version {data.parent} did not learn its new classes: it "
            f"recalls {per_class} of their own training images (at least "
            f"{needed:.0%} is needed)",
        )
