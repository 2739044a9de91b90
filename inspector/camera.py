"""A camera that uploads a simulated production line to the API.

:func:`run_simulation` plays a :class:`~inspector.simulate.LineSimulator` against
``POST /v1/images`` the way a camera would: at a steady rate (:func:`schedule`), from
several threads, retrying transient failures so that an API restart loses no part, and
sums up what happened in a :class:`SimulationReport`. The threads of one run share a
private ``_Cameras``: the parts still to take, the report and the lock that guards both.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np

from inspector import images
from inspector.simulate import LineSimulator, Size, encode

_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})  # worth the same request again, later
_AUTH_STATUS = frozenset({401, 403})  # every further upload would fail the same way
_MAX_BACKOFF = 5.0
_PROGRESS_INTERVAL = 0.1


def schedule(i: int, rate: float | None) -> float:
    """Seconds after the start at which upload ``i`` is due (``i / rate``; 0 if unthrottled).

    Every upload has a fixed slot, so a slow response delays only its own upload and
    the line never drifts from its rate.
    """
    return 0.0 if rate is None else i / rate


@dataclass
class SimulationReport:
    """What a simulation run did: counts by outcome and by class, latencies, timing.

    ``sent`` counts parts whose upload finished, whatever the outcome:
    ``sent == accepted + duplicates + sum(rejected.values()) + failed``.
    ``latencies_ms`` is the camera's view of each answered upload, retries included.
    """

    planned: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    sent_by_class: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    aborted: str | None = None

    def percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of upload latency, or None before any answer."""
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    @property
    def p50_ms(self) -> float | None:
        """Median upload latency in milliseconds."""
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float | None:
        """99th-percentile upload latency in milliseconds."""
        return self.percentile_ms(99)

    @property
    def rate(self) -> float:
        """Achieved uploads per second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """A few human-readable lines."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        def counts(d: Mapping[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"

        lines = [
            f"sent {self.sent}/{self.planned} parts in {self.elapsed:.1f} s ({self.rate:.1f}/s): "
            f"{self.accepted} accepted, {self.duplicates} duplicates, "
            f"{sum(self.rejected.values())} rejected, {self.failed} failed, {self.retries} retries",
            f"by class: {counts(self.sent_by_class)}",
            f"latency ms: p50 {ms(self.p50_ms)}, p99 {ms(self.p99_ms)}",
        ]
        if self.rejected:
            lines.append(f"rejected: {counts(self.rejected)}")
        if self.failures:
            lines.append(f"failed: {counts(self.failures)}")
        if self.aborted:
            lines.append(f"aborted: {self.aborted}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Outcome:
    kind: str  # accepted | duplicate | rejected | failed
    code: str = ""
    message: str = ""
    retries: int = 0
    status: int = 0


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}", response.text[:200]


def _retry_after(response: httpx.Response | None) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), 30.0) if response is not None else None
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date: fall back to our own backoff


def _upload(
    client: httpx.Client,
    url: str,
    request: dict[str, Any],
    *,
    retries: int,
    backoff: float,
    stop: threading.Event,
) -> _Outcome:
    """One part's upload, retrying what an API restart or overload would cause."""
    attempt = 0
    while True:
        response: httpx.Response | None = None
        try:
            response = client.post(url, **request)
        except httpx.TransportError as exc:
            reason = type(exc).__name__
        else:
            status = response.status_code
            if status < 300:
                try:
                    duplicate = bool(response.json().get("duplicate", status == 200))
                except (ValueError, AttributeError):
                    duplicate = status == 200
                return _Outcome("duplicate" if duplicate else "accepted", retries=attempt)
            if status not in _TRANSIENT_STATUS:
                kind = "rejected" if status < 500 else "failed"
                return _Outcome(kind, *_error(response), retries=attempt, status=status)
            reason = _error(response)[0]
        # Jitter keeps a fleet of cameras from retrying in lockstep after an API restart.
        delay = _retry_after(response) or min(_MAX_BACKOFF, backoff * 2**attempt) * random.uniform(
            0.5, 1
        )
        if attempt == retries or stop.wait(delay):
            return _Outcome("failed", reason, retries=attempt)
        attempt += 1


def run_simulation(
    base_url: str,
    token: str,
    *,
    count: int,
    rate: float | None = None,
    concurrency: int = 8,
    labels: bool = True,
    mix: Mapping[str, float] | None = None,
    size: Size = 256,
    defect_size: str = "normal",
    fmt: str = "jpeg",
    line: str = "line-1",
    station: str = "station-1",
    camera_id: str = "cam-1",
    seed: int | None = 0,
    progress: Callable[[SimulationReport], None] | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    retries: int = 6,
    backoff: float = 0.25,
) -> SimulationReport:
    """Upload ``count`` simulated parts to ``POST {base_url}/v1/images`` as a camera would.

    Part ``i`` is the ``i``-th part of ``LineSimulator(size=size, mix=mix, seed=seed,
    defect_size=defect_size)``,
    due at ``schedule(i, rate)``; images are drawn in the worker threads ahead of their
    slot. A 401/403 stops the run (every further upload would fail the same way).
    """
    _check_arguments(base_url, count, rate, concurrency, retries, fmt)
    cameras = _Cameras(
        url=base_url.rstrip("/") + "/v1/images",
        headers={"Authorization": f"Bearer {token}"},
        sim=LineSimulator(size=size, mix=mix, seed=seed, defect_size=defect_size),
        run=str(seed)[:12] if seed is not None else secrets.token_hex(4),
        count=count,
        rate=rate,
        labels=labels,
        fmt=fmt,
        line=line,
        station=station,
        camera_id=camera_id,
        progress=progress,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        report=SimulationReport(planned=count),
    )
    return cameras.run_all(client, concurrency)


def _check_arguments(
    base_url: str, count: int, rate: float | None, concurrency: int, retries: int, fmt: str
) -> None:
    """Raise ValueError on the first argument of :func:`run_simulation` that cannot work."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
    if count < 0 or concurrency < 1 or retries < 0:
        raise ValueError("count and retries must be >= 0 and concurrency >= 1")
    if rate is not None and not rate > 0:
        raise ValueError(
            f"rate must be a positive number of uploads per second, or None, not {rate}"
        )
    if fmt not in images.FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; choose one of {', '.join(images.FORMATS)}")


@dataclass(eq=False)
class _Cameras:
    """One run's camera threads and what they share.

    ``lock`` guards the part counter, the simulator's streams, the report and
    ``last_progress``; ``stop`` ends every thread (a 401/403, an error, Ctrl-C).
    """

    url: str
    headers: dict[str, str]
    sim: LineSimulator
    run: str
    count: int
    rate: float | None
    labels: bool
    fmt: str
    line: str
    station: str
    camera_id: str
    progress: Callable[[SimulationReport], None] | None
    timeout: float
    retries: int
    backoff: float
    report: SimulationReport
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    indices: Iterator[int] = field(default_factory=itertools.count)
    last_progress: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def run_all(self, client: httpx.Client | None, concurrency: int) -> SimulationReport:
        """Run up to ``concurrency`` cameras until every part is sent or the run stops.

        Uploads through ``client``, or through a client of its own that it closes after.
        """
        http = client or httpx.Client(limits=httpx.Limits(max_connections=concurrency))
        threads = min(concurrency, self.count)
        try:
            with ThreadPoolExecutor(
                max_workers=max(1, threads), thread_name_prefix="camera"
            ) as pool:
                futures = [pool.submit(self.camera, http) for _ in range(threads)]
                try:
                    for future in futures:
                        future.result()
                finally:
                    self.stop.set()  # on an error or Ctrl-C, the others stop after their upload
        finally:
            if client is None:
                http.close()
        self.report.elapsed = time.perf_counter() - self.start
        if self.progress is not None:
            self.progress(self.report)
        return self.report

    def take(self) -> tuple[int, str, np.random.Generator] | None:
        """The next part's index, label and random stream; None once all are taken."""
        with self.lock:  # indices, labels and seeds advance together, in order
            i = next(self.indices)
            return (i, *self.sim.next_stream()) if i < self.count else None

    def camera(self, http: httpx.Client) -> None:
        """One camera thread: draw the next part, wait for its slot, upload it, record it."""
        while not self.stop.is_set() and (job := self.take()) is not None:
            i, label, rng = job
            data = encode(self.sim.render(label, rng).image, self.fmt)
            wait = self.start + schedule(i, self.rate) - time.perf_counter()
            if wait > 0 and self.stop.wait(wait):
                return
            request = self.request(i, label, data)
            sent_at = time.perf_counter()
            outcome = _upload(
                http,
                self.url,
                request,
                retries=self.retries,
                backoff=self.backoff,
                stop=self.stop,
            )
            self.record(label, outcome, (time.perf_counter() - sent_at) * 1000)

    def request(self, i: int, label: str, data: bytes) -> dict[str, Any]:
        """The keyword arguments of part ``i``'s ``POST``: its fields and its image."""
        part_id = f"{self.camera_id[:40]}-{self.run}-{i:06d}"
        fields = {
            "line": self.line,
            "station": self.station,
            "camera_id": self.camera_id,
            "part_id": part_id,
            "captured_at": datetime.now(UTC).isoformat(),
        }
        if self.labels:
            fields["label"] = label
        extension, content_type = images.EXTENSIONS[self.fmt], images.CONTENT_TYPES[self.fmt]
        return {
            "headers": self.headers,
            "data": fields,
            "files": {"file": (f"{part_id}.{extension}", data, content_type)},
            "timeout": self.timeout,
        }

    def record(self, label: str, outcome: _Outcome, latency_ms: float) -> None:
        """Count one finished upload; stop the run on a 401/403; report progress."""
        report = self.report
        with self.lock:
            report.sent += 1
            report.sent_by_class[label] = report.sent_by_class.get(label, 0) + 1
            report.retries += outcome.retries
            if outcome.kind == "failed":
                report.failed += 1
                report.failures[outcome.code] = report.failures.get(outcome.code, 0) + 1
            else:
                report.latencies_ms.append(latency_ms)
                if outcome.kind == "accepted":
                    report.accepted += 1
                elif outcome.kind == "duplicate":
                    report.duplicates += 1
                else:
                    report.rejected[outcome.code] = report.rejected.get(outcome.code, 0) + 1
            if outcome.status in _AUTH_STATUS:
                report.aborted = report.aborted or f"{outcome.code}: {outcome.message}"
                self.stop.set()
            now = time.perf_counter()
            report.elapsed = now - self.start
            if self.progress is not None and now - self.last_progress >= _PROGRESS_INTERVAL:
                self.last_progress = now
                self.progress(report)
