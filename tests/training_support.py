"""Shared pieces of the training and promotion tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from inspector import training
from inspector.training import AugmentConfig, TrainConfig
from storage.local import LocalStore

OLD = {"ok": 0.34, "pit": 0.33, "scratch": 0.33}
# Small images (48 px) and few steps: the tests are about behaviour, not accuracy records.
FAST = TrainConfig(
    image_size=48,
    epochs=14,
    min_steps=300,
    min_steps_per_class=0,
    fine_tune_epochs=8,
    fine_tune_min_steps=150,
    patience=14,
    early_stopping_from_epoch=3,
    batch_size=32,
    learning_rate=0.002,
    fine_tune_learning_rate=0.001,
    replay_per_class=60,
    augmentation=AugmentConfig(flip=True, rotation=0, shift=0, brightness=0, contrast=0),
)


def copy_store(root: Path, tmp_path: Path) -> LocalStore:
    """A private copy of a prepared store."""
    shutil.copytree(root, tmp_path / "store")
    return LocalStore(tmp_path / "store")


def run(store, tmp_path: Path, config: TrainConfig = FAST, parent: str = "production") -> dict:
    """Request and execute one training run in-process."""
    request = training.request_run(store, by="test", config=config, parent=parent)
    return training.execute_run(store, request["run_id"], cache_dir=tmp_path / "cache")


def clone_version(store, source: int) -> int:
    """Publish a copy of version ``source`` as a new version (same model, new number):
    cheap extra versions for swap tests."""
    from inspector import records, registry

    number = registry.claim_version_number(store)
    prefix = registry.version_prefix(source)
    doc = registry.get_version(store, source)
    target = registry.version_prefix(number)
    for info in store.list(prefix):
        name = info.key[len(prefix) :]
        if name != registry.VERSION_DOC and not name.startswith("reports/"):
            store.put_bytes(target + name, store.get_bytes(info.key))
    doc = {k: v for k, v in doc.items() if k not in ("version", "files", "published_at")}
    doc["run_key"] = f"clone-{source}-{number}"
    store.put_if_absent(
        target + registry.VERSION_DOC, records.to_json({**doc, "version": number, "files": []})
    )
    return number
