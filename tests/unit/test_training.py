"""Training runs on simulated images, in-process: versions, warm starts, guards, errors.

Small images (32 px) and few epochs: the point is behaviour, not accuracy records.
"""

from __future__ import annotations

import json
import logging
import math
import shutil

import pytest

from inspector import datasets, records, registry, training
from storage.local import LocalStore
from tests.factories import fill_store
from tests.training_support import FAST, OLD, copy_store, run


@pytest.fixture(scope="module")
def trained(trained_template, tmp_path_factory):
    """Version 1 trained and approved as production."""
    template, result = trained_template
    root = tmp_path_factory.mktemp("approved") / "store"
    shutil.copytree(template, root)
    store = LocalStore(root)
    for action in ("register", "gate_passed", "approve"):
        registry.transition(store, result["version"], action, actor="test", role="operator")
    return root, result


@pytest.fixture
def store(labelled_template, tmp_path):
    return copy_store(labelled_template, tmp_path)


def test_a_run_publishes_a_complete_version(trained):
    root, result = trained
    store = LocalStore(root)
    version = registry.get_version(store, result["version"])
    names = set(version["files"])
    assert {
        "saved_model/saved_model.pb",
        "model.keras",
        "model.tflite",
        "classes.json",
        "history.json",
        "warmup.json",
    } <= names
    assert any(name.startswith("tensorboard/") for name in names)
    assert (
        version["files"][-1] == "saved_model/saved_model.pb"
        or "saved_model/saved_model.pb" in names
    )
    assert version["classes"] == ["ok", "pit", "scratch"]
    assert version["parent_version"] is None
    assert datasets.load_snapshot(store, version["snapshot_id"]).total == 360
    assert version["heldout"]["accuracy"] >= 0.6  # chance is 0.33
    assert version["heldout"]["skew_max_abs_diff"] < 1e-4
    assert abs(version["heldout"]["tflite_accuracy"] - version["heldout"]["accuracy"]) <= 0.05
    assert version["config"]["image_size"] == 48 and version["training"]["epochs_run"] == 14
    assert "averaged_epochs" not in version["training"]  # a first run keeps its best epoch
    assert version["input"] == {"height": 48, "width": 48, "channels": 3}
    assert version["good_classes"] == ["ok"] and version["head"] == "class_maps"
    point = version["operating_point"]
    assert 0 < point["threshold"] <= 0.5 and point["rule"] == "few_defects" and point["note"]
    # The line has a good class, so the trunk also learnt where pasted synthetic defects
    # are (inspector.synthetic_defects); the class accuracy counts those parts as defects.
    history = json.loads(
        store.get_bytes(registry.version_prefix(result["version"]) + "history.json")
    )
    assert {"anomaly_loss", "probabilities_accuracy", "val_loss"} <= set(history)
    assert all(math.isfinite(v) for v in history["anomaly_loss"])


def test_the_same_run_twice_trains_once(trained, tmp_path):
    root, result = trained
    store = copy_store(root, tmp_path)
    before = len(registry.list_versions(store))
    again = run(store, tmp_path, parent="none")  # same snapshot, parent and config: same run key
    assert again["state"] == "succeeded" and again["version"] == result["version"]
    assert len(registry.list_versions(store)) == before
    # A re-delivered run returns its recorded result.
    run_id = training.list_runs(store)[0]["run_id"]
    assert training.execute_run(store, run_id, cache_dir=tmp_path / "cache") == again


@pytest.mark.parametrize("distillation", [0.0, 1.0])
def test_warm_start_learns_a_new_class_and_keeps_the_old_ones(
    trained, tmp_path, caplog, distillation
):
    root, first = trained
    store = copy_store(root, tmp_path)
    fill_store(store, 120, mix={"crack": 1.0}, seed=12, size=48)
    # Without synthetic defects: on these 48-px parts a feature cell is a third of the part,
    # and with them this warm start forgot pits in one suite run of two (0.68 against the
    # 0.70 floor). What they do to a warm start at camera resolution is not measured yet
    # (BENCHMARKS.md, "Synthetic defects teach the small ones"). The fallback to a second
    # run is off: this test is about what the warm start itself keeps and learns.
    config = FAST.model_copy(
        update={
            "synthetic_defects": 0.0,
            "new_class_recall": 0.0,
            "kept_class_recall": 0.0,
            "distillation": distillation,
        }
    )
    with caplog.at_level(logging.INFO, logger="inspector"):
        second = run(store, tmp_path, config)  # parent: production (version 1)
    assert second["state"] == "succeeded", second
    distilled = any("keeps version 1's answers" in r.getMessage() for r in caplog.records)
    assert distilled == (distillation > 0)  # the parent taught beside the labels, or not
    old, new = (
        registry.get_version(store, first["version"]),
        registry.get_version(store, second["version"]),
    )
    assert new["parent_version"] == first["version"]
    assert new["classes"] == ["ok", "pit", "scratch", "crack"]
    assert "averaged_epochs" not in new["training"]  # a warm start keeps its best epoch
    assert (
        new["data"]["train"] < new["data"]["snapshot_counts"]["train"].get("ok", 0) + 200
    )  # new + replay only
    # The new class's logits calibrated on the validation images (inspector.calibration).
    offset = new["training"]["new_class_offset"]
    assert offset["classes"] == ["crack"] and offset["validation_images"] > 0
    assert abs(offset["offset"]) <= 4 and offset["note"]
    per_class = _heldout_accuracy_by_class(store, new, tmp_path)
    assert per_class["crack"] >= 0.6
    old_accuracy = old["heldout"]["accuracy"]
    for label in ("ok", "pit", "scratch"):
        assert per_class[label] >= old_accuracy - 0.25, (label, per_class, old_accuracy)


@pytest.mark.parametrize("fallback", ["shrink_perturb", "scratch"])
def test_a_warm_start_that_does_not_learn_its_new_class_trains_again_on_every_image(
    trained, tmp_path, caplog, fallback
):
    root, first = trained
    store = copy_store(root, tmp_path)
    fill_store(store, 120, mix={"crack": 1.0}, seed=12, size=48)
    # One step at a learning rate that moves nothing: the new class keeps the low bias
    # a grown head gives it, and no crack is recalled.
    config = FAST.model_copy(
        update={
            "fine_tune_epochs": 1,
            "fine_tune_min_steps": 1,
            "fine_tune_learning_rate": 1e-9,
            "new_class_recall": 0.8,
            "fallback": fallback,
        }
    )
    with caplog.at_level(logging.INFO, logger="inspector"):
        second = run(store, tmp_path, config)
    assert second["state"] == "succeeded", second
    doc = registry.get_version(store, second["version"])
    assert doc["data"]["train"] == sum(doc["data"]["snapshot_counts"]["train"].values())
    assert doc["plan"]["learning_rate"] == config.learning_rate  # a first run's plan
    assert f"warm start from version {first['version']} did not learn" in doc["note"]
    assert "crack 0%" in doc["note"]
    assert any("did not learn its new classes" in r.getMessage() for r in caplog.records)
    assert "crack" in doc["training"]["learned"]["recall"]  # the second run's own check
    if fallback == "scratch":
        assert doc["parent_version"] is None and "from scratch" in doc["note"]
        assert doc["classes"] == ["crack", "ok", "pit", "scratch"]  # a fresh head, sorted
    else:
        # The parent's weights, shrunk and perturbed: its lineage and its class order kept.
        parent = registry.get_version(store, first["version"])
        assert doc["parent_version"] == first["version"]
        assert "shrunk and perturbed" in doc["note"]
        assert doc["classes"] == [*parent["classes"], "crack"]
        assert doc["data"]["replayed"] == len(
            datasets.load_snapshot(store, parent["snapshot_id"]).split("train")
        )
        assert any(r.getMessage().startswith("refit from version") for r in caplog.records)
        # A refit keeps the mean of the weights of its schedule's second half (FAST: 14
        # epochs).
        assert doc["training"]["averaged_epochs"] == [8, 14]


def test_a_warm_start_that_forgets_a_class_its_parent_knew_trains_again(trained, tmp_path, caplog):
    root, first = trained
    store = copy_store(root, tmp_path)
    # A new class drawn exactly as an old one: "dent" parts are the simulator's pits, so
    # the warm start can only learn dents by judging pits (its replayed images among
    # them) dents too; at least 99 % of them are asked to stay pits.
    records.add_class(store, "dent", "pits by another name", by="test")
    fill_store(store, 120, mix={"pit": 1.0}, seed=12, size=48, label_as="dent")
    config = FAST.model_copy(update={"new_class_recall": 0.0, "kept_class_recall": 0.99})
    with caplog.at_level(logging.INFO, logger="inspector"):
        second = run(store, tmp_path, config)
    assert second["state"] == "succeeded", second
    doc = registry.get_version(store, second["version"])
    assert (
        f"warm start from version {first['version']} forgot classes its parent knew"
        in (doc["note"])
    )
    assert "pit " in doc["note"] and "shrunk and perturbed" in doc["note"]
    assert doc["data"]["train"] == sum(doc["data"]["snapshot_counts"]["train"].values())
    assert doc["plan"]["learning_rate"] == config.learning_rate  # a first run's plan
    assert doc["classes"] == ["ok", "pit", "scratch", "dent"]
    assert any("forgot classes its parent knew" in r.getMessage() for r in caplog.records)


def _heldout_accuracy_by_class(store, version, tmp_path):
    from inspector import export

    snapshot = datasets.load_snapshot(store, version["snapshot_id"])
    serving = export.ServingModel(
        registry.download_directory(store, version["version"], "saved_model", tmp_path / "sm")
    )
    result: dict[str, float] = {}
    for label in version["classes"]:
        entries = [e for e in snapshot.split("heldout") if e.label == label]
        images = [store.get_bytes(e.raw_key) for e in entries]
        predicted = [p.decode() for p in serving.predict_bytes(images)["label"]]
        result[label] = sum(p == label for p in predicted) / len(entries)
    return result


@pytest.mark.parametrize(
    ("prepare", "code"),
    [
        ("nothing", "empty_snapshot"),
        ("one_class", "single_class"),
        ("rotten_raw", "corrupt_dataset"),
        ("corrupt_cache", "corrupt_cache"),
    ],
)
def test_bad_data_fails_the_run_clearly_and_creates_no_version(tmp_path, prepare, code):
    store = LocalStore(tmp_path / "store")
    if prepare != "nothing":
        mix = {"ok": 1.0} if prepare == "one_class" else OLD
        ids = fill_store(store, 30, mix=mix, seed=13, size=32)
    if prepare == "rotten_raw":
        record = records.read_record(store, ids[0])
        store.put_bytes(record.raw_key, store.get_bytes(record.raw_key)[:-50] + bytes(50))
    if prepare == "corrupt_cache":
        # The first run fills the cache before it trains (one step: whether that step
        # learns anything does not matter here); then a cached file rots on disk.
        run(store, tmp_path, config=FAST.model_copy(update={"epochs": 1, "min_steps": 1}))
        files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
        assert len(files) >= 30, files
        cached = files[0]
        cached.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
        records.append_label(store, ids[1], "pit", "alice")  # a new snapshot, so a new run key
    versions_before = len(registry.list_versions(store))
    result = run(store, tmp_path, parent="none")
    assert result["state"] == "failed"
    assert result["code"] == code
    assert len(result["message"]) > 20
    assert len(registry.list_versions(store)) == versions_before


def test_a_diverging_run_fails_cleanly(store, tmp_path):
    config = FAST.model_copy(
        update={
            "learning_rate": 1.0,
            "lr_schedule": "constant",
            "epochs": 3,
            "divergence_factor": 2.0,
        }
    )
    result = run(store, tmp_path, config=config, parent="none")
    assert result["state"] == "failed" and result["code"] == "diverged", result
    assert registry.list_versions(store) == []


def test_the_guard_stops_on_nan_and_on_growth():
    from inspector.trainer import DivergenceGuard

    class Model:
        stop_training = False

    guard = DivergenceGuard(factor=10)
    guard.set_model(Model())
    guard.on_train_batch_end(0, {"loss": 1.0})
    guard.on_train_batch_end(1, {"loss": 5.0})
    assert guard.reason is None
    guard.on_train_batch_end(2, {"loss": float("nan")})
    assert guard.model.stop_training and "nan" in guard.reason
    grown = DivergenceGuard(factor=10)
    grown.set_model(Model())
    grown.on_train_batch_end(0, {"loss": 1.0})
    grown.on_train_batch_end(1, {"loss": 11.0})
    assert "diverged" in grown.reason


def test_new_data_is_detected_for_the_nightly_run(trained, tmp_path):
    root, result = trained
    store = copy_store(root, tmp_path)
    new, why = training.has_new_labelled_data(store)
    assert not new and f"since version {result['version']}" in why
    ids = fill_store(store, 2, mix=OLD, seed=14, size=32)
    new, why = training.has_new_labelled_data(store)
    assert new and "2 new or relabelled" in why
    assert ids


def test_parent_must_exist_and_input_must_match(trained, tmp_path):
    root, result = trained
    store = copy_store(root, tmp_path)
    with pytest.raises(registry.VersionNotFound):
        training.request_run(store, by="t", config=FAST, parent="99")
    fill_store(store, 10, mix=OLD, seed=15, size=32)
    mismatch = run(
        store,
        tmp_path,
        config=FAST.model_copy(update={"image_size": 40}),
        parent=str(result["version"]),
    )
    assert mismatch["state"] == "failed" and mismatch["code"] == "input_mismatch"


def test_the_nightly_run_is_skipped_without_new_data_and_says_why(trained, tmp_path, caplog):
    root, result = trained
    store = copy_store(root, tmp_path)
    with caplog.at_level("INFO", logger="inspector.training"):
        assert training.plan_nightly_run(store, FAST) is None
    assert (
        f"nightly training skipped: no labelled data since version {result['version']}"
        in caplog.text
    )
    fill_store(store, 3, mix=OLD, seed=16, size=32)
    planned = training.plan_nightly_run(store, FAST)
    assert planned is not None and planned["requested_by"] == "nightly"
    assert "3 new or relabelled" in planned["reason"]
    assert training.read_run(store, planned["run_id"])["state"] == "queued"


def test_the_nightly_schedule_is_a_cron_expression():
    from workers.celery_app import cron_schedule

    schedule = cron_schedule("30 2 * * 1-5")
    assert (
        schedule.hour == {2} and schedule.minute == {30} and schedule.day_of_week == {1, 2, 3, 4, 5}
    )
    with pytest.raises(ValueError, match="five cron fields"):
        cron_schedule("every night")


def test_a_first_run_trains_steps_per_class_with_or_without_good_parts(store):
    """Three classes with ok, 600 steps a class: 1,800 steps at the canvas of 1,020; the
    same parts without the good class (every part a defect, as on NEU): 2 × 600."""
    from dataclasses import replace

    from inspector import training_data
    from inspector.training import TrainConfig

    snapshot = datasets.take_snapshot(store, "t")
    config = TrainConfig(image_size=48, min_steps_per_class=600)
    with_good = training_data.select(store, snapshot, None, config)
    assert (with_good.plan.steps, with_good.plan.budget_steps) == (1800, 1020)
    defects_only = replace(
        snapshot,
        classes=("pit", "scratch"),
        entries=tuple(e for e in snapshot.entries if e.label != "ok"),
    )
    without = training_data.select(store, defects_only, None, config)
    assert without.good == [] and without.plan.steps == 1200


def test_a_run_out_of_time_trains_fewer_epochs_and_the_version_says_so(store, tmp_path):
    # A budget spent before the fit starts: the time budget lets the first two epochs run
    # (their pace is what it measures) and ends the fit there, instead of a late run.
    config = FAST.model_copy(update={"epochs": 3, "min_steps": 300, "time_budget_minutes": 1e-3})
    result = run(store, tmp_path, config=config, parent="none")
    assert result["state"] == "succeeded", result
    training_doc = registry.get_version(store, result["version"])["training"]
    assert training_doc["epochs_run"] == 2 and training_doc["steps"] == 200
    assert training_doc["shortened"]["planned_epochs"] == 3
    assert training_doc["shortened"]["epochs"] == 2
    assert not training_doc["stopped_early"]
