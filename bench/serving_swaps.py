"""The hot-swap phase of bench/serving.py: clones of the production version approved one
after another under paced ``:predict`` load, and what that did: p99 around each swap
against steady state, seconds to the first answer by the new version, failed requests,
and the worker's memory after each swap.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from typing import Any

from bench.cpu_groups import CpuSample, cpu_by_group
from bench.serving_load import OpenLoop, Predict, Sample, closed_loop, percentiles
from bench.serving_measure import Bench
from bench.serving_processes import Service, rss_of, say, wait_for_others

OPERATOR = "Bearer dev-operator"


def phase_swaps(
    bench: Bench, service: Service, store: Any, first: int, pool: list[bytes], rate: float
) -> dict[str, Any]:
    """Approve ``--swaps`` clones one after another under paced :predict load."""
    args = bench.args
    numbers = _clones(store, first, args.swaps)
    wait_for_others(args.poll)
    pid = service.worker_pid
    memory: list[dict[str, Any]] = [{"after_swap": 0, "version": first, "rss_bytes": rss_of(pid)}]
    swaps: list[dict[str, Any]] = []
    roots = service.roots()
    # A fresh worker (and API) answers slowly at first: warm both, at every batch size.
    closed_loop(Predict(service.port, pool), max(args.levels), max(args.warmup, 5.0))
    cpu0 = CpuSample.take()
    load = OpenLoop(Predict(service.port, pool), rate)
    try:
        time.sleep(args.steady)
        for i, number in enumerate(numbers, 1):
            _swap(i, number, service, load, args, pid, memory, swaps)
    finally:
        load.stop()
    cpu = cpu_by_group(cpu0, CpuSample.take(), roots)
    return analyse_swaps(load, swaps, memory, rate, cpu, args, service.status())


def _clones(store: Any, first: int, count: int) -> list[int]:
    """``count`` clones of version ``first``, registered and past the gate."""
    from inspector import registry
    from tests.training_support import clone_version

    numbers = []
    for _ in range(count):
        number = clone_version(store, first)
        for action in ("register", "gate_passed"):
            registry.transition(store, number, action, actor="bench", role="system")
        numbers.append(number)
    return numbers


def _swap(
    i: int,
    number: int,
    service: Service,
    load: OpenLoop,
    args: argparse.Namespace,
    pid: int,
    memory: list[dict[str, Any]],
    swaps: list[dict[str, Any]],
) -> None:
    """Swap ``i``: approve version ``number``, wait for its first answer and the interval,
    then note the memory of the worker (``pid``) in ``memory`` and the swap in ``swaps``."""
    approved, approve_ms = _approve(service.port, number)
    first_new = _first_answer(load, number, approved)
    time.sleep(max(0.0, approved + args.swap_interval - time.perf_counter()))
    status = service.status() or {}
    memory.append(
        {
            "after_swap": i,
            "version": number,
            "rss_bytes": rss_of(pid),
            "status_rss_bytes": status.get("rss_bytes"),
        }
    )
    swaps.append(
        {
            "swap": i,
            "version": number,
            "approved_at": approved,
            "approve_http_ms": round(approve_ms, 1),
            "first_answer_s": round(first_new - approved, 3),
            # The serving loop's own pause at the switch (it includes gc.collect()).
            "worker_swap_pause_s": status.get("last_swap_seconds"),
        }
    )
    say(
        f"  swap {i:>2} → v{number}: approve {approve_ms:.0f} ms, first answer by "
        f"v{number} after {first_new - approved:.2f} s, worker RSS "
        f"{memory[-1]['rss_bytes'] / 2**20:.0f} MiB"
    )


def _approve(port: int, number: int) -> tuple[float, float]:
    """Approve version ``number`` over HTTP: when it was asked (perf_counter), and the
    milliseconds the API took."""
    # A new connection each time: uvicorn closes idle ones after 5 s.
    ops = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    approved = time.perf_counter()
    ops.request(
        "POST",
        f"/v1/models/inspector/versions/{number}:approve",
        body=json.dumps({"reason": "bench hot-swap"}).encode(),
        headers={"Authorization": OPERATOR, "Content-Type": "application/json"},
    )
    answer = ops.getresponse()
    answer.read()
    ops.close()
    approve_ms = (time.perf_counter() - approved) * 1000
    if answer.status != 200:
        raise RuntimeError(f"approving version {number}: HTTP {answer.status}")
    return approved, approve_ms


def _first_answer(load: OpenLoop, number: int, approved: float) -> float:
    """When the first answer by version ``number`` ended (perf_counter)."""
    deadline = approved + 120
    while number not in load.first_done and time.perf_counter() < deadline:
        time.sleep(0.02)
    # Threads record in the order they finish, so look for the earliest answer.
    time.sleep(0.2)
    first_new = min((s.done for s in list(load.samples) if s.version == number), default=None)
    if first_new is None:
        raise RuntimeError(f"version {number} never answered within 120 s")
    return first_new


def analyse_swaps(
    load: OpenLoop,
    swaps: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    rate: float,
    cpu: dict[str, float],
    args: argparse.Namespace,
    status: dict[str, Any] | None,
) -> dict[str, Any]:
    """p99 around each swap against steady state, failures, and memory growth."""
    samples = sorted(load.samples, key=lambda s: s.due)
    failed = [s for s in samples if not s.ok]
    ok = [s for s in samples if s.ok]
    first_approval = swaps[0]["approved_at"] if swaps else float("inf")
    # Steady state: the paced load before the first approval, its first second left out.
    steady = [s.latency_ms for s in ok if load.start_at + 1 <= s.due < first_approval - 1]
    windows = _around_swaps(ok, swaps)
    between = [
        s.latency_ms
        for s in ok
        if s.due >= first_approval and not any(a <= s.due < b for a, b in windows)
    ]
    steady_p = percentiles(steady)
    first = memory[1]["rss_bytes"] if len(memory) > 1 else None
    last = memory[-1]["rss_bytes"]
    timeline = _timeline(samples, ok, load.start_at)
    for swap in swaps:
        swap["approved_at"] = round(swap["approved_at"] - load.start_at, 3)  # s into the phase
    return {
        "rate_per_s": rate,
        "requests": len(samples),
        "failed": len(failed),
        "failed_codes": sorted({s.code for s in failed}),
        "steady": {"requests": len(steady), **steady_p},
        "between_swaps": {"requests": len(between), **percentiles(between)},
        "swaps": swaps,
        **_swap_p99(swaps, steady_p["p99_ms"]),
        "first_answer_s": {
            "median": round(statistics.median([w["first_answer_s"] for w in swaps]), 3)
            if swaps
            else None,
            "max": max((w["first_answer_s"] for w in swaps), default=None),
        },
        "memory": memory,
        "timeline": timeline,
        "rss_growth_first_to_last": round(last / first - 1, 4) if first else None,
        "worker_status_at_end": status,
        "cpu_cores": cpu,
        "settings": {"steady_s": args.steady, "swap_interval_s": args.swap_interval},
    }


def _around_swaps(ok: list[Sample], swaps: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The window around each swap (due times); each swap gets its window's length,
    requests and percentiles."""
    windows = []
    for swap in swaps:
        start = swap["approved_at"] - 1.0
        # 5 s around the swap: 1 s before the approval to 4 s after, stretched to 1 s
        # after the first answer by the new version when loading took longer than 3 s.
        end = max(swap["approved_at"] + 4.0, swap["approved_at"] + swap["first_answer_s"] + 1.0)
        windows.append((start, end))
        inside = [s.latency_ms for s in ok if start <= s.due < end]
        swap.update(
            {"window_s": round(end - start, 2), "requests": len(inside), **percentiles(inside)}
        )
    return windows


def _swap_p99(swaps: list[dict[str, Any]], steady_p99: float | None) -> dict[str, Any]:
    """The median and worst p99 around the swaps, and each against the steady p99."""
    swap_p99 = [w["p99_ms"] for w in swaps if w["p99_ms"] is not None]
    return {
        "swap_p99_median_ms": round(statistics.median(swap_p99), 2) if swap_p99 else None,
        "swap_p99_max_ms": max(swap_p99, default=None),
        "swap_p99_ratio_median": _ratio(statistics.median(swap_p99), steady_p99)
        if swap_p99
        else None,
        "swap_p99_ratio_max": _ratio(max(swap_p99), steady_p99) if swap_p99 else None,
    }


def _timeline(samples: list[Sample], ok: list[Sample], start_at: float) -> list[list[Any]]:
    """Per second of the phase: requests due, p50, p99, max (ms)."""
    timeline = []
    for second in range(int((samples[-1].due - start_at) + 1) if samples else 0):
        due = [s.latency_ms for s in ok if second <= s.due - start_at < second + 1]
        q = percentiles(due)
        timeline.append([second, len(due), q["p50_ms"], q["p99_ms"], q["max_ms"]])
    return timeline


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None
