"""`/metrics` in Prometheus's text format.

Two kinds of numbers: what this API process observes itself (requests and their
latency by route, uploads accepted and rejected by reason), kept in prometheus_client
metrics; and what the rest of the system knows (queue depths, verdicts by class and
line, the version each inference worker serves and its swaps, training run durations,
drift scores), read from Redis and the store when Prometheus scrapes, by a collector.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inspector import drift, training
from storage import ObjectStore, StoreError
from workers.inference_queue import QUEUE as INFERENCE_QUEUE
from workers.inference_queue import InferenceClient

CELERY_QUEUES = ("ingest", "train", "registry")
RUN_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, float("inf"))


class Metrics:
    """The API process's metrics and the collector of everyone else's."""

    def __init__(self, store: ObjectStore, inference: InferenceClient) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "inspector_http_request_duration_seconds",
            "HTTP requests by route, method and status, with their latency",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.uploads = Counter(
            "inspector_uploads_total",
            "Uploads by result (accepted, duplicate)",
            ["result"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "inspector_uploads_rejected_total",
            "Uploads refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_SystemCollector(store, inference))

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


class _SystemCollector:
    """Reads the rest of the system at scrape time (runs and drift cached for a minute)."""

    def __init__(self, store: ObjectStore, inference: InferenceClient) -> None:
        self.store = store
        self.inference = inference
        self._cache: dict[str, tuple[float, Any]] = {}

    def _cached(self, name: str, fetch: Any, ttl: float = 60.0) -> Any:
        at, value = self._cache.get(name, (0.0, None))
        if time.monotonic() - at > ttl:
            try:
                value = fetch()
            except StoreError:
                value = value or []
            self._cache[name] = (time.monotonic(), value)
        return value

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "inspector_queue_depth", "Messages waiting per queue", labels=["queue"]
        )
        for name, n in self.inference.queue_lengths([*CELERY_QUEUES, INFERENCE_QUEUE]).items():
            depth.add_metric(["inference" if name == INFERENCE_QUEUE else name], n)
        yield depth

        verdicts = GaugeMetricFamily(
            "inspector_verdicts_total",
            "Verdicts recorded, by line and class",
            labels=["line", "label"],
        )
        for (line, label), n in sorted(self.inference.verdict_counts().items()):
            verdicts.add_metric([line, label], n)
        yield verdicts

        serving = GaugeMetricFamily(
            "inspector_serving_model_version",
            "Version each inference worker serves",
            labels=["worker", "state"],
        )
        swaps = GaugeMetricFamily(
            "inspector_model_swaps_total", "Model swaps per worker", labels=["worker"]
        )
        swap_seconds = GaugeMetricFamily(
            "inspector_model_swap_seconds", "Duration of each worker's last swap", labels=["worker"]
        )
        memory = GaugeMetricFamily(
            "inspector_inference_rss_bytes", "Resident memory per worker", labels=["worker"]
        )
        for name, status in sorted(self.inference.workers().items()):
            serving.add_metric([name, str(status.get("state"))], float(status.get("version") or 0))
            swaps.add_metric([name], float(status.get("swaps") or 0))
            swap_seconds.add_metric([name], float(status.get("last_swap_seconds") or 0))
            memory.add_metric([name], float(status.get("rss_bytes") or 0))
        yield from (serving, swaps, swap_seconds, memory)

        runs = self._cached("runs", lambda: training.list_runs(self.store))
        durations = [
            float(r["result"]["seconds"]) for r in runs if (r.get("result") or {}).get("seconds")
        ]
        buckets, total = [], 0
        for bound in RUN_BUCKETS:
            total = sum(1 for d in durations if d <= bound)
            buckets.append(("+Inf" if bound == float("inf") else str(bound), total))
        yield HistogramMetricFamily(
            "inspector_training_run_seconds",
            "Durations of finished training runs",
            buckets=buckets,
            sum_value=sum(durations),
        )
        states = GaugeMetricFamily(
            "inspector_training_runs", "Training runs by state", labels=["state"]
        )
        for state in ("queued", "succeeded", "failed"):
            states.add_metric([state], sum(1 for r in runs if r["state"] == state))
        yield states

        scores = GaugeMetricFamily(
            "inspector_drift_psi",
            "Population stability index per line and feature",
            labels=["line", "feature"],
        )
        alert = GaugeMetricFamily(
            "inspector_drift_alert", "1 if the line's drift passed its threshold", labels=["line"]
        )
        for check in self._cached("drift", lambda: drift.latest(self.store)):
            for feature, value in check["scores"].items():
                if drift.is_finite(value):
                    scores.add_metric([check["line"], feature], value)
            alert.add_metric([check["line"]], 1.0 if check["alert"] else 0.0)
        yield from (scores, alert)


class RequestMetrics:
    """ASGI middleware: every request's route template, method, status and duration."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status["code"])).observe(
                time.perf_counter() - started
            )
