"""The object stores bench/ingest.py measures against: the embedded local-directory store
(on which file system it lies) and S3 (moto in server mode, or the MinIO in
``INSPECTOR_TEST_S3_URL``). Each backend makes a fresh store for an in-process phase,
points ``inspector run`` at a store of its own, counts and deletes what a phase wrote,
and stops what it started.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path

import httpx

from storage import ObjectStore
from storage.local import LocalStore
from storage.s3 import S3Store
from tests.servers import ExternalS3, S3Server, s3_for_tests


def filesystem(path: Path) -> str:
    """The mount and file-system type ``path`` lives on (fsync cost depends on it)."""
    best = ("?", "?", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best[1]):
                best = (device, mount, fstype)
    return f"{best[0]} on {best[1]} ({best[2]})"


def count(store: ObjectStore, prefix: str) -> int:
    """Objects under ``prefix``."""
    return sum(1 for _ in store.list(prefix))


class Backend:
    """Where one backend's stores live, and how the service is pointed at it."""

    name: str
    roots: dict[str, int]

    def fresh_store(self, label: str) -> ObjectStore:
        raise NotImplementedError

    def service_env(self, data_dir: Path) -> tuple[dict[str, str], ObjectStore]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def discard(self, store: ObjectStore) -> None:
        """Free what a finished phase wrote (gigabytes), outside any timed window."""
        for info in store.list(""):
            store.delete(info.key)

    def close(self) -> None:
        """Release what the backend started."""


class LocalBackend(Backend):
    name = "local"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.roots = {}

    def fresh_store(self, label: str) -> ObjectStore:
        return LocalStore(self.workdir / f"{label}-{secrets.token_hex(3)}")

    def service_env(self, data_dir: Path) -> tuple[dict[str, str], ObjectStore]:
        # Nothing to set: `inspector run` defaults to <data_dir>/store, as `make run` does.
        return {}, LocalStore(data_dir / "store")

    def describe(self) -> str:
        return f"LocalStore (fsync on) in {self.workdir}: {filesystem(self.workdir)}"

    def discard(self, store: ObjectStore) -> None:
        assert isinstance(store, LocalStore)
        shutil.rmtree(store.root, ignore_errors=True)


class S3Backend(Backend):
    name = "s3"

    def __init__(self) -> None:
        self.server: S3Server | ExternalS3 = s3_for_tests()
        server_proc = getattr(self.server, "_proc", None)
        self.roots = {"s3 server": server_proc.pid} if server_proc is not None else {}

    def _store(self, bucket: str, prefix: str = "") -> S3Store:
        return S3Store(
            self.server.endpoint,
            bucket,
            prefix,
            access_key=self.server.access_key,
            secret_key=self.server.secret_key,
        )

    def fresh_store(self, label: str) -> ObjectStore:
        return self._store(self.server.new_bucket())

    def service_env(self, data_dir: Path) -> tuple[dict[str, str], ObjectStore]:
        bucket = self.server.new_bucket()
        env = {
            "INSPECTOR_STORE_URL": f"s3://{bucket}/inspector",
            "INSPECTOR_S3_ENDPOINT": self.server.endpoint,
            "INSPECTOR_S3_ACCESS_KEY": self.server.access_key,
            "INSPECTOR_S3_SECRET_KEY": self.server.secret_key,
        }
        return env, self._store(bucket, "inspector")

    def describe(self) -> str:
        kind = "moto server mode" if isinstance(self.server, S3Server) else "external S3/MinIO"
        return f"S3Store against {self.server.endpoint} ({kind})"

    def discard(self, store: ObjectStore) -> None:
        if isinstance(self.server, S3Server):
            # moto keeps every object in memory; dropping all its state is instant.
            httpx.post(f"{self.server.endpoint}/moto-api/reset", timeout=30).raise_for_status()
        else:
            super().discard(store)

    def close(self) -> None:
        self.server.close()
