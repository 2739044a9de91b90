"""Object storage: one contract, a local-directory backend and an S3 (MinIO) backend."""

from storage.base import (
    InvalidKey,
    NotFound,
    ObjectInfo,
    ObjectStore,
    PreconditionFailed,
    StoreError,
    Unavailable,
)
from storage.factory import open_store

__all__ = [
    "InvalidKey",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "PreconditionFailed",
    "StoreError",
    "Unavailable",
    "open_store",
]
