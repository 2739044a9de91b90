"""Upload benchmark: how many 1-megapixel JPEG uploads per second the service accepts.

For each backend (the embedded local-directory store, and S3 on moto or on the MinIO in
``INSPECTOR_TEST_S3_URL``) and each client concurrency, three paths are timed in
one run, so every number has its baseline beside it:

1. **raw store**: ``put_if_absent`` of the same JPEG bytes straight into a store of the
   same kind (same disk; same S3 server), from the same number of threads. The ceiling.
2. **accept_upload() in-process**: the domain function the endpoint calls (validation with
   a full decode, SHA-256, existence check, raw bytes, record), without HTTP.
3. **POST /v1/images**: the whole service started as ``make run`` starts it
   (``inspector run``: API, ingest worker consuming concurrently, Redis, beat), driven by
   httpx client threads in this process.

Every upload is a distinct image (a pool of simulated parts, each sent with a unique JPEG
comment segment), so nothing is a duplicate. Anything but a 201 is an error; the run
fails when there is any, or when the store's record count differs from the accepted
count. CPU seconds per process group (client, API, ingest worker, S3 server, kernel
threads, everything else) are sampled from /proc around each window, to show where the
time goes on a small machine where all of them share the cores, and whether something
outside the benchmark competed for them. Before starting, it waits for the machine to be
quiet; each phase's objects (gigabytes) are deleted once counted. Results and the machine
go to bench/results/ingest-<timestamp>.json; BENCHMARKS.md records and explains them.

    .venv/bin/python bench/ingest.py              # both backends, 4 and 16 clients
    .venv/bin/python bench/ingest.py --concurrency 1,4,16 --backends local
    .venv/bin/python bench/ingest.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import platform
import re
import secrets
import shutil
import signal
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Protocol

import httpx
import numpy as np

from bench import common
from bench.service import Service
from inspector import images
from inspector.records import UploadMetadata
from inspector.simulate import LineSimulator, encode
from inspector.uploads import accept_upload
from storage import ObjectStore
from storage.local import LocalStore
from storage.s3 import S3Store
from tests.servers import ExternalS3, S3Server, s3_for_tests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOKEN = "dev-camera"
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "python-multipart",
    "httpx",
    "celery",
    "redis",
    "minio",
    "moto",
    "opencv-python-headless",
    "numpy",
)
OTHER_CPU_NOTE = 0.2  # cores; above this, something outside the benchmark competed
QUIET_CORES = 0.3  # cores in use below which the machine counts as quiet before a run


class Failed(Exception):
    """One operation did not succeed; the message is its error code."""


# --- machine ---------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and the versions of the packages on the upload path."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def filesystem(path: Path) -> str:
    """The mount and file-system type ``path`` lives on (fsync cost depends on it)."""
    best = ("?", "?", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best[1]):
                best = (device, mount, fstype)
    return f"{best[0]} on {best[1]} ({best[2]})"


# --- CPU accounting --------------------------------------------------------------------


@dataclass
class CpuSample:
    """A snapshot from which CPU use per process group over a window is computed."""

    busy: float
    procs: dict[int, tuple[int, float]]
    wall: float

    @classmethod
    def take(cls) -> CpuSample:
        return cls(common.machine_busy(), common.process_table(), time.perf_counter())


KTHREADD = 2  # the parent of every kernel thread (journal commits, writeback, …)


def cpu_by_group(start: CpuSample, end: CpuSample, roots: dict[str, int]) -> dict[str, float]:
    """Cores used over the window by each group of processes (a root pid and everything it
    forked), by kernel threads, and by everything else ("other": interrupts, processes that
    are not ours, or ours that exited during the window)."""
    roots = {**roots, "kernel threads": KTHREADD}
    group_of = {pid: name for name, pid in roots.items()}

    def group(pid: int) -> str | None:
        seen = 0
        while pid > 0 and seen < 64:
            if pid in group_of:
                return group_of[pid]
            pid = end.procs.get(pid, start.procs.get(pid, (0, 0.0)))[0]
            seen += 1
        return None

    wall = end.wall - start.wall
    used: dict[str, float] = dict.fromkeys(roots, 0.0)
    for pid, (_, cpu) in end.procs.items():
        name = group(pid)
        if name is not None:
            used[name] += cpu - start.procs.get(pid, (0, 0.0))[1]
    ours = sum(used.values())
    used["other"] = max(0.0, (end.busy - start.busy) - ours)
    return {name: round(seconds / wall, 3) for name, seconds in used.items()}


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


def count(store: ObjectStore, prefix: str) -> int:
    """Objects under ``prefix``."""
    return sum(1 for _ in store.list(prefix))


# --- the backends ----------------------------------------------------------------------


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


# --- phases ----------------------------------------------------------------------------


@dataclass
class Options:
    """What the command line asked for."""

    backends: list[str]
    concurrency: list[int]
    duration: float
    warmup: float
    pool: int
    size: tuple[int, int]
    drain_timeout: float
    seed: int
    quiet_timeout: float
    service_env: dict[str, str]


def measure(
    op: Operation,
    threads: int,
    cfg: Options,
    seqs: Iterator[int],
    roots: dict[str, int],
) -> tuple[LoadResult, LoadResult, dict[str, float]]:
    """Warm up, then one timed window with CPU sampled around it: (warm-up, timed, cpu)."""
    warm = run_load(op, threads, cfg.warmup, seqs) if cfg.warmup > 0 else LoadResult()
    before = CpuSample.take()
    timed = run_load(op, threads, cfg.duration, seqs)
    cpu = cpu_by_group(before, CpuSample.take(), roots)
    return warm, timed, cpu


def _row(
    backend: str,
    path: str,
    threads: int,
    res: LoadResult,
    cpu: dict[str, float],
    per_op: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row; CPU per operation divides by ``res.ok`` unless ``per_op`` gives a
    group its own count (the ingest worker's is the images it ingested in the window)."""
    ops = {name: (per_op or {}).get(name, res.ok) for name in cpu}
    return {
        "backend": backend,
        "path": path,
        "clients": threads,
        **res.summary(),
        "cpu_cores": cpu,
        "cpu_ms_per_op": {
            name: round(cores * res.elapsed / ops[name] * 1000, 2) if ops[name] else None
            for name, cores in cpu.items()
        },
        "loadavg": os.getloadavg(),
        **extra,
    }


def interference(rows: list[dict[str, Any]]) -> list[str]:
    """Windows in which processes outside the benchmark used noticeable CPU."""
    return [
        f"{r['backend']} {r['path']} x{r['clients']}: other processes used "
        f"{r['cpu_cores']['other']:.2f} cores (load average {r['loadavg'][0]:.1f})"
        for r in rows
        if r["cpu_cores"].get("other", 0.0) > OTHER_CPU_NOTE
    ]


def _say(text: str) -> None:
    print(text, flush=True)


def bench_in_process(
    backend: Backend, pool: list[bytes], cfg: Options, tag: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Raw store puts and accept_upload() in-process, at each concurrency; their rows and
    any correctness problems."""
    rows, problems = [], []
    roots = {"bench (this process)": os.getpid(), **backend.roots}
    kinds: list[tuple[str, str, Callable[[ObjectStore], Operation], str]] = [
        ("raw store put_if_absent", "raw", lambda s: RawPut(s, pool, tag), "images/raw/"),
        (
            "accept_upload() in-process",
            "accept",
            lambda s: AcceptInProcess(s, pool, tag),
            "images/records/",
        ),
    ]
    for path, label, make, prefix in kinds:
        for threads in cfg.concurrency:
            store = backend.fresh_store(label)
            try:
                warm, timed, cpu = measure(make(store), threads, cfg, itertools.count(), roots)
                stored = count(store, prefix)
                backend.discard(store)
            finally:
                store.close()
            expected = warm.ok + timed.ok
            if stored != expected:
                problems.append(
                    f"{backend.name} {path} x{threads}: {stored} objects, {expected} ok"
                )
            if warm.error_count or timed.error_count:
                problems.append(
                    f"{backend.name} {path} x{threads}: errors {warm.errors | timed.errors}; "
                    f"first: {timed.first_error or warm.first_error}"
                )
            row = _row(backend.name, path, threads, timed, cpu, stored=stored, expected=expected)
            rows.append(row)
            _say(
                f"  {path:<28} x{threads:<3} {row['per_s']:8.1f}/s  p50 {_ms(row['p50_ms']):>7} ms"
                f"  p99 {_ms(row['p99_ms']):>7} ms  errors {row['errors']}  cpu {cpu}"
            )
    return rows, problems


def bench_service(
    backend: Backend, pool: list[bytes], cfg: Options, tag: str, workdir: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """POST /v1/images against `inspector run` on this backend, at each concurrency."""
    rows, problems = [], []
    env, store = backend.service_env(workdir / "data")
    service = Service({**cfg.service_env, **env}, workdir)
    op = HttpUpload(service.base_url, pool, tag)
    seqs = itertools.count()
    accepted = 0
    try:
        t0 = time.perf_counter()
        service.start()
        _say(f"  inspector run is up in {time.perf_counter() - t0:.1f} s ({service.base_url})")
        children = service.children
        roots = {
            "client (bench)": os.getpid(),
            "api": children["api"],
            "ingest worker": children["worker-ingest"],
            **backend.roots,
            "rest of service": service.pid,
        }
        for threads in cfg.concurrency:
            ingested_before = count(store, "index/ingested/")
            warm, timed, cpu = measure(op, threads, cfg, seqs, roots)
            accepted += warm.ok + timed.ok
            ingested_at_end = count(store, "index/ingested/")
            drain_s = wait_drained(store, accepted, cfg.drain_timeout)
            ingested = count(store, "index/ingested/")
            failed = count(store, "index/failed/")
            if warm.error_count or timed.error_count:
                problems.append(
                    f"{backend.name} service x{threads}: errors {warm.errors | timed.errors}; "
                    f"first: {timed.first_error or warm.first_error}"
                )
            if failed:
                problems.append(f"{backend.name} service x{threads}: {failed} images failed ingest")
            row = _row(
                backend.name,
                "POST /v1/images (service)",
                threads,
                timed,
                cpu,
                per_op={"ingest worker": ingested_at_end - ingested_before},
                ingested_per_s_during_window=round(
                    (ingested_at_end - ingested_before) / timed.elapsed, 2
                ),
                backlog_at_window_end=accepted - ingested_at_end,
                drain_s=None if drain_s is None else round(drain_s, 1),
                ingested_after_drain=ingested,
            )
            rows.append(row)
            _say(
                f"  {'POST /v1/images (service)':<28} x{threads:<3} {row['per_s']:8.1f}/s  "
                f"p50 {_ms(row['p50_ms']):>7} ms  p99 {_ms(row['p99_ms']):>7} ms  errors "
                f"{row['errors']}  cpu {cpu}\n"
                f"  {'':<33}ingest during window {row['ingested_per_s_during_window']}/s, "
                f"backlog {row['backlog_at_window_end']} drained in {row['drain_s']} s"
            )
        records = count(store, "images/records/")
        raw = count(store, "images/raw/")
        _say(f"  store holds {records} records and {raw} raw images; {accepted} uploads accepted")
        if records != accepted or raw != accepted:
            problems.append(
                f"{backend.name} service: {accepted} accepted but {records} records, {raw} raw"
            )
        for row in rows:
            row["store_records_at_end"] = records
            row["accepted_total"] = accepted
    except Exception:
        tail = "\n".join(service.process.output.splitlines()[-40:])
        print(f"  inspector run log tail:\n{tail}", file=sys.stderr)
        raise
    finally:
        with uninterrupted():
            op.close()
            service.stop()
            store.close()
    return rows, problems


def wait_drained(store: ObjectStore, accepted: int, timeout: float) -> float | None:
    """Seconds until every accepted image is ingested (or failed), None after ``timeout``."""
    start = time.perf_counter()
    while True:
        if count(store, "index/ingested/") + count(store, "index/failed/") >= accepted:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            return None
        time.sleep(0.5)


# --- reporting -------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, each path's rate shown against the raw store's."""
    raw = {(r["backend"], r["clients"]): r["per_s"] for r in rows if r["path"].startswith("raw")}
    lines = [
        "| backend | path | clients | ops/s | p50 ms | p99 ms | errors | ÷ raw store | "
        "CPU cores (where) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        base = raw.get((r["backend"], r["clients"]))
        ratio = f"{r['per_s'] / base:.2f}" if base else "-"
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items() if v >= 0.01)
        lines.append(
            f"| {r['backend']} | {r['path']} | {r['clients']} | {r['per_s']:.1f} | "
            f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['errors']} | {ratio} | {cpu} |"
        )
    return "\n".join(lines)


def cpu_table(rows: list[dict[str, Any]]) -> str:
    """CPU milliseconds per successful operation, by process group (0.0 and "other", which
    is not ours, left out); the ingest worker's per image it ingested during the window."""
    lines = ["| backend | path | clients | CPU ms per op (where) |", "|---|---|---:|---|"]
    for r in rows:
        where = ", ".join(
            f"{k} {v:.1f}"
            for k, v in r["cpu_ms_per_op"].items()
            if k != "other" and v is not None and v >= 0.05
        )
        lines.append(f"| {r['backend']} | {r['path']} | {r['clients']} | {where} |")
    return "\n".join(lines)


def ingest_table(rows: list[dict[str, Any]]) -> str:
    """How the ingest worker kept up with each service window."""
    lines = [
        "| backend | clients | accepted/s | ingested/s during window | backlog at end | "
        "drained in s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "drain_s" in r:
            lines.append(
                f"| {r['backend']} | {r['clients']} | {r['per_s']:.1f} | "
                f"{r['ingested_per_s_during_window']:.1f} | {r['backlog_at_window_end']} | "
                f"{'-' if r['drain_s'] is None else r['drain_s']} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="Upload benchmark: accepted 1-MP JPEG uploads/s through POST /v1/images "
        "on `inspector run`, against raw object-store puts from the same number of threads, "
        "on the local store and on S3 (moto, or INSPECTOR_TEST_S3_URL).",
    )
    parser.add_argument("--backends", default="local,s3", help="comma-separated: local, s3")
    parser.add_argument(
        "--concurrency", default="4,16", help="client threads, comma-separated (default 4,16)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed window")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each")
    parser.add_argument("--pool", type=int, default=200, help="distinct images drawn up front")
    parser.add_argument("--size", default="1152x864", help="image WxH (1152x864 ≈ 1 MP)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="max seconds to wait for ingest to catch up after each service window",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for `inspector run` and its processes only (repeatable), "
        "e.g. MALLOC_MMAP_THRESHOLD_=33554432",
    )
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=600.0,
        help="max seconds to wait first for other processes to stop using the CPU (0: none)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"local", "s3"}:
        parser.error("--backends takes local and/or s3")
    try:
        concurrency = [int(c) for c in args.concurrency.split(",")]
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error("--concurrency is like 4,16 and --size like 1152x864")
    if min(concurrency) < 1 or args.duration <= 0 or args.pool < 1:
        parser.error("--concurrency, --duration and --pool must be positive")
    service_env = dict(item.partition("=")[::2] for item in args.service_env)
    if any(not name or name.startswith("INSPECTOR_") for name in service_env):
        parser.error("--service-env takes NAME=VALUE, and not INSPECTOR_* (the bench sets those)")
    return Options(
        backends,
        concurrency,
        args.duration,
        args.warmup,
        args.pool,
        (width, height),
        args.drain_timeout,
        args.seed,
        args.quiet_timeout,
        service_env,
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Let clean-up finish: a second Ctrl-C (or SIGTERM) waits until it has."""
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]} during clean-up")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    waited = (
        common.wait_for_idle(cfg.quiet_timeout, QUIET_CORES, log=_say, poll=13)
        if cfg.quiet_timeout > 0
        else 0.0
    )
    started = datetime.now(UTC)
    info = machine()
    info["waited_for_quiet_s"] = round(waited, 1)
    tag = secrets.token_hex(4)
    _say(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
        f"Python {info['python']}, load average {info['loadavg_at_start']}"
    )

    t0 = time.perf_counter()
    pool = make_pool(cfg.pool, cfg.size, cfg.seed)
    sizes = [len(p) for p in pool]
    _say(
        f"drew {len(pool)} distinct {cfg.size[0]}x{cfg.size[1]} JPEGs in "
        f"{time.perf_counter() - t0:.1f} s: mean {np.mean(sizes) / 1024:.0f} KiB "
        f"({min(sizes) // 1024}-{max(sizes) // 1024} KiB)"
    )
    reference = reference_timings(pool)
    for name, numbers in reference.items():
        _say(f"  {name:<36} p50 {numbers['p50_ms']:6.2f} ms   mean {numbers['mean_ms']:6.2f} ms")

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    stores: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        workdir = Path(tmp)
        for name in cfg.backends:
            backend: Backend = LocalBackend(workdir / "raw") if name == "local" else S3Backend()
            try:
                stores[name] = backend.describe()
                _say(f"\n[{name}] {stores[name]}")
                in_rows, in_problems = bench_in_process(backend, pool, cfg, tag)
                service_dir = workdir / f"service-{name}"
                service_dir.mkdir()
                svc_rows, svc_problems = bench_service(backend, pool, cfg, tag, service_dir)
                rows += in_rows + svc_rows
                problems += in_problems + svc_problems
            finally:
                with uninterrupted():
                    backend.close()

    info["loadavg_at_end"] = os.getloadavg()
    noisy = interference(rows)
    result = {
        "benchmark": "bench/ingest.py",
        "command": " ".join([".venv/bin/python", "bench/ingest.py", *(argv or sys.argv[1:])]),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "settings": {**cfg.__dict__, "size": f"{cfg.size[0]}x{cfg.size[1]}"},
        "images": {
            "count": len(pool),
            "mean_bytes": int(np.mean(sizes)),
            "min_bytes": min(sizes),
            "max_bytes": max(sizes),
        },
        "stores": stores,
        "reference_single_thread": reference,
        "rows": rows,
        "interference": noisy,
        "problems": problems,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")

    _say("\n" + table(rows))
    _say("\n" + cpu_table(rows))
    _say("\n" + ingest_table(rows))
    _say(
        f"\nmachine: {info['cpu']}; {info['cores']} cores; {info['ram_gib']} GiB; "
        f"Python {info['python']}; load average {info['loadavg_at_start']} → "
        f"{info['loadavg_at_end']}"
    )
    _say("packages: " + ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    if noisy:
        _say(
            "\nnote: these windows shared the machine; rerun when it is quiet:\n  "
            + "\n  ".join(noisy)
        )
    _say(f"results: {common.shown(out)}")
    if problems:
        _say("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(
            "\ninterrupted; every process the benchmark started has been stopped", file=sys.stderr
        )
        sys.exit(130)
