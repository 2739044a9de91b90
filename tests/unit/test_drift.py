"""The population stability index, checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector import drift


def test_same_distribution_is_stable_and_a_shift_is_not():
    rng = np.random.default_rng(0)
    reference = rng.normal(100, 10, 5000)
    assert drift.psi(reference, rng.normal(100, 10, 2000)) < 0.02
    assert drift.psi(reference, rng.normal(80, 10, 2000)) > 1.0
    assert drift.psi(reference, rng.normal(100, 20, 2000)) > 0.25


def test_psi_formula_on_two_bins():
    # reference half/half, recent 80/20: PSI = (0.8-0.5)ln(0.8/0.5) + (0.2-0.5)ln(0.2/0.5)
    expected = 0.3 * math.log(1.6) - 0.3 * math.log(0.4)
    assert drift.psi_categorical({"ok": 50, "pit": 50}, {"ok": 80, "pit": 20}) == pytest.approx(
        expected, abs=1e-6
    )


def test_a_label_never_seen_in_training_counts_as_drift():
    assert drift.psi_categorical({"ok": 90, "pit": 10}, {"ok": 50, "pit": 10, "stain": 40}) > 1.0
    assert drift.psi_categorical({"ok": 1}, {}) == 0.0
    assert drift.psi([1.0, 2.0, 3.0], []) == 0.0
