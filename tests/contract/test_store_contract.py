"""One behaviour suite for every object store, subclassed per backend (Kombu style).

:class:`StoreContract` says what any :class:`~storage.base.ObjectStore` must do; each
``Test*Store`` subclass supplies the ``store`` fixture and adds what only its backend has.
A new backend proves itself by subclassing the contract, not by copying tests.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.base import (
    InvalidKey,
    NotFound,
    ObjectStore,
    StoreError,
    Unavailable,
)
from storage.factory import open_store
from storage.local import LocalStore
from storage.s3 import S3Store
from tests.servers import ExternalS3, S3Server, free_port, unique_bucket_name

MiB = 1 << 20

# Deliberately awkward neighbours: "-" and "." sort before "/", "_" after it, and
# "images/ab" is a partial segment of "images/abc".
LISTED_KEYS = [
    "a-c",
    "a.b",
    "a/b",
    "a_b",
    "images/ab-z",
    "images/ab/y",
    "images/abc/x",
    "z",
]

INVALID_KEYS = [
    "",
    "/abs",
    "a//b",
    "a/",
    "a/../b",
    "../x",
    "./x",
    ".hidden",
    "a/.tmp-x",
    "a\\b",
    "x\x00",
    "k" * 600,
    "s" * 256,
]
INVALID_PREFIXES = ["/", "/abs", "a//", "a//b", "../", "a/../", ".hidden", "a/.tmp", "x\x00"]

# The backend's primitives are exactly the abstract methods of the contract.
PRIMITIVES = sorted(ObjectStore.__abstractmethods__)

KeyOp = Callable[[ObjectStore, str, Path], object]
KEY_OPS: dict[str, KeyOp] = {
    "put_bytes": lambda s, k, p: s.put_bytes(k, b"x"),
    "put_if_absent": lambda s, k, p: s.put_if_absent(k, b"x"),
    "put_file": lambda s, k, p: s.put_file(k, p),
    "get_bytes": lambda s, k, p: s.get_bytes(k),
    "get_file": lambda s, k, p: s.get_file(k, p),
    "stat": lambda s, k, p: s.stat(k),
    "exists": lambda s, k, p: s.exists(k),
    "delete": lambda s, k, p: s.delete(k),
}


def short_id(key: str) -> str:
    """A readable test id for a possibly very long key."""
    return repr(key) if len(key) <= 20 else f"{key[:4]!r}...({len(key)} chars)"


def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    """The keys ``store.list(prefix)`` yields, in the order it yields them."""
    return [info.key for info in store.list(prefix)]


class StoreContract:
    """Behaviour every object store shows; subclasses override the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> ObjectStore:
        raise NotImplementedError("a backend's test class provides the store fixture")

    # --- bytes --------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "data",
        [b"", b"x", bytes(range(256)), random.Random(7).randbytes(MiB + 7)],
        ids=["empty", "one-byte", "all-byte-values", "1MiB+7"],
    )
    def test_put_then_get_returns_the_same_bytes(self, store: ObjectStore, data: bytes) -> None:
        store.put_bytes("images/raw/one.png", data)
        assert store.get_bytes("images/raw/one.png") == data
        assert store.stat("images/raw/one.png").size == len(data)

    def test_put_overwrites(self, store: ObjectStore) -> None:
        store.put_bytes("doc.json", b"first, the longer version")
        store.put_bytes("doc.json", b"second")
        assert store.get_bytes("doc.json") == b"second"
        assert keys(store) == ["doc.json"]

    def test_get_of_a_missing_key_is_not_found(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound):
            store.get_bytes("missing/key")
        with pytest.raises(NotFound):
            store.stat("missing/key")

    # --- metadata -----------------------------------------------------------------------
    def test_stat_reports_key_size_etag_and_aware_modified_time(self, store: ObjectStore) -> None:
        before = datetime.now(UTC)
        store.put_bytes("a/b.bin", b"12345")
        info = store.stat("a/b.bin")
        # S3 reports whole seconds, and a real server's clock may drift a little.
        slack = timedelta(minutes=2)
        assert (info.key, info.size) == ("a/b.bin", 5)
        assert isinstance(info.etag, str) and info.etag
        assert info.modified.utcoffset() is not None
        assert before - slack <= info.modified <= datetime.now(UTC) + slack

    def test_etag_changes_when_content_changes_even_at_the_same_size(
        self, store: ObjectStore
    ) -> None:
        store.put_bytes("k", b"aaaa")
        first = store.stat("k").etag
        store.put_bytes("k", b"bbbb")
        assert store.stat("k").etag != first

    def test_exists(self, store: ObjectStore) -> None:
        assert not store.exists("a/b")
        store.put_bytes("a/b", b"")
        assert store.exists("a/b")
        assert not store.exists("a")  # a prefix is not an object

    # --- files --------------------------------------------------------------------------
    def test_put_file_then_get_file_round_trips(self, store: ObjectStore, tmp_path: Path) -> None:
        files = tmp_path / "files"
        files.mkdir()
        source, target = files / "source.bin", files / "target.bin"
        source.write_bytes(random.Random(3).randbytes(MiB + 3))
        target.write_bytes(b"stale content is replaced")
        store.put_file("models/1/saved_model.pb", source)
        store.get_file("models/1/saved_model.pb", target)
        assert target.read_bytes() == source.read_bytes()
        assert sorted(p.name for p in files.iterdir()) == ["source.bin", "target.bin"]

    def test_get_file_of_a_missing_key_leaves_no_file(
        self, store: ObjectStore, tmp_path: Path
    ) -> None:
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        with pytest.raises(NotFound):
            store.get_file("missing", downloads / "missing.bin")
        assert list(downloads.iterdir()) == []

    def test_put_file_of_a_missing_local_file_is_not_a_missing_key(
        self, store: ObjectStore, tmp_path: Path
    ) -> None:
        with pytest.raises(StoreError) as caught:
            store.put_file("k", tmp_path / "nope.bin")
        assert not isinstance(caught.value, NotFound)
        assert not store.exists("k")

    # --- listing ------------------------------------------------------------------------
    @pytest.fixture
    def listed(self, store: ObjectStore) -> ObjectStore:
        """``store`` holding :data:`LISTED_KEYS`, written in shuffled order."""
        for key in random.Random(1).sample(LISTED_KEYS, len(LISTED_KEYS)):
            store.put_bytes(key, key.encode())
        return store

    def test_list_everything_in_key_order(self, listed: ObjectStore) -> None:
        assert keys(listed) == sorted(LISTED_KEYS)
        assert keys(listed, "a") == ["a-c", "a.b", "a/b", "a_b"]

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("images/ab", ["images/ab-z", "images/ab/y", "images/abc/x"]),
            ("images/ab/", ["images/ab/y"]),
            ("images/", ["images/ab-z", "images/ab/y", "images/abc/x"]),
            ("images/abc/x", ["images/abc/x"]),
            ("a-", ["a-c"]),
            ("a/", ["a/b"]),
        ],
    )
    def test_list_by_prefix_matches_characters_not_segments(
        self, listed: ObjectStore, prefix: str, expected: list[str]
    ) -> None:
        assert keys(listed, prefix) == expected

    @pytest.mark.parametrize("prefix", ["nothing", "nothing/", "images/zz", "images/abc/x/"])
    def test_list_of_a_missing_prefix_is_empty(self, listed: ObjectStore, prefix: str) -> None:
        assert keys(listed, prefix) == []

    def test_list_reports_what_stat_reports(self, listed: ObjectStore) -> None:
        for info in listed.list("images/"):
            stat = listed.stat(info.key)
            assert info.size == stat.size == len(info.key)  # each object holds its own key
            assert info.etag == stat.etag
            assert info.modified.utcoffset() is not None

    # --- delete -------------------------------------------------------------------------
    def test_delete_removes_and_deleting_a_missing_key_is_fine(self, listed: ObjectStore) -> None:
        listed.delete("images/ab/y")
        listed.delete("images/ab/y")
        listed.delete("never/existed")
        assert not listed.exists("images/ab/y")
        assert keys(listed, "images/") == ["images/ab-z", "images/abc/x"]

    # --- create if absent ---------------------------------------------------------------
    def test_put_if_absent_creates_once(self, store: ObjectStore) -> None:
        assert store.put_if_absent("runs/42/claim", b"first") is True
        assert store.put_if_absent("runs/42/claim", b"second") is False
        assert store.get_bytes("runs/42/claim") == b"first"

    @pytest.mark.timeout(60)
    def test_put_if_absent_has_exactly_one_winner_under_a_race(self, store: ObjectStore) -> None:
        # moto checks If-None-Match and then writes without a lock, so against moto this
        # also relies on that window being narrow (no loss in 1 000 races under load when
        # measured); a real MinIO (INSPECTOR_TEST_S3_URL) makes the check atomic.
        contenders = 16
        start = threading.Barrier(contenders)
        results: dict[int, bool] = {}

        def contend(n: int) -> None:
            start.wait(timeout=10)
            results[n] = store.put_if_absent("registry/lock", f"writer-{n}".encode())

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(results) == contenders
        winners = [n for n, won in results.items() if won]
        assert len(winners) == 1
        assert store.get_bytes("registry/lock") == f"writer-{winners[0]}".encode()

    # --- validation ---------------------------------------------------------------------
    @pytest.fixture
    def untouchable(self, store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
        """``store`` whose backend primitives fail the test if anything reaches them."""

        def touched(*args: object, **kwargs: object) -> None:
            raise AssertionError("an invalid key reached the backend")

        for name in PRIMITIVES:
            monkeypatch.setattr(store, name, touched)
        return store

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=short_id)
    def test_invalid_keys_are_rejected_before_the_backend(
        self, untouchable: ObjectStore, tmp_path: Path, key: str
    ) -> None:
        for name, op in KEY_OPS.items():
            try:
                op(untouchable, key, tmp_path / "file.bin")
            except InvalidKey:
                continue
            pytest.fail(f"{name}({key!r}) did not raise InvalidKey")

    @pytest.mark.parametrize("prefix", INVALID_PREFIXES, ids=repr)
    def test_invalid_prefixes_are_rejected_before_the_backend(
        self, untouchable: ObjectStore, prefix: str
    ) -> None:
        with pytest.raises(InvalidKey):
            untouchable.list(prefix)

    def test_longest_valid_key_round_trips(self, store: ObjectStore) -> None:
        key = "/".join(["s" * 255, "t" * 255])  # 511 characters, segments at the limit
        store.put_bytes(key, b"long")
        assert store.get_bytes(key) == b"long"
        assert keys(store) == [key]

    def test_ping(self, store: ObjectStore) -> None:
        store.ping()


class TestLocalStore(StoreContract):
    """The contract, plus what a directory on disk must also get right."""

    @pytest.fixture
    def store(self, local_store: LocalStore) -> LocalStore:
        return local_store

    @staticmethod
    def leftovers(root: Path) -> list[Path]:
        """Temporary files under ``root`` (names starting with ``.``)."""
        return list(root.rglob(".*"))

    def test_objects_are_files_at_root_slash_key(self, store: LocalStore) -> None:
        store.put_bytes("images/raw/a.png", b"png")
        store.put_if_absent("labels/1.json", b"{}")
        assert (store.root / "images" / "raw" / "a.png").read_bytes() == b"png"
        assert (store.root / "labels" / "1.json").read_bytes() == b"{}"

    def test_writes_leave_no_temporary_files(self, store: LocalStore, tmp_path: Path) -> None:
        source = tmp_path / "source.bin"
        source.write_bytes(b"file")
        store.put_bytes("a/b", b"1")
        store.put_bytes("a/b", b"2")
        store.put_if_absent("a/c", b"won")
        store.put_if_absent("a/c", b"lost")
        store.put_file("a/d", source)
        store.get_file("a/d", tmp_path / "copy.bin")
        with pytest.raises(NotFound):
            store.get_file("a/missing", tmp_path / "missing.bin")
        with pytest.raises(StoreError):
            store.put_bytes("a", b"a is already a prefix of other objects")
        assert self.leftovers(store.root) == []
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
            "copy.bin",
            "source.bin",
        ]

    def test_etag_tells_apart_writes_within_one_clock_tick(self, store: LocalStore) -> None:
        path = store.root / "k"
        store.put_bytes("k", b"aaaa")
        first, mtime = store.stat("k").etag, path.stat().st_mtime_ns
        store.put_bytes("k", b"bbbb")
        os.utime(path, ns=(mtime, mtime))  # as a coarse file-system clock would leave it
        assert store.stat("k").etag != first

    @pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
    @pytest.mark.timeout(60)
    def test_a_write_cut_off_by_a_crash_is_never_visible(
        self, store: LocalStore, tmp_path: Path
    ) -> None:
        store.put_bytes("images/a.png", b"old")
        fifo = tmp_path / "upload.fifo"
        os.mkfifo(fifo)
        # Another process uploads from a pipe we feed, so it stalls mid-write until killed.
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from storage.local import LocalStore; "
                "LocalStore(sys.argv[1]).put_file('images/a.png', sys.argv[2])",
                str(store.root),
                str(fifo),
            ]
        )
        try:
            with open(self._open_writer(fifo, writer), "wb") as feed:
                feed.write(b"\x89PNG" * (3 * MiB // 8))  # 1.5 MiB: one full copy chunk
                feed.flush()
                partial = self._wait_for_partial_temp_file(store.root / "images", MiB)
                assert keys(store) == ["images/a.png"]
                assert store.get_bytes("images/a.png") == b"old"
                writer.kill()
                writer.wait(timeout=10)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait(timeout=10)
        assert partial.exists(), "a crash leaves its temporary file behind"
        assert keys(store) == ["images/a.png"]
        assert store.stat("images/a.png").size == 3
        store.put_bytes("images/a.png", b"new")
        assert store.get_bytes("images/a.png") == b"new"

    @staticmethod
    def _open_writer(fifo: Path, reader: subprocess.Popen[bytes]) -> int:
        """Open the pipe's write end once ``reader`` has opened it (never block forever)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert reader.poll() is None, "the writing process exited early"
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.02)
                continue
            os.set_blocking(fd, True)
            return fd
        raise AssertionError("the writing process never opened the pipe")

    @staticmethod
    def _wait_for_partial_temp_file(directory: Path, size: int) -> Path:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for path in directory.glob(".tmp-*"):
                if path.stat().st_size >= size:
                    return path
            time.sleep(0.02)
        raise AssertionError(f"no temporary file of {size} bytes appeared in {directory}")


@pytest.mark.timeout(60)
class TestS3Store(StoreContract):
    """The contract against S3 (moto, or INSPECTOR_TEST_S3_URL), plus S3's own failure modes."""

    @pytest.fixture
    def store(self, s3_store: S3Store) -> S3Store:
        return s3_store

    @staticmethod
    def store_on(server: S3Server | ExternalS3, bucket: str, prefix: str = "") -> S3Store:
        """An S3Store on ``server``; the caller closes it."""
        return S3Store(
            server.endpoint,
            bucket,
            prefix,
            access_key=server.access_key,
            secret_key=server.secret_key,
        )

    def test_an_unreachable_endpoint_is_unavailable(self) -> None:
        store = S3Store(
            f"http://127.0.0.1:{free_port()}",
            "bucket",
            access_key="testing",
            secret_key="testing",
            timeout=1.0,
        )
        try:
            for attempt in (store.ping, lambda: store.get_bytes("k"), lambda: keys(store)):
                with pytest.raises(Unavailable, match="unreachable"):
                    attempt()
            with pytest.raises(Unavailable):
                store.put_bytes("k", b"x")
        finally:
            store.close()

    def test_a_missing_bucket_is_unavailable_and_named(
        self, s3_server: S3Server | ExternalS3
    ) -> None:
        bucket = unique_bucket_name("missing")
        store = self.store_on(s3_server, bucket)
        try:
            attempts: list[Callable[[], object]] = [
                store.ping,
                lambda: store.put_bytes("k", b"x"),
                lambda: store.put_if_absent("k", b"x"),
                lambda: store.get_bytes("k"),
                lambda: store.stat("k"),
                lambda: store.exists("k"),
                lambda: keys(store),
                lambda: store.delete("k"),
            ]
            for attempt in attempts:
                with pytest.raises(Unavailable, match=bucket):
                    attempt()
        finally:
            store.close()

    def test_keys_live_under_the_store_prefix(self, s3_server: S3Server | ExternalS3) -> None:
        bucket = s3_server.new_bucket()
        whole = self.store_on(s3_server, bucket)
        tenant = self.store_on(s3_server, bucket, "/tenant/a/")
        try:
            tenant.put_bytes("images/x.png", b"x")
            whole.put_bytes("tenant/ab/not-mine", b"")  # shares characters, not the segment
            whole.put_bytes("other", b"")
            assert keys(whole) == ["other", "tenant/a/images/x.png", "tenant/ab/not-mine"]
            assert keys(tenant) == ["images/x.png"]
            assert whole.get_bytes("tenant/a/images/x.png") == b"x"
            assert tenant.url == f"s3://{bucket}/tenant/a/"
        finally:
            whole.close()
            tenant.close()


class TestOpenStore:
    """``open_store`` picks the backend from the URL's scheme."""

    def test_file_url_opens_a_local_store(self, tmp_path: Path) -> None:
        store = open_store((tmp_path / "data").as_uri())
        assert isinstance(store, LocalStore)
        store.put_bytes("k", b"v")
        assert (tmp_path / "data" / "k").read_bytes() == b"v"

    @pytest.mark.timeout(60)
    def test_s3_url_opens_an_s3_store_on_bucket_and_prefix(
        self, s3_server: S3Server | ExternalS3
    ) -> None:
        bucket = s3_server.new_bucket()
        store = open_store(
            f"s3://{bucket}/inspector/prod",
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
        )
        try:
            assert isinstance(store, S3Store)
            assert (store.bucket, store.prefix) == (bucket, "inspector/prod/")
            store.put_bytes("k", b"v")
            assert store.get_bytes("k") == b"v"
        finally:
            store.close()

    def test_an_unknown_scheme_lists_the_known_ones(self) -> None:
        with pytest.raises(StoreError) as caught:
            open_store("gs://bucket/prefix")
        assert "'gs'" in str(caught.value)
        assert "file://" in str(caught.value) and "s3://" in str(caught.value)

    def test_s3_url_without_an_endpoint_says_so(self) -> None:
        with pytest.raises(StoreError, match="endpoint"):
            open_store("s3://bucket/prefix")

    def test_s3_url_without_a_bucket_says_so(self) -> None:
        with pytest.raises(StoreError, match="no bucket"):
            open_store("s3:///prefix", s3_endpoint="http://127.0.0.1:9000")
