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

This file is the command line and the run: each backend in turn, the results written and
summed up. Beside it in bench/: ingest_phases.py (the two phases on one backend),
ingest_ops.py (the images, the three timed operations and the load generator),
ingest_backends.py (the local and S3 stores), cpu_groups.py (CPU per process group around
a window) and ingest_report.py (the result rows and the tables).

    .venv/bin/python bench/ingest.py              # both backends, 4 and 16 clients
    .venv/bin/python bench/ingest.py --concurrency 1,4,16 --backends local
    .venv/bin/python bench/ingest.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import secrets
import signal
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench import common
from bench.ingest_backends import Backend, LocalBackend, S3Backend
from bench.ingest_ops import make_pool, reference_timings
from bench.ingest_phases import Options, bench_in_process, bench_service, say, uninterrupted
from bench.ingest_report import interference, summary

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
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
QUIET_CORES = 0.3  # cores in use below which the machine counts as quiet before a run


def _parser() -> argparse.ArgumentParser:
    """The options, as ``--help`` shows them."""
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
    return parser


def parse_args(argv: list[str] | None = None) -> Options:
    """The options, checked."""
    parser = _parser()
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


def _draw_images(cfg: Options) -> tuple[list[bytes], dict[str, dict[str, float]]]:
    """The pool of distinct JPEGs, and the single-thread cost of each validation step."""
    t0 = time.perf_counter()
    pool = make_pool(cfg.pool, cfg.size, cfg.seed)
    sizes = [len(p) for p in pool]
    say(
        f"drew {len(pool)} distinct {cfg.size[0]}x{cfg.size[1]} JPEGs in "
        f"{time.perf_counter() - t0:.1f} s: mean {np.mean(sizes) / 1024:.0f} KiB "
        f"({min(sizes) // 1024}-{max(sizes) // 1024} KiB)"
    )
    reference = reference_timings(pool)
    for name, numbers in reference.items():
        say(f"  {name:<36} p50 {numbers['p50_ms']:6.2f} ms   mean {numbers['mean_ms']:6.2f} ms")
    return pool, reference


def _run_backends(
    cfg: Options, pool: list[bytes], tag: str
) -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
    """Both phases on each backend in turn: the rows, the problems, and what each store is."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    stores: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
        workdir = Path(tmp)
        for name in cfg.backends:
            backend: Backend = LocalBackend(workdir / "raw") if name == "local" else S3Backend()
            try:
                stores[name] = backend.describe()
                say(f"\n[{name}] {stores[name]}")
                in_rows, in_problems = bench_in_process(backend, pool, cfg, tag)
                service_dir = workdir / f"service-{name}"
                service_dir.mkdir()
                svc_rows, svc_problems = bench_service(backend, pool, cfg, tag, service_dir)
                rows += in_rows + svc_rows
                problems += in_problems + svc_problems
            finally:
                with uninterrupted():
                    backend.close()
    return rows, problems, stores


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    waited = (
        common.wait_for_idle(cfg.quiet_timeout, QUIET_CORES, log=say, poll=13)
        if cfg.quiet_timeout > 0
        else 0.0
    )
    started = datetime.now(UTC)
    info = common.machine(PACKAGES)
    del info["loadavg"]  # ingest results have always said loadavg_at_start, unrounded
    info["loadavg_at_start"] = os.getloadavg()
    info["waited_for_quiet_s"] = round(waited, 1)
    tag = secrets.token_hex(4)
    say(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
        f"Python {info['python']}, load average {info['loadavg_at_start']}"
    )
    pool, reference = _draw_images(cfg)
    sizes = [len(p) for p in pool]
    rows, problems, stores = _run_backends(cfg, pool, tag)

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

    say(summary(rows, info, noisy))
    say(f"results: {common.shown(out)}")
    if problems:
        say("\nFAILED:\n  " + "\n  ".join(problems))
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
