"""The object-store contract every backend implements, and the errors it speaks.

A backend implements a handful of primitives; callers see only these methods and
these errors, whatever the store underneath (a local directory, MinIO, any S3).
Keys are ``/``-separated relative paths, validated once here for every backend.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


class StoreError(Exception):
    """Base of every error a store raises."""


class NotFound(StoreError):
    """The key does not exist."""


class Unavailable(StoreError):
    """The store could not be reached or failed transiently; retrying may succeed."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the key already exists."""


class InvalidKey(StoreError, ValueError):
    """The key is not a safe relative path."""


MAX_KEY_LENGTH = 512
# File systems cap a name at 255 bytes; keys are ASCII, so the local store can hold any key.
MAX_SEGMENT_LENGTH = 255
# A segment may not start with "." so backends can keep temporary files beside objects.
_KEY_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_=@+-][A-Za-z0-9._=@+-]*$")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative path, else raise :class:`InvalidKey`."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key is longer than {MAX_KEY_LENGTH} characters")
    if key.startswith("/"):
        raise InvalidKey(f"key {key!r} is absolute; keys are relative paths")
    for segment in key.split("/"):
        if segment == "":
            raise InvalidKey(f"key {key!r} has an empty segment")
        if segment in (".", ".."):
            raise InvalidKey(f"key {key!r} has a {segment!r} segment")
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise InvalidKey(f"key {key!r} has a segment longer than {MAX_SEGMENT_LENGTH}")
        if not _KEY_SEGMENT_RE.match(segment):
            raise InvalidKey(
                f"key {key!r}: segments use A-Z a-z 0-9 . _ = @ + - and do not start with '.'"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key optionally ending in ``/``."""
    if prefix == "":
        return prefix
    # Strip one slash only: "a//" would match nothing on S3 but walk "a/" on a local store.
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object without reading it."""

    key: str
    size: int
    etag: str
    modified: datetime


class ObjectStore(abc.ABC):
    """Durable bytes by key. Writes are atomic: a reader sees the whole object or none."""

    #: URL this store was opened from, for logs and error messages.
    url: str = ""

    # --- primitives each backend implements ---------------------------------------------
    @abc.abstractmethod
    def _put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abc.abstractmethod
    def _put_if_absent(self, key: str, data: bytes, content_type: str) -> bool: ...

    @abc.abstractmethod
    def _put_file(self, key: str, path: Path, content_type: str) -> None: ...

    @abc.abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def _get_file(self, key: str, path: Path) -> None: ...

    @abc.abstractmethod
    def _stat(self, key: str) -> ObjectInfo: ...

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    def ping(self) -> None:
        """Raise :class:`Unavailable` if the store cannot be reached right now."""
        next(iter(self._list("")), None)

    # --- the public interface, validating once for all backends -------------------------
    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Write ``data`` at ``key``, replacing what was there, atomically."""
        self._put(validate_key(key), bytes(data), content_type)

    def put_if_absent(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        """Create ``key`` only if it does not exist; True if this call created it."""
        return self._put_if_absent(validate_key(key), bytes(data), content_type)

    def put_file(
        self, key: str, path: str | Path, content_type: str = "application/octet-stream"
    ) -> None:
        """Upload a local file to ``key``, atomically."""
        self._put_file(validate_key(key), Path(path), content_type)

    def get_bytes(self, key: str) -> bytes:
        """Read the whole object; :class:`NotFound` if absent."""
        return self._get(validate_key(key))

    def get_file(self, key: str, path: str | Path) -> None:
        """Download the object to ``path``; a partial download never appears there."""
        self._get_file(validate_key(key), Path(path))

    def stat(self, key: str) -> ObjectInfo:
        """Size, etag and modification time; :class:`NotFound` if absent."""
        return self._stat(validate_key(key))

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        return self._list(validate_prefix(prefix))

    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        self._delete(validate_key(key))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store must not be used afterwards."""
