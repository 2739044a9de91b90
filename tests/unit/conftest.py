"""Prepared stores for the training and promotion tests, made once per session and
copied for each test that changes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage.local import LocalStore
from tests.factories import fill_store
from tests.training_support import OLD, run


@pytest.fixture(scope="session")
def labelled_template(tmp_path_factory) -> Path:
    """A store with 360 labelled, ingested parts of three classes."""
    root = tmp_path_factory.mktemp("labelled") / "store"
    fill_store(LocalStore(root), 360, mix=OLD, seed=11, size=48)
    return root


@pytest.fixture(scope="session")
def trained_template(labelled_template, tmp_path_factory) -> tuple[Path, dict]:
    """That store after one from-scratch run (version 1, not yet assessed)."""
    root = tmp_path_factory.mktemp("trained") / "store"
    shutil.copytree(labelled_template, root)
    result = run(LocalStore(root), tmp_path_factory.mktemp("cache"))
    assert result["state"] == "succeeded", result
    return root, result
