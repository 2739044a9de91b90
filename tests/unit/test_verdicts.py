"""Verdicts, the review queue and shadow-mode summaries in the store."""

from __future__ import annotations

import numpy as np
import pytest

from inspector import records, verdicts
from inspector.defect_maps import DefectMap
from tests.factories import fill_store

CLASSES = ["ok", "pit", "scratch"]


def test_a_verdict_names_its_version_and_says_ok_or_defect():
    verdict = verdicts.make_verdict("a" * 64, 3, CLASSES, [0.1, 0.7, 0.2], latency_ms=4.2)
    assert (verdict["label"], verdict["defect"], verdict["model_version"]) == ("pit", True, 3)
    assert verdict["confidence"] == 0.7 and verdict["probabilities"]["ok"] == 0.1
    assert verdict["p_defect"] == 0.9 and verdict["threshold"] == 0.5
    assert verdicts.make_verdict(None, 3, CLASSES, [0.9, 0.05, 0.05])["defect"] is False


def test_the_threshold_decides_and_a_defective_verdict_carries_its_map():
    grid = np.zeros((4, 2), np.float32)
    grid[1, 0] = 0.9
    # P(ok) 0.6 is the most probable class, but P(defect) 0.4 ≥ 0.25: defective.
    verdict = verdicts.make_verdict(
        None, 3, CLASSES, [0.6, 0.3, 0.1], threshold=0.25, defect_map=grid
    )
    assert verdict["defect"] and verdict["label"] == "pit"
    assert DefectMap.from_doc(verdict["defect_map"]).grid()[1, 0] == pytest.approx(0.9, abs=0.01)
    good = verdicts.make_verdict(
        None, 3, CLASSES, [0.99, 0.005, 0.005], threshold=0.25, defect_map=grid
    )
    assert not good["defect"] and not good["unsure"] and "defect_map" not in good


def test_verdicts_are_stored_once_per_version_and_unsure_ones_wait_for_review(local_store):
    sure, unsure = fill_store(local_store, 2, mix={"ok": 1.0}, seed=1, size=32, labelled=False)
    records_ = [
        verdicts.make_verdict(sure, 1, CLASSES, [0.95, 0.03, 0.02]),
        # P(defect) 0.6 is within one log-odds of the threshold 0.5: unsure.
        verdicts.make_verdict(unsure, 1, CLASSES, [0.4, 0.35, 0.25]),
    ]
    assert not records_[0]["unsure"] and records_[1]["unsure"]
    assert all(verdicts.record(local_store, v) for v in records_)
    assert not verdicts.record(local_store, records_[0])  # again: nothing new
    verdicts.record(local_store, verdicts.make_verdict(sure, 2, CLASSES, [0.9, 0.05, 0.05]))
    assert [v["model_version"] for v in verdicts.history(local_store, sure)] == [1, 2]
    assert verdicts.latest(local_store, sure)["model_version"] == 2
    queue = verdicts.review_queue(local_store)
    assert [v["image_id"] for v in queue] == [unsure]
    records.append_label(local_store, unsure, "pit", "alice", reason="review")
    assert verdicts.review_queue(local_store) == []
    assert verdicts.judged_ids(local_store) == {sure, unsure}


def test_shadow_summary_counts_agreement_and_accuracy_on_labelled_images(local_store):
    ids = fill_store(local_store, 4, mix={"ok": 1.0}, seed=2, size=32)
    for image_id, (candidate, production) in zip(
        ids, [("ok", "ok"), ("pit", "ok"), ("ok", "ok"), ("pit", "pit")], strict=True
    ):
        probs = [0.8 if c == candidate else 0.1 for c in CLASSES]
        verdicts.record_shadow(
            local_store,
            {**verdicts.make_verdict(image_id, 5, CLASSES, probs), "production_label": production},
        )
    records.append_label(local_store, ids[1], "pit", "alice")
    summary = verdicts.shadow_summary(local_store, 5)
    assert summary["images"] == 4 and summary["agreement"] == 0.75
    # fill_store labelled all four "ok"; ids[1] was relabelled "pit": 3 of 4 right
    assert summary["labelled"] == 4 and summary["accuracy_on_labelled"] == 0.75
    assert verdicts.shadow_summary(local_store, 6) is None
