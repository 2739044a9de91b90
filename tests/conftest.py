"""Shared fixtures: real servers for the session, fresh stores per test.

Servers come from :mod:`tests.servers`; set ``INSPECTOR_TEST_REDIS_URL`` /
``INSPECTOR_TEST_S3_URL`` to use servers you run yourself instead (see its docstring).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.local import LocalStore
from storage.s3 import S3Store
from tests.factories import fill_store
from tests.servers import (
    ExternalRedis,
    ExternalS3,
    RedisServer,
    S3Server,
    redis_for_tests,
    s3_for_tests,
    unique_bucket_name,
)
from tests.training_support import OLD, run


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | ExternalRedis]:
    """One Redis for the session; ``.managed`` is False for an external one (cannot stop)."""
    server = redis_for_tests()
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server | ExternalS3]:
    """One S3 server for the session: moto, or the real one in ``INSPECTOR_TEST_S3_URL``."""
    server = s3_for_tests()
    yield server
    server.close()


@pytest.fixture
def s3_store(s3_server: S3Server | ExternalS3) -> Iterator[S3Store]:
    """An S3Store on a fresh, uniquely named bucket."""
    store = S3Store(
        s3_server.endpoint,
        unique_bucket_name(),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    store.ensure_bucket()
    yield store
    store.close()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A LocalStore in a fresh directory."""
    return LocalStore(tmp_path / "store")


# --- prepared stores for the training, promotion and serving tests (made once) -----


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
