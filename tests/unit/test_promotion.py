"""From candidate to production with real models: assess (evaluate, gate, infra check),
approve, reject, override, stale reports, auto-promotion, rollback."""

from __future__ import annotations

import shutil

import pytest

from inspector import promotion, registry, report_html
from inspector.gating import Floors, Policy, Significance
from inspector.promotion import ApprovalRefused
from storage.local import LocalStore
from tests.factories import fill_store
from tests.training_support import copy_store, run

LENIENT = Policy(
    floors=Floors(accuracy=0.4), significance=Significance(alpha=0.05, require="not_worse")
)
STRICT = Policy(floors=Floors(accuracy=0.999))


@pytest.fixture(scope="module")
def candidates(trained_template, tmp_path_factory):
    """Version 1 assessed (awaiting approval), and version 2 fine-tuned from it with a new
    class (not assessed yet)."""
    template, first = trained_template
    root = tmp_path_factory.mktemp("candidates") / "store"
    shutil.copytree(template, root)
    store = LocalStore(root)
    cache = tmp_path_factory.mktemp("cache")
    report = promotion.assess(store, first["version"], policy=LENIENT, cache_dir=cache)
    fill_store(store, 90, mix={"crack": 1.0}, seed=31, size=48)
    second = run(store, cache.parent, parent=str(first["version"]))
    assert second["state"] == "succeeded", second
    return root, first["version"], second["version"], report


def assess(store, number, tmp_path, policy=LENIENT, **kwargs):
    return promotion.assess(store, number, policy=policy, cache_dir=tmp_path / "cache", **kwargs)


def test_without_production_the_gate_uses_floors_only_and_says_so(candidates):
    root, v1, _, report = candidates
    store = LocalStore(root)
    assert report["decision"]["mode"] == "floors_only"
    assert report["sentence"].startswith("No production model yet: judged on absolute floors only.")
    assert report["production"] is None and report["blessed"]
    assert report["infra_check"]["ok"] and report["infra_check"]["max_abs_diff"] <= 1e-4
    held = report["candidate"]["slices"]["heldout"]
    assert {
        "accuracy",
        "macro_f1",
        "per_class",
        "escape_rate",
        "false_reject_rate",
        "confusion",
        "ece",
    } <= set(held)
    assert (
        report["candidate"]["latency_ms_per_image"] > 0 and report["candidate"]["model_bytes"] > 0
    )
    assert registry.read_state(store).state_of(v1) == "awaiting_approval"
    # Assessing again without asking for it returns the same report.
    again = promotion.assess(store, v1, policy=LENIENT, cache_dir=root.parent / "c2")
    assert again["report_id"] == report["report_id"]


def test_candidate_and_production_are_scored_on_the_identical_images(candidates, tmp_path):
    root, v1, v2, _ = candidates
    store = copy_store(root, tmp_path)
    promotion.approve(store, v1, actor="alice", role="operator", reason="first model")
    report = assess(store, v2, tmp_path)
    assert report["baseline_version"] == v1
    mine, theirs = (
        report["candidate"]["slices"]["heldout"],
        report["production"]["slices"]["heldout"],
    )
    assert mine["image_ids"] == theirs["image_ids"]
    # Production never learned "crack": its recall there is zero, the candidate's is not.
    assert theirs["per_class"]["crack"]["recall"] == 0.0 < mine["per_class"]["crack"]["recall"]
    assert report["decision"]["mode"] == "against_production"
    assert report["decision"]["mcnemar"]["only_candidate_right"] > 0


def test_a_failed_gate_needs_an_admin_override_with_a_reason(candidates, tmp_path):
    root, v1, v2, _ = candidates
    store = copy_store(root, tmp_path)
    promotion.approve(store, v1, actor="alice", role="operator", reason="first model")
    report = assess(store, v2, tmp_path, policy=STRICT)
    assert not report["blessed"] and "Not blessed: accuracy is" in report["sentence"]
    assert registry.read_state(store).state_of(v2) == "gate_failed"
    with pytest.raises(ApprovalRefused) as refused:
        promotion.approve(store, v2, actor="alice", role="operator", reason="please")
    assert refused.value.code == "gate_failed"
    with pytest.raises(ApprovalRefused) as not_admin:
        promotion.approve(store, v2, actor="alice", role="operator", reason="please", override=True)
    assert not_admin.value.code == "override_needs_admin"
    with pytest.raises(ApprovalRefused, match="reason"):
        promotion.approve(store, v2, actor="root", role="admin", reason=" ", override=True)
    event = promotion.approve(
        store, v2, actor="root", role="admin", reason="line stop otherwise", override=True
    )
    assert (
        event["action"] == "override"
        and event["override"] is True
        and event["report_id"] == report["report_id"]
    )
    assert registry.alias(store, "production") == v2
    back = promotion.rollback(store, actor="alice", role="operator", reason="false rejects up")
    assert back["version"] == v1 and registry.alias(store, "production") == v1
    actions = [(e["action"], e["version"], e["actor"]) for e in registry.audit_log(store)]
    assert actions[-3:] == [
        ("gate_failed", v2, "inspector"),
        ("override", v2, "root"),
        ("rollback", v1, "alice"),
    ]


def test_a_report_made_against_another_production_is_stale(candidates, tmp_path):
    root, v1, v2, _ = candidates
    store = copy_store(root, tmp_path)
    first = assess(store, v2, tmp_path)  # no production yet: floors only
    promotion.approve(store, v1, actor="alice", role="operator", reason="first model")
    with pytest.raises(registry.IllegalTransition) as stale:
        promotion.approve(store, v2, actor="alice", role="operator", reason="better")
    assert stale.value.code == "stale_report"
    second = assess(store, v2, tmp_path, again=True, actor="alice")
    assert second["report_id"] != first["report_id"] and second["baseline_version"] == v1
    if second["blessed"]:
        promotion.approve(store, v2, actor="alice", role="operator", reason="better")
        assert registry.alias(store, "production") == v2


def test_a_candidate_whose_saved_model_is_corrupt_fails_the_infra_check(candidates, tmp_path):
    root, _, v2, _ = candidates
    store = copy_store(root, tmp_path)
    key = next(
        info.key
        for info in store.list(registry.version_prefix(v2) + "saved_model/variables/")
        if info.key.endswith(".data-00000-of-00001")
    )
    store.put_bytes(key, store.get_bytes(key)[:100])  # a truncated variables file
    report = assess(store, v2, tmp_path)
    assert not report["blessed"] and report["infra_check"]["ok"] is False
    assert report["sentence"].startswith("Not blessed: the infra check failed")
    assert report["candidate"] is None  # never loaded into the worker itself
    assert registry.read_state(store).state_of(v2) == "gate_failed"
    assert "could not" in report_html.render(report) or "infra check failed" in report_html.render(
        report
    )


def test_without_a_policy_nothing_is_blessed(candidates, tmp_path):
    root, _, v2, _ = candidates
    store = copy_store(root, tmp_path)
    report = assess(store, v2, tmp_path, policy=None)
    assert not report["blessed"] and "no gate policy" in report["sentence"]
    assert registry.read_state(store).state_of(v2) == "gate_failed"


def test_rejected_candidates_never_serve(candidates, tmp_path):
    root, v1, _, _ = candidates
    store = copy_store(root, tmp_path)
    promotion.reject(
        store, v1, actor="alice", role="operator", reason="scratches missed at station 3"
    )
    assert registry.read_state(store).state_of(v1) == "rejected"
    with pytest.raises(registry.IllegalTransition):
        promotion.approve(store, v1, actor="alice", role="operator", reason="changed my mind")


def test_auto_promotion_promotes_a_blessed_candidate(candidates, tmp_path):
    root, v1, v2, _ = candidates
    store = copy_store(root, tmp_path)
    promotion.approve(store, v1, actor="alice", role="operator", reason="first model")
    report = assess(store, v2, tmp_path, auto_promote=True)
    if report["blessed"]:
        assert registry.alias(store, "production") == v2
        assert registry.audit_log(store)[-1]["actor"] == "auto-promotion"
    else:
        assert registry.alias(store, "production") == v1


def test_the_report_page_is_self_contained(candidates, tmp_path):
    root, v1, v2, _ = candidates
    store = copy_store(root, tmp_path)
    promotion.approve(store, v1, actor="alice", role="operator", reason="first model")
    page = report_html.render(assess(store, v2, tmp_path))
    assert page.count("<svg") >= 4 and "production version 1" in page and "McNemar" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in page
