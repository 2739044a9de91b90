"""MinIO, or any S3 server, as an object store through the ``minio`` SDK.

Errors are translated here, at the boundary: a missing key is :class:`NotFound`, a lost
conditional write :class:`PreconditionFailed`, and anything transient (connection
refused, timeouts, 5xx, throttling) :class:`Unavailable`, so retry logic stays generic.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error, ServerError

from storage.base import (
    NotFound,
    ObjectInfo,
    ObjectStore,
    PreconditionFailed,
    StoreError,
    Unavailable,
)

_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
_TRANSIENT_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "XMinioServerNotInitialized",
    "XMinioStorageFull",
    "ConditionalRequestConflict",
}

# What the connection layer raises when the server is down, slow or cut off mid-reply.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def http_client(connect_timeout: float) -> urllib3.PoolManager:
    """A pool that fails fast when the server is down (the SDK's default waits minutes)."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=connect_timeout * 6),
        maxsize=32,
        retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
    )


class S3Store(ObjectStore):
    """Objects under ``prefix`` in one bucket of an S3-compatible server."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        *,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise StoreError(f"S3 endpoint {endpoint!r} must look like http(s)://host:port")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self._client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parts.scheme == "https",
            region=region,
            http_client=http_client(timeout),
        )

    # --- translation at the boundary ----------------------------------------------------
    def _translate(self, key: str, exc: BaseException) -> StoreError:
        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND_CODES:
                return NotFound(key)
            if exc.code == "PreconditionFailed":
                return PreconditionFailed(key)
            if exc.code == "NoSuchBucket":
                return Unavailable(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}; create it first"
                )
            if exc.code in _TRANSIENT_CODES:
                return Unavailable(f"{self.endpoint}: {exc.code}: {exc.message}")
            return StoreError(f"{self.endpoint}: {exc.code}: {exc.message}")
        if isinstance(exc, ServerError):
            return Unavailable(f"{self.endpoint}: HTTP {exc.status_code}")
        if isinstance(exc, (MinioException, *_CONNECTION_ERRORS)):
            return Unavailable(f"{self.endpoint} unreachable: {exc.__class__.__name__}: {exc}")
        raise exc

    def _name(self, key: str) -> str:
        return self.prefix + key

    # --- primitives ---------------------------------------------------------------------
    def _put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                self.bucket, self._name(key), io.BytesIO(data), len(data), content_type=content_type
            )
        except Exception as exc:
            raise self._translate(key, exc) from exc

    def _put_if_absent(self, key: str, data: bytes, content_type: str) -> bool:
        # S3 conditional writes (If-None-Match: *) are atomic on MinIO and AWS. The public
        # put_object() cannot send the header, so this calls the SDK's single-part PUT.
        headers: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": content_type,
            "If-None-Match": "*",
        }
        try:
            self._client._put_object(self.bucket, self._name(key), data, headers=headers)
        except Exception as exc:
            err = self._translate(key, exc)
            if isinstance(err, PreconditionFailed):
                return False
            raise err from exc
        return True

    def _put_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            self._client.fput_object(
                self.bucket, self._name(key), str(path), content_type=content_type
            )
        except FileNotFoundError as exc:
            raise StoreError(f"local file {path} does not exist") from exc
        except Exception as exc:
            raise self._translate(key, exc) from exc

    def _get(self, key: str) -> bytes:
        response = None
        try:
            response = self._client.get_object(self.bucket, self._name(key))
            return bytes(response.read())
        except Exception as exc:
            raise self._translate(key, exc) from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def _get_file(self, key: str, path: Path) -> None:
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            data = self._get(key)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _stat(self, key: str) -> ObjectInfo:
        try:
            obj = self._client.stat_object(self.bucket, self._name(key))
        except Exception as exc:
            err = self._translate(key, exc)
            if isinstance(err, NotFound):
                # A HEAD 404 has no body to say whether the key or the bucket is missing;
                # a missing bucket is a misconfiguration, not an absent object.
                self.ping()
            raise err from exc
        return ObjectInfo(
            key=key,
            size=int(obj.size or 0),
            etag=(obj.etag or "").strip('"'),
            modified=obj.last_modified or datetime.now(UTC),
        )

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        try:
            for obj in self._client.list_objects(
                self.bucket, prefix=self._name(prefix), recursive=True
            ):
                if obj.is_dir or obj.object_name is None:
                    continue
                yield ObjectInfo(
                    key=obj.object_name[len(self.prefix) :],
                    size=int(obj.size or 0),
                    etag=(obj.etag or "").strip('"'),
                    modified=obj.last_modified or datetime.now(UTC),
                )
        except StoreError:
            raise
        except Exception as exc:
            raise self._translate(prefix, exc) from exc

    def _delete(self, key: str) -> None:
        try:
            self._client.remove_object(self.bucket, self._name(key))
        except Exception as exc:
            err = self._translate(key, exc)
            if not isinstance(err, NotFound):
                raise err from exc

    def ping(self) -> None:
        """Raise :class:`Unavailable` unless the bucket answers."""
        try:
            found = self._client.bucket_exists(self.bucket)
        except Exception as exc:
            raise self._translate("", exc) from exc
        if not found:
            raise Unavailable(f"bucket {self.bucket!r} does not exist at {self.endpoint}")

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (for tests and single-node setups)."""
        try:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._translate("", exc) from exc
        except Exception as exc:
            raise self._translate("", exc) from exc

    def close(self) -> None:
        """Close pooled connections."""
        self._client._http.clear()
