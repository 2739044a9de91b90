"""The two phases bench/ingest.py runs on each backend, and the options they read: the
in-process phase (raw ``put_if_absent`` and ``accept_upload()`` on fresh stores) and the
service phase (``POST /v1/images`` on ``inspector run``, then the wait for ingest to
drain), each a timed window per concurrency with CPU sampled around it and its stored
objects counted against what succeeded; and the clean-up a second Ctrl-C cannot cut short.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cpu_groups import CpuSample, cpu_by_group
from bench.ingest_backends import Backend, count
from bench.ingest_ops import AcceptInProcess, HttpUpload, LoadResult, Operation, RawPut, run_load
from bench.ingest_report import fmt_ms, result_row
from bench.service import Service
from storage import ObjectStore

SERVICE_PATH = "POST /v1/images (service)"


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


def say(text: str) -> None:
    """Print a line of progress now."""
    print(text, flush=True)


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


def _errors(label: str, warm: LoadResult, timed: LoadResult) -> list[str]:
    """The problem a window's failed operations make, if it had any."""
    if not (warm.error_count or timed.error_count):
        return []
    return [
        f"{label}: errors {warm.errors | timed.errors}; "
        f"first: {timed.first_error or warm.first_error}"
    ]


def _row_line(path: str, threads: int, row: dict[str, Any], cpu: dict[str, float]) -> str:
    """A window's row as a line of progress."""
    return (
        f"  {path:<28} x{threads:<3} {row['per_s']:8.1f}/s  p50 {fmt_ms(row['p50_ms']):>7} ms"
        f"  p99 {fmt_ms(row['p99_ms']):>7} ms  errors {row['errors']}  cpu {cpu}"
    )


# --- in-process ------------------------------------------------------------------------


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
            problems += _errors(f"{backend.name} {path} x{threads}", warm, timed)
            row = result_row(
                backend.name, path, threads, timed, cpu, stored=stored, expected=expected
            )
            rows.append(row)
            say(_row_line(path, threads, row, cpu))
    return rows, problems


# --- the service -----------------------------------------------------------------------


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
        roots = _start(service, backend)
        for threads in cfg.concurrency:
            row, accepted, found = _service_window(
                backend.name, store, op, threads, cfg, seqs, roots, accepted
            )
            rows.append(row)
            problems += found
        problems += _check_store(backend.name, store, accepted, rows)
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


def _start(service: Service, backend: Backend) -> dict[str, int]:
    """Start `inspector run`; the root pid of each process group whose CPU is sampled."""
    t0 = time.perf_counter()
    service.start()
    say(f"  inspector run is up in {time.perf_counter() - t0:.1f} s ({service.base_url})")
    children = service.children
    return {
        "client (bench)": os.getpid(),
        "api": children["api"],
        "ingest worker": children["worker-ingest"],
        **backend.roots,
        "rest of service": service.pid,
    }


def _service_window(
    backend: str,
    store: ObjectStore,
    op: HttpUpload,
    threads: int,
    cfg: Options,
    seqs: Iterator[int],
    roots: dict[str, int],
    accepted: int,
) -> tuple[dict[str, Any], int, list[str]]:
    """One window of uploads from ``threads`` clients, then the wait for ingest to catch
    up: its row, the uploads accepted so far (``accepted`` before it), its problems."""
    ingested_before = count(store, "index/ingested/")
    warm, timed, cpu = measure(op, threads, cfg, seqs, roots)
    accepted += warm.ok + timed.ok
    ingested_at_end = count(store, "index/ingested/")
    drain_s = wait_drained(store, accepted, cfg.drain_timeout)
    ingested = count(store, "index/ingested/")
    failed = count(store, "index/failed/")
    problems = _errors(f"{backend} service x{threads}", warm, timed)
    if failed:
        problems.append(f"{backend} service x{threads}: {failed} images failed ingest")
    row = result_row(
        backend,
        SERVICE_PATH,
        threads,
        timed,
        cpu,
        per_op={"ingest worker": ingested_at_end - ingested_before},
        ingested_per_s_during_window=round((ingested_at_end - ingested_before) / timed.elapsed, 2),
        backlog_at_window_end=accepted - ingested_at_end,
        drain_s=None if drain_s is None else round(drain_s, 1),
        ingested_after_drain=ingested,
    )
    say(
        _row_line(SERVICE_PATH, threads, row, cpu) + "\n"
        f"  {'':<33}ingest during window {row['ingested_per_s_during_window']}/s, "
        f"backlog {row['backlog_at_window_end']} drained in {row['drain_s']} s"
    )
    return row, accepted, problems


def _check_store(
    backend: str, store: ObjectStore, accepted: int, rows: list[dict[str, Any]]
) -> list[str]:
    """Whether the service stored a record and a raw image for every upload it accepted;
    the totals go on each of the phase's rows."""
    records = count(store, "images/records/")
    raw = count(store, "images/raw/")
    say(f"  store holds {records} records and {raw} raw images; {accepted} uploads accepted")
    for row in rows:
        row["store_records_at_end"] = records
        row["accepted_total"] = accepted
    if records != accepted or raw != accepted:
        return [f"{backend} service: {accepted} accepted but {records} records, {raw} raw"]
    return []


def wait_drained(store: ObjectStore, accepted: int, timeout: float) -> float | None:
    """Seconds until every accepted image is ingested (or failed), None after ``timeout``."""
    start = time.perf_counter()
    while True:
        if count(store, "index/ingested/") + count(store, "index/failed/") >= accepted:
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            return None
        time.sleep(0.5)
