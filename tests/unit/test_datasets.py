"""Snapshots and the split: immutable, hash-stable, held-out never trains."""

from __future__ import annotations

import pytest

from inspector import datasets, records
from inspector.datasets import DatasetError, SplitPolicy
from tests.factories import fill_store

MIX = {"ok": 0.5, "pit": 0.25, "scratch": 0.25}


def test_the_split_is_a_function_of_the_content_hash_only():
    ids = [f"{n:064x}" for n in range(0, 2**256, 2**246)]
    policy = SplitPolicy(heldout=0.2, validation=0.1)
    first = {i: datasets.split_of(i, policy) for i in ids}
    assert first == {i: datasets.split_of(i, policy) for i in reversed(ids)}
    shares = {s: list(first.values()).count(s) / len(ids) for s in datasets.SPLITS}
    assert shares["heldout"] == pytest.approx(0.2, abs=0.05)
    assert shares["validation"] == pytest.approx(0.1, abs=0.05)


def test_adding_images_never_moves_an_existing_image_across_the_split(local_store):
    fill_store(local_store, 40, mix=MIX, seed=1, size=32)
    before = {e.image_id: e.split for e in datasets.take_snapshot(local_store, "t").entries}
    fill_store(local_store, 40, mix=MIX, seed=2, size=32)
    after = {e.image_id: e.split for e in datasets.take_snapshot(local_store, "t").entries}
    assert len(after) == 80
    assert {i: after[i] for i in before} == before


def test_a_snapshot_is_immutable_and_equal_data_gives_the_same_snapshot(local_store):
    ids = fill_store(local_store, 30, mix=MIX, seed=3, size=32)
    first = datasets.take_snapshot(local_store, "t")
    again = datasets.take_snapshot(local_store, "t")
    assert again.snapshot_id == first.snapshot_id
    records.append_label(local_store, ids[0], "crack", "alice")
    changed = datasets.take_snapshot(local_store, "t")
    assert changed.snapshot_id != first.snapshot_id
    reloaded = datasets.load_snapshot(local_store, first.snapshot_id)
    assert reloaded.entries == first.entries
    assert sum(sum(c.values()) for c in first.counts.values()) == first.total == 30
    assert "ok" in first.summary() and "heldout" in first.summary()


def test_golden_images_are_always_held_out(local_store):
    ids = fill_store(local_store, 30, mix=MIX, seed=4, size=32)
    train_ids = [e.image_id for e in datasets.take_snapshot(local_store, "t").split("train")][:3]
    datasets.pin_golden_set(local_store, "golden_a", train_ids, "alice")
    snapshot = datasets.take_snapshot(local_store, "t")
    golden = snapshot.split("golden:golden_a")
    assert {e.image_id for e in golden} == set(train_ids)
    assert all(e.split == "heldout" for e in golden)
    with pytest.raises(DatasetError, match="exists"):
        datasets.pin_golden_set(local_store, "golden_a", ids[:2], "bob")


def test_an_empty_store_has_no_snapshot(local_store):
    with pytest.raises(DatasetError) as caught:
        datasets.take_snapshot(local_store, "t")
    assert caught.value.code == "empty_snapshot"
    assert list(local_store.list("datasets/")) == []


def test_replay_sample_is_class_balanced(local_store):
    fill_store(local_store, 60, mix=MIX, seed=5, size=32)
    entries = datasets.take_snapshot(local_store, "t").entries
    sample = datasets.replay_sample(entries, per_class=5, seed=0)
    counts = {label: sum(1 for e in sample if e.label == label) for label in MIX}
    assert counts == {"ok": 5, "pit": 5, "scratch": 5}
    assert datasets.replay_sample(entries, 5, seed=0) == sample
