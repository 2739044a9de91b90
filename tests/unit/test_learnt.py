"""The checks of whether a run learnt (inspector.learnt): table-driven, no training."""

from __future__ import annotations

import pytest

from inspector import learnt
from inspector.model_input import InputSpec
from inspector.train_config import TrainingPlan
from inspector.training import TrainingFailed
from inspector.training_data import TrainingData

CLASSES = ["ok", "pit", "scratch", "crack"]


def data(parent: int | None, new: tuple[str, ...] = ("crack",)) -> TrainingData:
    return TrainingData(
        classes=CLASSES,
        good=["ok"],
        train=[],
        validation=[],
        heldout=[],
        spec=InputSpec(48, 48, 3),
        plan=TrainingPlan(10, 3, 1e-3),
        parent=parent,
        new_images=0,
        replayed=0,
        new_classes=new if parent is not None else (),
    )


@pytest.mark.parametrize(
    ("recalls", "parent", "message"),
    [
        # Learnt the new class, kept the old ones: nothing to say.
        ({"ok": 0.95, "pit": 0.9, "scratch": 0.85, "crack": 0.81}, 1, None),
        # The new class under new_class_recall: not learnt (checked first).
        (
            {"ok": 0.95, "pit": 0.5, "scratch": 0.9, "crack": 0.3},
            1,
            "did not learn its new classes: it recalls crack 30%",
        ),
        # An old class under kept_class_recall: forgotten, every such class named.
        (
            {"ok": 0.7, "pit": 0.5, "scratch": 0.9, "crack": 1.0},
            1,
            "forgot classes its parent knew: it recalls ok 70%, pit 50% of their own",
        ),
        # Exactly at the floors: kept.
        ({"ok": 0.8, "pit": 0.8, "scratch": 0.8, "crack": 0.8}, 1, None),
        # A class without training images (no recall) is not judged.
        ({"ok": 0.9, "crack": 0.9}, 1, None),
        # A first run has no parent to keep classes of: the chance check alone judges it.
        ({"ok": 0.5, "pit": 0.5, "scratch": 0.9, "crack": 0.9}, None, None),
    ],
)
def test_a_warm_start_must_learn_its_new_classes_and_keep_the_old_ones(recalls, parent, message):
    if message is None:
        learnt.check_warm_start(recalls, data(parent), new=0.8, kept=0.8)
        return
    with pytest.raises(learnt.WarmStartFailed) as caught:
        learnt.check_warm_start(recalls, data(parent), new=0.8, kept=0.8)
    assert message in caught.value.message
    assert caught.value.code == "warm_start_failed"
    assert f"from version {parent}" in caught.value.message


def test_either_check_can_be_turned_off():
    forgot = {"ok": 0.1, "pit": 0.1, "scratch": 0.1, "crack": 0.1}
    learnt.check_warm_start(forgot, data(1), new=0.0, kept=0.0)
    with pytest.raises(learnt.WarmStartFailed, match="forgot"):
        learnt.check_warm_start(forgot, data(1), new=0.0, kept=0.8)
    with pytest.raises(learnt.WarmStartFailed, match="did not learn its new"):
        learnt.check_warm_start(forgot, data(1), new=0.8, kept=0.0)


def test_a_run_at_chance_did_not_learn():
    with pytest.raises(TrainingFailed, match="the model did not learn") as caught:
        learnt.check({"ok": 0.3, "pit": 0.3, "scratch": 0.3, "crack": 0.3}, epochs=5)
    assert caught.value.code == "did_not_learn"
    assert learnt.check({"ok": 1.0, "pit": 0.5}, epochs=5)["balanced_accuracy"] == 0.75
