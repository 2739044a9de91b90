"""Open a store from a URL; the scheme picks the backend."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.base import ObjectStore, StoreError

KNOWN_SCHEMES = ("file", "s3")


def open_store(
    url: str,
    *,
    s3_endpoint: str = "",
    s3_access_key: str = "",
    s3_secret_key: str = "",
    s3_region: str = "us-east-1",
    timeout: float = 5.0,
) -> ObjectStore:
    """``file:///abs/dir`` → a local directory; ``s3://bucket/prefix`` → MinIO/S3."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        from storage.local import LocalStore

        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"store URL {url!r}: file URLs name a local path, file:///dir")
        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from storage.s3 import S3Store

        if not parts.netloc:
            raise StoreError(f"store URL {url!r} has no bucket; use s3://bucket/prefix")
        if not s3_endpoint:
            raise StoreError(f"store URL {url!r} needs an S3 endpoint (INSPECTOR_S3_ENDPOINT)")
        return S3Store(
            s3_endpoint,
            parts.netloc,
            parts.path.strip("/"),
            access_key=s3_access_key,
            secret_key=s3_secret_key,
            region=s3_region,
            timeout=timeout,
        )
    raise StoreError(
        f"store URL {url!r} has an unknown scheme {parts.scheme!r}; known schemes: "
        + ", ".join(f"{s}://" for s in KNOWN_SCHEMES)
    )
