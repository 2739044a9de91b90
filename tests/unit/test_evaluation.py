"""Metrics on hand-made predictions: every number checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.evaluation import classification_metrics, expected_calibration_error

CLASSES = ["ok", "scratch", "pit"]


def one_hot(predicted: list[str], confidence: float = 0.9) -> np.ndarray:
    rest = (1 - confidence) / (len(CLASSES) - 1)
    return np.array([[confidence if c == p else rest for c in CLASSES] for p in predicted])


def test_escape_and_false_reject_rates():
    labels = ["ok", "ok", "ok", "ok", "scratch", "scratch", "pit", "pit"]
    predicted = ["ok", "ok", "ok", "pit", "scratch", "ok", "pit", "scratch"]
    m = classification_metrics([f"{i}" for i in range(8)], labels, one_hot(predicted), CLASSES)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["escape_rate"] == pytest.approx(1 / 4)  # one of four defective parts judged ok
    assert m["false_reject_rate"] == pytest.approx(1 / 4)  # one of four ok parts judged defective
    assert m["per_class"]["scratch"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["ok"]["recall"] == 0.75 and m["per_class"]["ok"]["precision"] == 0.75
    assert m["confusion"]["labels"] == CLASSES
    assert m["confusion"]["matrix"] == [[3, 0, 1], [1, 1, 0], [0, 1, 1]]
    assert m["correct"] == [True, True, True, False, True, False, True, False]
    assert m["macro_f1"] == pytest.approx(np.mean([0.75, 0.5, 0.5]))


def test_a_class_the_model_does_not_know_counts_as_missed():
    labels = ["ok", "dent"]
    m = classification_metrics(["a", "b"], labels, one_hot(["ok", "scratch"]), CLASSES)
    assert m["per_class"]["dent"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["confusion"]["labels"] == [*CLASSES, "dent"]
    assert m["escape_rate"] == 0.0 and m["accuracy"] == 0.5


def test_calibration_error():
    assert expected_calibration_error(
        np.array([0.9] * 10), np.array([1.0] * 9 + [0.0])
    ) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([0.95] * 4), np.array([0.0] * 4)) == pytest.approx(
        0.95
    )
    assert expected_calibration_error(np.zeros(0), np.zeros(0)) == 0.0
