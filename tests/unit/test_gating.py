"""The gate, table-driven: a pure function of (candidate, production, policy)."""

from __future__ import annotations

import pytest

from inspector import gating
from inspector.gating import Change, Floors, Policy, Significance

POLICY = Policy(
    floors=Floors(accuracy=0.9, macro_f1=0.85, max_escape_rate=0.05, max_false_reject_rate=0.1),
    change=Change(
        max_accuracy_drop=0.01, max_escape_rate_increase=0.0, max_false_reject_rate_increase=0.02
    ),
    max_recall_drop=0.05,
    significance=Significance(alpha=0.05, require="not_worse"),
)


def metrics(
    accuracy=0.95,
    macro_f1=0.93,
    escape=0.02,
    false_reject=0.05,
    recall=None,
    correct=None,
    count=100,
):
    recall = recall or {"ok": 0.97, "scratch": 0.9}
    correct = (
        correct
        if correct is not None
        else [True] * int(accuracy * count) + [False] * (count - int(accuracy * count))
    )
    return {
        "heldout": {
            "count": count,
            "accuracy": accuracy,
            "macro_f1": macro_f1,
            "escape_rate": escape,
            "false_reject_rate": false_reject,
            "per_class": {
                k: {"recall": v, "precision": 0.9, "f1": 0.9, "support": 10}
                for k, v in recall.items()
            },
            "image_ids": [f"{i:064x}" for i in range(count)],
            "correct": correct,
        }
    }


CASES = [
    # (name, candidate, production, policy, blessed, mode, failing metrics)
    ("no policy blesses nothing", metrics(), metrics(), None, False, "no_policy", set()),
    ("floors only without production", metrics(), None, POLICY, True, "floors_only", set()),
    (
        "floor failure without production",
        metrics(accuracy=0.85),
        None,
        POLICY,
        False,
        "floors_only",
        {"accuracy"},
    ),
    ("equal to production passes", metrics(), metrics(), POLICY, True, "against_production", set()),
    (
        "escape rate above its ceiling",
        metrics(escape=0.06),
        metrics(escape=0.06),
        POLICY,
        False,
        "against_production",
        {"escape_rate"},
    ),
    (
        "escape rate may not rise at all",
        metrics(escape=0.03),
        metrics(escape=0.02),
        POLICY,
        False,
        "against_production",
        {"escape_rate_change"},
    ),
    (
        "accuracy drop within tolerance",
        metrics(accuracy=0.945),
        metrics(accuracy=0.95),
        POLICY,
        True,
        "against_production",
        set(),
    ),
    (
        "accuracy drop beyond tolerance",
        metrics(accuracy=0.93),
        metrics(accuracy=0.95),
        POLICY,
        False,
        "against_production",
        {"accuracy_change"},
    ),
    (
        "forgetting a class",
        metrics(recall={"ok": 0.99, "scratch": 0.8}),
        metrics(),
        POLICY,
        False,
        "against_production",
        {"recall_change"},
    ),
    (
        "a class production never knew is not a regression",
        metrics(recall={"ok": 0.97, "scratch": 0.9, "dent": 0.5}),
        metrics(),
        POLICY,
        True,
        "against_production",
        set(),
    ),
]


@pytest.mark.parametrize(
    ("candidate", "production", "policy", "blessed", "mode", "failing"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_gate(candidate, production, policy, blessed, mode, failing):
    decision = gating.decide(
        candidate,
        production,
        policy,
        candidate_version=2,
        baseline_version=1 if production else None,
    )
    assert decision.blessed is blessed
    assert decision.mode == mode
    assert {c.metric for c in decision.checks if not c.passed} == failing
    assert decision.sentence.startswith(("Blessed", "Not blessed", "No production model yet"))
    if production is None and policy is not None:
        assert "floors only" in decision.sentence
    if policy is None:
        assert "no gate policy" in decision.sentence


def test_every_check_names_metric_slice_threshold_and_value():
    decision = gating.decide(
        metrics(accuracy=0.85), metrics(), POLICY, candidate_version=2, baseline_version=1
    )
    check = next(c for c in decision.checks if c.metric == "accuracy")
    assert (check.slice, check.threshold, check.observed, check.passed) == (
        "heldout",
        0.9,
        0.85,
        False,
    )
    assert "accuracy is 85.0%" in decision.sentence and "more failed check" in decision.sentence
    assert decision.to_doc()["checks"][0]["rule"]


def test_golden_sets_get_the_floors_too():
    candidate = metrics()
    candidate["golden:week1"] = {**metrics(accuracy=0.5)["heldout"], "count": 10}
    decision = gating.decide(candidate, None, POLICY)
    assert not decision.blessed
    assert any(c.slice == "golden:week1" and not c.passed for c in decision.checks)


@pytest.mark.parametrize(
    ("only_candidate", "only_production", "require", "passes"),
    [
        (0, 0, "better", False),  # identical: not better
        (12, 1, "better", True),  # clearly better
        (6, 4, "better", False),  # better by noise: not promoted
        (6, 4, "not_worse", True),
        (1, 12, "not_worse", False),  # clearly worse
    ],
)
def test_mcnemar_decides_on_the_paired_outcomes(only_candidate, only_production, require, passes):
    n = 100
    both = n - only_candidate - only_production
    cand = [True] * both + [True] * only_candidate + [False] * only_production
    prod = [True] * both + [False] * only_candidate + [True] * only_production
    policy = Policy(significance=Significance(alpha=0.05, require=require))
    decision = gating.decide(metrics(correct=cand, count=n), metrics(correct=prod, count=n), policy)
    assert decision.blessed is passes
    assert decision.mcnemar["only_candidate_right"] == only_candidate


def test_mcnemar_exact_values():
    assert gating.mcnemar_exact(0, 0) == 1.0
    assert gating.mcnemar_exact(5, 5) == 1.0
    assert gating.mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert gating.mcnemar_exact(0, 10) == gating.mcnemar_exact(10, 0)


def test_unpaired_images_are_refused():
    other = metrics()
    other["heldout"]["image_ids"] = list(reversed(other["heldout"]["image_ids"]))
    with pytest.raises(Exception, match="different images"):
        gating.decide(metrics(), other, POLICY)


def test_the_shipped_policy_file_parses(tmp_path):
    from pathlib import Path

    policy = gating.load_policy(Path(__file__).resolve().parents[2] / "deploy" / "gate-policy.toml")
    assert (
        policy is not None
        and policy.floors.accuracy == 0.9
        and policy.significance.require == "better"
    )
    assert gating.load_policy("") is None
    bad = tmp_path / "bad.toml"
    bad.write_text("[floors]\naccuracyy = 0.9\n")
    with pytest.raises(gating.PolicyError, match="unknown keys"):
        gating.load_policy(bad)
    with pytest.raises(gating.PolicyError, match="does not exist"):
        gating.load_policy(tmp_path / "missing.toml")
