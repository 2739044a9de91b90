"""The measuring phases of bench/serving.py before the hot-swaps: (a) the ceiling in this
process, (c) the naive server, (b) the service, the micro-batcher's settings, and paced
load on the service and the naive server.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bench.serving_load import ModelCall, Predict, Upload
from bench.serving_measure import Bench
from bench.serving_processes import NaiveServer, Service, forget, say

DEFAULT_BATCHER = (16, 0.0)  # the product's defaults (inspector/config.py)


def phase_in_process(bench: Bench, model: Any, pool: list[bytes], levels: list[int]) -> None:
    """(a) The ceiling: batches in this process; and one image per call beside it."""
    roots = {"bench (this process)": os.getpid()}
    for clients in levels:
        bench.measure(
            f"(a) ceiling: in-process, batch {bench.args.batch}",
            ModelCall(model, pool, bench.args.batch),
            clients,
            roots,
        )
    for clients in levels:
        bench.measure("in-process, 1 image per call", ModelCall(model, pool, 1), clients, roots)


def phase_naive(
    bench: Bench, saved_model: Path, pool: list[bytes], levels: list[int], workdir: Path
) -> dict[str, Any]:
    """(c) The naive service; its best row."""
    server = NaiveServer(saved_model, workdir).start()
    try:
        roots = {"client (bench)": os.getpid(), "naive server": server.pid}
        op = Predict(server.port, pool)
        rows = [
            bench.measure("(c) naive: FastAPI, model per request", op, c, roots) for c in levels
        ]
    finally:
        server.stop()
        forget(server)
    return max(rows, key=lambda r: r["per_s"])


def _levels(args: argparse.Namespace, size: tuple[int, int]) -> list[int]:
    """Every ``--concurrency`` level for the first image size, the highest for the others."""
    return args.levels if size == args.sizes[0] else [max(args.levels)]


def phase_baselines(
    bench: Bench,
    model: Any,
    saved_model: Path,
    pools: dict[tuple[int, int], list[bytes]],
    workdir: Path,
    result: dict[str, Any],
) -> None:
    """(a) and (c) at every image size; ``result["naive_best"]``: (c)'s best row at the
    first size."""
    args = bench.args
    primary = args.sizes[0]
    for size in args.sizes:
        args.current_size = f"{size[0]}x{size[1]}"
        levels = _levels(args, size)
        say(f"\n[{args.current_size}] (a) in-process")
        phase_in_process(bench, model, pools[size], levels)
        say(f"\n[{args.current_size}] (c) naive server")
        naive_best = phase_naive(bench, saved_model, pools[size], levels, workdir)
        if size == primary:
            result["naive_best"] = {k: naive_best[k] for k in ("per_s", "p50_ms", "p99_ms")}


def phase_service(
    bench: Bench, service: Service, pools: dict[tuple[int, int], list[bytes]]
) -> None:
    """(b) :predict and uploads through the service at every image size (default batcher)."""
    args = bench.args
    for size in args.sizes:
        args.current_size = f"{size[0]}x{size[1]}"
        levels = _levels(args, size)
        say(f"\n[{args.current_size}] (b) service, batcher {DEFAULT_BATCHER}")
        for clients in levels:
            bench.measure(
                "(b) service: POST :predict",
                Predict(service.port, pools[size]),
                clients,
                service.roots(),
                service,
                batcher="16:0",
            )
        upload = Upload(service.port, pools[size])
        for clients in levels:
            bench.measure(
                "(b) service: POST /v1/images",
                upload,
                clients,
                service.roots(),
                service,
                batcher="16:0",
            )


def phase_tuning(
    bench: Bench, service: Service, pool: list[bytes], result: dict[str, Any]
) -> dict[str, Any]:
    """:predict at the highest concurrency under each ``--batcher`` setting, a fresh worker
    each (the default's row is (b)'s); ``result["tuning"]`` and ``["best_batcher"]``; the
    best setting."""
    args = bench.args
    top = max(args.levels)
    say(f"\n[{args.current_size}] micro-batcher settings, :predict x{top}")
    tuning = []
    for max_batch, max_wait in args.batchers:
        if (max_batch, max_wait) == DEFAULT_BATCHER:
            row = next(
                r
                for r in bench.rows
                if r["path"] == "(b) service: POST :predict"
                and r["image_size"] == args.current_size
                and r["clients"] == top
            )
        else:
            service.start_worker(max_batch, max_wait)
            row = bench.measure(
                f"(b) :predict, batcher {max_batch}:{max_wait:g}",
                Predict(service.port, pool),
                top,
                service.roots(),
                service,
                batcher=f"{max_batch}:{max_wait:g}",
            )
        tuning.append(
            {
                "max_batch": max_batch,
                "max_wait_ms": max_wait,
                **{k: row.get(k) for k in ("per_s", "p50_ms", "p99_ms", "mean_batch")},
            }
        )
    result["tuning"] = tuning
    best = max(tuning, key=lambda t: t["per_s"])
    result["best_batcher"] = best
    say(
        f"  best: max batch {best['max_batch']}, max wait {best['max_wait_ms']:g} ms "
        f"({best['per_s']} req/s)"
    )
    return best


def phase_paced(
    bench: Bench,
    service: Service,
    saved_model: Path,
    pool: list[bytes],
    workdir: Path,
    best: dict[str, Any],
    result: dict[str, Any],
) -> tuple[float, str]:
    """p99 at ``--load-fraction`` of the best throughput, paced: :predict under the
    default and the best batcher, uploads under the best, and the naive server;
    ``result["paced"]``. The :predict rate, and the batcher the worker now runs."""
    args = bench.args
    rate = round(best["per_s"] * args.load_fraction)
    paced: dict[str, Any] = {}
    for max_batch, max_wait in dict.fromkeys(
        [DEFAULT_BATCHER, (best["max_batch"], best["max_wait_ms"])]
    ):
        service.start_worker(max_batch, max_wait)
        key = f"{max_batch}:{max_wait:g}"
        paced[f":predict {key}"] = bench.measure_open(
            f"(b) :predict paced, batcher {key}",
            Predict(service.port, pool),
            rate,
            service.roots(),
            service,
            batcher=key,
        )
    _paced_uploads(bench, service, pool, key, paced)
    _paced_naive(bench, saved_model, pool, workdir, result["naive_best"], paced)
    result["paced"] = {
        k: {
            "rate": v["rate"],
            **{m: v[m] for m in ("p50_ms", "p99_ms", "max_ms", "errors", "per_s")},
        }
        for k, v in paced.items()
    }
    return rate, key


def _paced_uploads(
    bench: Bench, service: Service, pool: list[bytes], key: str, paced: dict[str, Any]
) -> None:
    """Uploads paced at ``--load-fraction`` of their best closed-loop rate (if ≥ 1/s)."""
    args = bench.args
    upload_best = max(
        (
            r
            for r in bench.rows
            if r["path"] == "(b) service: POST /v1/images" and r["image_size"] == args.current_size
        ),
        key=lambda r: r["per_s"],
    )
    upload_rate = round(upload_best["per_s"] * args.load_fraction)
    if upload_rate >= 1:
        paced[f"/v1/images {key}"] = bench.measure_open(
            f"(b) /v1/images paced, batcher {key}",
            Upload(service.port, pool),
            upload_rate,
            service.roots(),
            service,
            batcher=key,
        )


def _paced_naive(
    bench: Bench,
    saved_model: Path,
    pool: list[bytes],
    workdir: Path,
    naive_best: dict[str, Any],
    paced: dict[str, Any],
) -> None:
    """The naive server paced at ``--load-fraction`` of its best rate (if ≥ 1/s)."""
    naive_rate = round(naive_best["per_s"] * bench.args.load_fraction)
    if naive_rate >= 1:
        server = NaiveServer(saved_model, workdir).start()
        try:
            paced["naive"] = bench.measure_open(
                "(c) naive paced",
                Predict(server.port, pool),
                naive_rate,
                {"client (bench)": os.getpid(), "naive server": server.pid},
            )
        finally:
            server.stop()
            forget(server)
