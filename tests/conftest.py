"""Shared fixtures: real servers for the session, fresh stores per test.

Servers come from :mod:`tests.servers`; set ``INSPECTOR_TEST_REDIS_URL`` /
``INSPECTOR_TEST_S3_URL`` to use servers you run yourself instead (see its docstring).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.local import LocalStore
from storage.s3 import S3Store
from tests.servers import (
    ExternalRedis,
    ExternalS3,
    RedisServer,
    S3Server,
    redis_for_tests,
    s3_for_tests,
    unique_bucket_name,
)


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
