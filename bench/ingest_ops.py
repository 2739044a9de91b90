"""The load bench/ingest.py puts on a store or on the service: the images it uploads (a
pool of simulated 1-MP parts, each upload made distinct by a JPEG comment), the three
timed operations (a raw ``put_if_absent``, ``accept_upload()`` in-process, ``POST
/v1/images`` over HTTP), the load generator that calls one of them from N threads for a
window, and what that window did (successes, error codes, latency percentiles).
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import numpy as np

from inspector import images
from inspector.records import UploadMetadata
from inspector.simulate import LineSimulator, encode
from inspector.uploads import accept_upload
from storage import ObjectStore

TOKEN = "dev-camera"


class Failed(Exception):
    """One operation did not succeed; the message is its error code."""


# --- images ----------------------------------------------------------------------------


def make_pool(count: int, size: tuple[int, int], seed: int) -> list[bytes]:
    """``count`` distinct simulated parts as JPEG bytes (quality 92, as a camera sends)."""
    sim = LineSimulator(size=size, seed=seed)
    return [encode(part.image, "jpeg") for part in sim.parts(count)]


def unique_jpeg(base: bytes, tag: bytes) -> bytes:
    """``base`` with a JPEG comment (COM) segment after SOI: same pixels, new content hash."""
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag + base[2:]


def reference_timings(pool: list[bytes]) -> dict[str, dict[str, float]]:
    """Single-thread, in-process cost of each step of validation, over the whole pool."""
    limits = images.ImageLimits()
    steps: dict[str, Callable[[bytes], object]] = {
        "inspect_upload (whole validation)": lambda d: images.inspect_upload(d, limits),
        "  full decode (cv2.imdecode)": lambda d: images.decode(d, "jpeg"),
        "  sha256 (content id)": images.content_id,
        "  header parse": lambda d: images.header_size(d, "jpeg"),
    }
    out = {}
    for name, step in steps.items():
        times = []
        for data in pool:
            t0 = time.perf_counter()
            step(data)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {
            "p50_ms": round(float(np.percentile(times, 50)), 3),
            "mean_ms": round(float(np.mean(times)), 3),
        }
    return out


# --- the load generator ----------------------------------------------------------------


class Operation(Protocol):
    """One kind of timed operation; ``prepare`` runs outside the timed part."""

    def prepare(self, seq: int) -> Any: ...

    def run(self, item: Any) -> None: ...


@dataclass
class LoadResult:
    """What one window of load did."""

    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> dict[str, Any]:
        def ms(q: float) -> float | None:
            return round(float(np.percentile(self.latencies_ms, q)), 2) if self.ok else None

        return {
            "ok": self.ok,
            "errors": self.error_count,
            "error_codes": self.errors,
            "elapsed_s": round(self.elapsed, 3),
            "per_s": round(self.ok / self.elapsed, 2) if self.elapsed else 0.0,
            "p50_ms": ms(50),
            "p90_ms": ms(90),
            "p99_ms": ms(99),
            "max_ms": ms(100),
        }


def run_load(op: Operation, threads: int, duration: float, seqs: Iterator[int]) -> LoadResult:
    """Call ``op`` from ``threads`` threads, each starting new operations until ``duration``
    has passed; the window ends when the last one in flight finishes."""
    result = LoadResult()
    lock, stop = threading.Lock(), threading.Event()
    start = time.perf_counter()
    deadline = start + duration
    ends: list[float] = []

    def worker() -> None:
        while not stop.is_set() and time.perf_counter() < deadline:
            with lock:
                seq = next(seqs)
            item = op.prepare(seq)
            t0 = time.perf_counter()
            try:
                op.run(item)
            except Exception as exc:
                code = str(exc) if isinstance(exc, Failed) else type(exc).__name__
                with lock:
                    result.errors[code] = result.errors.get(code, 0) + 1
                    result.first_error = result.first_error or f"{code}: {exc!r}"[:500]
                continue
            latency = (time.perf_counter() - t0) * 1000
            with lock:
                result.ok += 1
                result.latencies_ms.append(latency)
        with lock:
            ends.append(time.perf_counter())

    with ThreadPoolExecutor(threads, thread_name_prefix="load") as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        try:
            for future in futures:
                future.result()
        finally:
            stop.set()  # on Ctrl-C, every thread stops after its current operation
    result.elapsed = max(ends, default=time.perf_counter()) - start
    return result


def _key(tag: str, seq: int) -> str:
    digest = hashlib.sha256(f"{tag}-{seq}".encode()).hexdigest()
    return f"images/raw/{digest[:2]}/{digest}.jpg"


class RawPut:
    """``put_if_absent`` of a pool image under a fresh key shaped like a raw image's key."""

    def __init__(self, store: ObjectStore, pool: list[bytes], tag: str) -> None:
        self.store, self.pool, self.tag = store, pool, tag

    def prepare(self, seq: int) -> tuple[str, bytes]:
        return _key(self.tag, seq), self.pool[seq % len(self.pool)]

    def run(self, item: tuple[str, bytes]) -> None:
        if not self.store.put_if_absent(item[0], item[1], "image/jpeg"):
            raise Failed("key_existed")


class AcceptInProcess:
    """:func:`inspector.uploads.accept_upload` on a distinct image, without HTTP."""

    def __init__(self, store: ObjectStore, pool: list[bytes], tag: str) -> None:
        self.store, self.pool, self.tag = store, pool, tag

    def prepare(self, seq: int) -> tuple[bytes, UploadMetadata]:
        data = unique_jpeg(self.pool[seq % len(self.pool)], f"{self.tag}-{seq}".encode())
        meta = UploadMetadata.parse(
            line="line-1",
            station="station-1",
            camera_id="bench-cam",
            part_id=f"bench-{self.tag}-{seq}",
            captured_at=datetime.now(UTC).isoformat(),
        )
        return data, meta

    def run(self, item: tuple[bytes, UploadMetadata]) -> None:
        if accept_upload(self.store, item[0], item[1], uploaded_by="bench").duplicate:
            raise Failed("duplicate")


class HttpUpload:
    """``POST /v1/images`` of a distinct image, one keep-alive connection per thread."""

    def __init__(self, base_url: str, pool: list[bytes], tag: str) -> None:
        self.url = base_url + "/v1/images"
        self.pool, self.tag = pool, tag
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, trust_env=False
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def prepare(self, seq: int) -> dict[str, Any]:
        data = unique_jpeg(self.pool[seq % len(self.pool)], f"{self.tag}-{seq}".encode())
        part_id = f"bench-{self.tag}-{seq}"
        return {
            "data": {
                "line": "line-1",
                "station": "station-1",
                "camera_id": "bench-cam",
                "part_id": part_id,
                "captured_at": datetime.now(UTC).isoformat(),
            },
            "files": {"file": (f"{part_id}.jpg", data, "image/jpeg")},
        }

    def run(self, item: dict[str, Any]) -> None:
        response = self._client().post(self.url, **item)
        if response.status_code != 201:
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
            raise Failed(f"http_{response.status_code}_{code}")

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
