"""The API in-process (TestClient) on a real store and a real Redis broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from inspector.api.main import create_app
from inspector.config import Settings
from storage import ObjectStore

TOKENS = (
    "cam-1:camera:camera-secret-00001,"
    "alice:operator:operator-secret-0001,"
    "root:admin:admin-secret-000000001"
)
CAMERA = {"Authorization": "Bearer camera-secret-00001"}
OPERATOR = {"Authorization": "Bearer operator-secret-0001"}
ADMIN = {"Authorization": "Bearer admin-secret-000000001"}
MAX_UPLOAD_BYTES = 1_000_000


def with_db(url: str, db: int) -> str:
    """The same Redis server, another database (so tests do not share queues)."""
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture
def settings(tmp_path, redis_server) -> Settings:
    return Settings(
        data_dir=tmp_path,
        redis_url=with_db(redis_server.url, 1),
        tokens=TOKENS,
        max_upload_bytes=MAX_UPLOAD_BYTES,
    )


@pytest.fixture(params=["local", "s3"])
def any_store(request) -> ObjectStore:
    """Each backend in turn, for the tests that must hold on both."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def store(local_store) -> ObjectStore:
    return local_store


@pytest.fixture
def client(settings, store) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=store)) as test_client:
        yield test_client


def keys(store: ObjectStore) -> set[str]:
    """Every key in the store."""
    return {info.key for info in store.list("")}
