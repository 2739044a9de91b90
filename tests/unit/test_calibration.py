"""The new classes' logit offset of a warm start (inspector.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.calibration import MAX_OFFSET, MIN_IMAGES, balanced_loss, fit_offset

CLASSES = ["crazing", "inclusion", "rolled_in_scale"]  # the last one new
NEW = [False, False, True]


def _validation(bias: float, per_class: int = 20, seed: int = 0):
    """Logits of a model that knows each class (+3 on the right one, noise 1) and adds
    ``bias`` to the new class's logit."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    logits = rng.normal(0, 1, (len(labels), 3))
    logits[np.arange(len(labels)), labels] += 3
    logits[:, 2] += bias
    return logits, labels


@pytest.mark.parametrize(
    ("bias", "low", "high"),
    [
        (2.0, -2.6, -1.4),  # favoured new class: moved down by about its bias
        (-2.0, 1.4, 2.6),  # disfavoured: moved up
        (0.0, -0.6, 0.6),  # unbiased: about nothing
    ],
)
def test_the_offset_undoes_a_bias_of_the_new_classes(bias, low, high):
    logits, labels = _validation(bias, per_class=200)
    fitted = fit_offset(logits, labels, NEW, CLASSES)
    assert low <= fitted.offset <= high, fitted
    assert fitted.loss_after <= fitted.loss_before
    assert fitted.classes == ("rolled_in_scale",) and fitted.validation_images == 600
    assert "moved by" in fitted.note


def test_the_offset_is_bounded_and_prefers_the_smallest_on_a_tie():
    logits, labels = _validation(0.0)
    logits[:, 2] += 50.0  # no offset within the bound undoes this
    assert fit_offset(logits, labels, NEW, CLASSES).offset == -MAX_OFFSET
    # Perfectly separated by a huge margin: every small offset fits the same; none is taken.
    separated = np.eye(3)[labels] * 1000.0
    none = fit_offset(separated, labels, NEW, CLASSES)
    assert none.offset == 0.0 and "by +0.00" in none.note


def test_each_class_counts_the_same_in_the_loss():
    logits = np.array([[5.0, 0.0], [5.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0, 0, 1])
    per_image = np.log1p(np.exp(-5.0)) * 3 / 4 + np.log1p(np.exp(-1.0)) / 4
    per_class = (np.log1p(np.exp(-5.0)) + np.log1p(np.exp(-1.0))) / 2
    assert balanced_loss(logits, labels) == pytest.approx(per_class)
    assert balanced_loss(logits, labels) != pytest.approx(per_image)


@pytest.mark.parametrize(
    ("drop", "said"),
    [
        ("new", f"too few validation images of a new class (rolled_in_scale {MIN_IMAGES - 1})"),
        ("old", f"too few validation images of the old classes ({MIN_IMAGES - 1})"),
    ],
)
def test_too_few_validation_images_leave_the_logits_as_they_are(drop, said):
    logits, labels = _validation(3.0)
    if drop == "new":
        keep = np.r_[np.flatnonzero(labels < 2), np.flatnonzero(labels == 2)[: MIN_IMAGES - 1]]
    else:
        keep = np.r_[np.flatnonzero(labels == 0)[: MIN_IMAGES - 1], np.flatnonzero(labels == 2)]
    fitted = fit_offset(logits[keep], labels[keep], NEW, CLASSES)
    assert fitted.offset == 0.0 and fitted.loss_before is None
    assert fitted.note == f"{said}: not calibrated"
    assert fitted.to_doc()["classes"] == ["rolled_in_scale"]
