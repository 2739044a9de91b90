"""ModelHolder: a version serves only after it loaded, warmed up and verified; a broken
one never serves and the old one keeps serving."""

from __future__ import annotations

import json

import pytest

from inspector import registry
from inspector.serving import LoadFailed, ModelHolder
from tests.factories import part_image
from tests.training_support import clone_version, copy_store


@pytest.fixture
def store(trained_template, tmp_path):
    root, _ = trained_template
    return copy_store(root, tmp_path)


def test_prepare_then_swap_between_batches(store, tmp_path):
    holder = ModelHolder(store, tmp_path / "models")
    assert holder.current is None and holder.status.state == "START"
    holder.prepare(1)
    assert holder.current is None  # loaded beside, not serving until the swap
    assert holder.swap_if_ready()
    assert holder.current.version == 1 and holder.status.state == "AVAILABLE"
    outputs = holder.current.predict([part_image("pit", seed=3, size=48)])
    assert outputs["probabilities"].shape == (1, 3)
    two = clone_version(store, 1)
    holder.prepare(two)
    assert holder.current.version == 1
    holder.swap_if_ready()
    assert holder.current.version == two and holder.status.swaps == 2
    assert not holder.swap_if_ready()  # nothing new


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated_variables", "cannot be loaded"),
        ("warmup_mismatch", "answers its warm-up requests differently"),
        ("class_list", "answers with classes"),
    ],
)
def test_a_broken_version_never_serves(store, tmp_path, damage, message):
    holder = ModelHolder(store, tmp_path / "models")
    holder.prepare(1)
    holder.swap_if_ready()
    bad = clone_version(store, 1)
    prefix = registry.version_prefix(bad)
    if damage == "truncated_variables":
        key = next(
            i.key for i in store.list(prefix + "saved_model/variables/") if ".data-" in i.key
        )
        store.put_bytes(key, store.get_bytes(key)[:64])
    elif damage == "warmup_mismatch":
        warmup = json.loads(store.get_bytes(prefix + "warmup.json"))
        warmup["probabilities"] = [[1.0, 0.0, 0.0] for _ in warmup["probabilities"]]
        store.put_bytes(prefix + "warmup.json", json.dumps(warmup).encode())
    else:
        doc = registry.get_version(store, bad)
        store.delete(prefix + "version.json")
        store.put_bytes(
            prefix + "version.json",
            json.dumps({**doc, "classes": ["ok", "scratch", "pit"]}).encode(),
        )
    with pytest.raises(LoadFailed, match=message):
        holder.prepare(bad)
    assert not holder.swap_if_ready()
    assert holder.current.version == 1 and holder.status.state == "AVAILABLE"
    assert message.split()[0] in holder.status.last_error or holder.status.last_error


def test_an_operators_threshold_applies_to_the_loaded_version_without_a_reload(store, tmp_path):
    holder = ModelHolder(store, tmp_path / "models")
    holder.prepare(1)
    holder.swap_if_ready()
    loaded = holder.current
    trained = registry.get_version(store, 1)["operating_point"]["threshold"]
    assert loaded.threshold == trained and loaded.good == ["ok"]
    for action in ("register", "gate_passed"):
        registry.transition(store, 1, action, actor="t", role="system")
    registry.transition(
        store, 1, "approve", actor="alice", role="operator", reason="r", extra={"threshold": 0.9}
    )
    holder.apply_thresholds(registry.read_state(store))
    assert holder.current is loaded and loaded.threshold == 0.9  # the same object: no reload
    assert holder.status.swaps == 1
