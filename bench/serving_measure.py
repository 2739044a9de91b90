"""Measuring for bench/serving.py: one timed window of load with the CPU of every process
sampled around it (and the inference worker's batches), the rows it keeps, and the
single-thread cost of each step on the verdict path.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import secrets
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu_groups import CpuSample, cpu_by_group
from bench.ingest_ops import unique_jpeg
from bench.serving_load import Op, Window, closed_loop, open_loop, predict_body
from bench.serving_processes import Service, say, wait_for_others
from bench.serving_report import fmt_ms

OTHER_CPU_NOTE = 0.2  # cores; above this, something outside the benchmark competed


@dataclass
class Bench:
    """The run's settings and everything measured so far."""

    args: argparse.Namespace
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def measure(
        self,
        label: str,
        op: Op,
        clients: int,
        roots: dict[str, int],
        service: Service | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Warm up, then one timed closed-loop window with CPU (and the worker's batches)
        sampled around it; the row, also kept."""
        paused = wait_for_others(self.args.poll)
        if self.args.warmup > 0:
            closed_loop(op, clients, self.args.warmup)
        before_status = service.status() if service is not None and service.worker else None
        cpu0 = CpuSample.take()
        window = closed_loop(op, clients, self.args.duration)
        cpu = cpu_by_group(cpu0, CpuSample.take(), roots)
        row = self._row(label, f"closed x{clients}", clients, window, cpu, **extra)
        row["paused_for_others_s"] = round(paused, 1)
        if before_status is not None and service is not None:
            after = service.fresh_status(time.time())
            row.update(batch_stats(before_status, after))
        self._say_row(row)
        return row

    def measure_open(
        self,
        label: str,
        op: Op,
        rate: float,
        roots: dict[str, int],
        service: Service | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """One paced (open-loop) window at ``rate`` requests/s."""
        wait_for_others(self.args.poll)
        open_loop(op, rate, min(self.args.warmup, 3.0))
        before_status = service.status() if service is not None else None
        cpu0 = CpuSample.take()
        window = open_loop(op, rate, self.args.open_duration)
        cpu = cpu_by_group(cpu0, CpuSample.take(), roots)
        row = self._row(label, f"open {rate:.0f}/s", None, window, cpu, rate=rate, **extra)
        if before_status is not None and service is not None:
            row.update(batch_stats(before_status, service.fresh_status(time.time())))
        self._say_row(row)
        return row

    def _row(
        self,
        label: str,
        load: str,
        clients: int | None,
        window: Window,
        cpu: dict[str, float],
        **extra: Any,
    ) -> dict[str, Any]:
        summary = window.summary()
        ok = summary["requests_ok"]
        row = {
            "path": label,
            "load": load,
            "clients": clients,
            "image_size": self.args.current_size,
            **summary,
            "cpu_cores": cpu,
            "cpu_ms_per_request": {
                name: round(cores * window.elapsed / ok * 1000, 2) if ok else None
                for name, cores in cpu.items()
            },
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            **extra,
        }
        if cpu.get("other", 0.0) > OTHER_CPU_NOTE:
            self.notes.append(
                f"{label} {load} ({row['image_size']}): other processes used "
                f"{cpu['other']:.2f} cores"
            )
        self.rows.append(row)
        return row

    def _say_row(self, row: dict[str, Any]) -> None:
        batch = f"  mean batch {row['mean_batch']:.1f}" if row.get("mean_batch") else ""
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_cores"].items() if v >= 0.02)
        say(
            f"  {row['path']:<34} {row['load']:<12} {row['images_per_s']:8.1f} img/s "
            f"{row['per_s']:8.1f} req/s  p50 {fmt_ms(row['p50_ms']):>7}  "
            f"p99 {fmt_ms(row['p99_ms']):>7}  errors {row['errors']}{batch}  [cores: {cpu}]"
        )


def batch_stats(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Images and batches the worker served between two heartbeats, and their ratio."""
    if not before or not after:
        return {}
    served = after["served"] - before["served"]
    batches = after["batches"] - before["batches"]
    return {
        "worker_images": served,
        "worker_batches": batches,
        "mean_batch": round(served / batches, 2) if batches else None,
    }


def component_costs(model: Any, pool: list[bytes], redis_url: str, workdir: Path) -> dict[str, Any]:
    """Single-thread cost of each step on the verdict path, measured apart (median ms)."""
    import redis

    from storage.local import LocalStore

    r = redis.Redis.from_url(redis_url)
    key = f"bench:components:{secrets.token_hex(4)}"
    store = LocalStore(workdir / "components-store")
    steps = _component_steps(model, pool, r, key, store)
    out = {}
    try:
        for name, (step, n) in steps.items():
            median = _median_ms(step, n)
            if "16 images" in name:
                median /= 16
            out[name] = round(median, 3)
    finally:
        r.delete(key)
        r.close()
        shutil.rmtree(workdir / "components-store", ignore_errors=True)
    return out


def _component_steps(
    model: Any, pool: list[bytes], r: Any, key: str, store: Any
) -> dict[str, tuple[Callable[[], object], int]]:
    """Each step on the verdict path as a call, with how many times to time it; Redis
    steps use ``key`` on ``r``, the upload step writes into ``store``."""
    from inspector import images
    from inspector.records import UploadMetadata
    from inspector.uploads import accept_upload
    from workers import inference_queue

    image = pool[0]
    body = predict_body(image)
    doc = inference_queue.pack(inference_queue.request(images=[image]))
    meta = UploadMetadata.parse(
        line="l", station="s", camera_id="c", part_id="p", captured_at="2026-11-26T09:00:00Z"
    )
    seq = itertools.count()
    batch = [pool[i % len(pool)] for i in range(16)]

    def redis_round_trip() -> None:
        r.lpush(key, doc)
        r.rpop(key)

    return {
        "API: json.loads of the :predict body": (lambda: json.loads(body), 200),
        "API: base64 decode of the image": (
            lambda: base64.b64decode(json.loads(body)["instances"][0]["b64"], validate=True),
            200,
        ),
        "API: queue request (JSON header + raw bytes)": (
            lambda: inference_queue.pack(inference_queue.request(images=[image])),
            200,
        ),
        "Redis: LPUSH + RPOP of the request document": (redis_round_trip, 200),
        "worker: unpack the request": (lambda: inference_queue.unpack(doc), 200),
        "model: predict_bytes, 1 image": (lambda: model.predict_bytes([image]), 50),
        "model: predict_bytes, 16 images (per image)": (lambda: model.predict_bytes(batch), 20),
        "upload: images.inspect_upload (validation decode)": (
            lambda: images.inspect_upload(image, images.ImageLimits()),
            100,
        ),
        "upload: accept_upload into a LocalStore (fsync)": (
            lambda: accept_upload(
                store, unique_jpeg(image, f"c{next(seq)}".encode()), meta, uploaded_by="bench"
            ),
            100,
        ),
    }


def _median_ms(step: Callable[[], object], n: int) -> float:
    """The median of ``n`` timed calls of ``step`` (ms), after one untimed call."""
    step()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
