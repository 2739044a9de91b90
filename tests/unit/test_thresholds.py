"""The operating threshold: chosen on validation scores, applied to one part's probabilities."""

from __future__ import annotations

import pytest

from inspector import thresholds
from inspector.thresholds import choose, judge

# (P(defect) of the good parts, of the defective parts, target escape rate) →
# (threshold, rule, validation escape rate, validation false-reject rate)
CASES = {
    # Few defects (< 1/0.01 = 100): every one must be caught. The lowest defect scores 0.6,
    # the highest good part below it 0.2: any threshold in (0.2, 0.6] rejects no good part;
    # a quarter of the way from 0.2 in log-odds: σ(logit 0.2 + (logit 0.6 − logit 0.2) / 4).
    "few defects: a quarter into the free interval": (
        [0.05, 0.1, 0.2],
        [0.6, 0.9, 0.95],
        0.01,
        (0.281233, "few_defects", 0.0, 0.0),
    ),
    # A good part above the lowest defect cannot be saved: it stays a false reject, and
    # the threshold sits between the lowest defect and the good part just below it.
    "a good part above the lowest defect is rejected": (
        [0.1, 0.3, 0.8],
        [0.5, 0.9],
        0.01,
        (0.346271, "few_defects", 0.0, 1 / 3),
    ),
    # Every good part below every defect, but the threshold (0.739) is above 0.5: capped,
    # and the good part at 0.6 is rejected.
    "few defects: capped at 0.5": (
        [0.01, 0.6],
        [0.95, 0.99],
        0.01,
        (0.5, "few_defects", 0.0, 0.5),
    ),
    # Ties: a good part with exactly the lowest defect's score is rejected (≥).
    "ties are rejected": (
        [0.1, 0.3],
        [0.3, 0.9],
        0.01,
        (0.134733, "few_defects", 0.0, 0.5),
    ),
    # No good part below the lowest defect: the threshold is that defect's score.
    "no good part below": ([0.7, 0.8], [0.4, 0.45], 0.01, (0.4, "few_defects", 0.0, 1.0)),
    # Enough defects (≥ 1/0.25 = 4) to estimate 25 %: one of four may escape, so the
    # threshold passes the lowest (0.1) and must catch 0.5; the good parts at 0.2 and 0.3
    # lie below: a quarter into (0.3, 0.5].
    "target met with the fewest false rejects": (
        [0.2, 0.3, 0.7],
        [0.1, 0.5, 0.8, 0.9],
        0.25,
        (0.346271, "target", 0.25, 1 / 3),
    ),
    "no defective validation images": ([0.2, 0.6], [], 0.01, (0.5, "no_defects", None, 0.5)),
    # One freak defect far below every good part: catching it would reject all of them.
    # It is let through (1 of 5 escapes), and the threshold separates the rest.
    "few defects: an outlier is not caught at any cost": (
        [0.05, 0.1, 0.2],
        [0.01, 0.6, 0.9, 0.95, 0.97],
        0.01,
        (0.281233, "few_defects", 0.2, 0.0),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_threshold_meets_the_target_with_the_fewest_false_rejects(case):
    good, defective, target, (threshold, rule, escape, false_reject) = CASES[case]
    point = choose(good + defective, [False] * len(good) + [True] * len(defective), target)
    assert point.threshold == pytest.approx(threshold, abs=1e-6)
    assert point.rule == rule
    assert point.escape_rate == (None if escape is None else pytest.approx(escape))
    assert point.false_reject_rate == pytest.approx(false_reject)
    assert point.validation_defective == len(defective)
    assert point.note  # the report says how it was chosen


def test_too_few_defects_is_said_in_words():
    point = choose([0.1, 0.9, 0.8], [False, True, True], 0.01)
    assert "only 2 defective validation images" in point.note and "100" in point.note


def test_an_operating_point_round_trips():
    point = choose([0.1, 0.2, 0.9], [False, False, True], 0.05)
    assert thresholds.OperatingPoint.from_doc(point.to_doc()) == point


CLASSES = ["ok", "pit", "scratch"]


def test_a_part_is_defective_from_the_threshold_on_whichever_class_is_most_probable():
    # P(ok) is the largest single class, yet P(defect) = 0.55 ≥ 0.3: defective, and of the
    # most probable defect class.
    verdict = judge([0.45, 0.35, 0.2], CLASSES, ["ok"], 0.3)
    assert verdict.defect and verdict.label == "pit"
    assert verdict.p_defect == pytest.approx(0.55)
    assert verdict.confidence == pytest.approx(0.35)
    assert verdict.type_confidence == pytest.approx(0.35 / 0.55)
    # The same part at a higher threshold is good.
    assert judge([0.45, 0.35, 0.2], CLASSES, ["ok"], 0.6).label == "ok"
    # Exactly at the threshold counts as defective.
    assert judge([0.5, 0.3, 0.2], CLASSES, ["ok"], 0.5).defect


def test_a_model_without_a_good_class_judges_every_part_defective():
    verdict = judge([0.2, 0.8], ["crazing", "scale"], ["ok"], None)
    assert verdict.defect and verdict.label == "scale" and verdict.p_defect == 1.0


def test_unsure_is_near_the_threshold_in_log_odds():
    assert thresholds.near_threshold(0.12, 0.1, 1.0)
    assert not thresholds.near_threshold(0.6, 0.1, 1.0)
    assert not thresholds.near_threshold(0.02, 0.1, 1.0)
    assert not thresholds.near_threshold(0.5, None, 1.0)


def test_curves_and_areas():
    p = [0.1, 0.4, 0.35, 0.8]
    defective = [False, False, True, True]
    curves = thresholds.curves(p, defective)
    assert curves["auroc"] == pytest.approx(0.75)
    assert curves["roc"][-1]["tpr"] == 1.0 and curves["roc"][-1]["fpr"] == 1.0
    assert {"threshold", "precision", "recall"} <= set(curves["pr"][0])
    assert thresholds.curves([0.1], [False])["auroc"] is None
    rows = thresholds.trade_off(p, defective, 0.3)
    assert [r["odds_factor"] for r in rows] == [0.25, 0.5, 1.0, 2.0, 4.0]
    at = next(r for r in rows if r["odds_factor"] == 1.0)
    assert at["escape_rate"] == 0.0 and at["false_reject_rate"] == 0.5


# Twenty good parts (a 5 % false-reject rate is observable), five defects: the lowest
# defect (0.25) lies among the good parts' highest scores.
CEILING_GOOD = [0.05] * 17 + [0.2, 0.3, 0.4]
CEILING_DEFECTS = [0.25, 0.9, 0.95, 0.97, 0.99]
# (good, defective, ceiling) → (threshold, validation escape rate, false-reject rate)
CEILING_CASES = {
    # Catching 0.25 rejects 0.3 and 0.4 (10 % > 5 %): raised to reject one good part at
    # most, a quarter of the way from 0.3 (passed) to 0.4; the defect at 0.25 passes.
    "raised to the ceiling": (CEILING_GOOD, CEILING_DEFECTS, 0.05, (0.323696, 0.2, 0.05)),
    "within the ceiling: unchanged": (CEILING_GOOD, CEILING_DEFECTS, 0.10, (0.211756, 0.0, 0.1)),
    "off": (CEILING_GOOD, CEILING_DEFECTS, None, (0.211756, 0.0, 0.1)),
    # 19 good parts cannot show a 5 % rate: the rule without the ceiling.
    "too few good parts": (CEILING_GOOD[1:], CEILING_DEFECTS, 0.05, (0.211756, 0.0, 2 / 19)),
    # Rejecting fewer would take a threshold above 0.5: the threshold stays.
    "never above 0.5": (
        [0.05] * 17 + [0.6, 0.7, 0.8],
        [0.55, 0.9, 0.95, 0.97, 0.99],
        0.05,
        (0.103571, 0.0, 0.15),
    ),
}


@pytest.mark.parametrize("case", sorted(CEILING_CASES))
def test_the_last_few_defects_are_not_bought_with_more_false_rejects_than_the_ceiling(case):
    good, defective, ceiling, (threshold, escape, false_reject) = CEILING_CASES[case]
    point = choose(good + defective, [False] * len(good) + [True] * len(defective), 0.01, ceiling)
    assert point.rule == "few_defects"
    assert point.threshold == pytest.approx(threshold, abs=1e-6)
    assert point.escape_rate == pytest.approx(escape)
    assert point.false_reject_rate == pytest.approx(false_reject)
    assert ("raised to" in point.note) == (case == "raised to the ceiling")


def test_the_ceiling_leaves_a_measurable_target_alone():
    """With enough defects to estimate the escape rate, the target decides."""
    good = [0.05] * 17 + [0.2, 0.3, 0.4]
    defective = [0.25, 0.25] + [0.9] * 98  # one of 100 may escape: 0.25 must be caught
    point = choose(good + defective, [False] * 20 + [True] * 100, 0.01, 0.05)
    assert point.rule == "target" and point.escape_rate == 0.0
    assert point.false_reject_rate == pytest.approx(0.1)
