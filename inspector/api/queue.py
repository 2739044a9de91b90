"""Handing work to the Celery workers, without letting a broker outage fail an upload.

The upload is durable before anything is enqueued; if the broker is down, the image
waits for the reconciler (a periodic beat task) instead. After a failure the API
stops trying for a few seconds, so a broker outage does not slow every upload down.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from inspector.config import Settings

log = logging.getLogger("inspector.api.queue")


class Enqueuer(Protocol):
    """What the API needs from a task queue."""

    def ingest(self, image_id: str) -> bool:
        """Queue the image for ingest; False if the broker could not take it now."""
        ...

    def train(self, run_id: str) -> bool:
        """Queue a requested training run; False if the broker could not take it."""
        ...

    def assess(self, version: int, actor: str) -> bool:
        """Queue a new assessment of a version; False if the broker could not take it."""
        ...

    def ping(self) -> bool:
        """Whether the broker answers."""
        ...


class CeleryEnqueuer:
    """Sends tasks by name, so the API never imports the task modules (or TensorFlow)."""

    def __init__(self, settings: Settings, backoff_seconds: float = 5.0) -> None:
        from workers.celery_app import TASK_ASSESS, TASK_INGEST, TASK_TRAIN, make_celery

        self._app = make_celery(settings)
        self._task_ingest = TASK_INGEST
        self._task_train = TASK_TRAIN
        self._task_assess = TASK_ASSESS
        self._timeout = settings.enqueue_timeout_seconds
        self._backoff = backoff_seconds
        self._down_until = 0.0
        self._lock = threading.Lock()

    def ingest(self, image_id: str) -> bool:
        """Queue ``image_id`` on the ingest queue; False (and logged) if the broker is down."""
        return self._send(self._task_ingest, "ingest", image_id)

    def train(self, run_id: str) -> bool:
        """Queue a training run on the train queue; False (and logged) if the broker is down."""
        return self._send(self._task_train, "train", run_id)

    def assess(self, version: int, actor: str) -> bool:
        """Queue a new assessment of ``version`` on the train queue."""
        return self._send(self._task_assess, "train", version, actor)

    def _send(self, task: str, queue: str, *args: Any) -> bool:
        if time.monotonic() < self._down_until:
            return False
        try:
            self._app.send_task(
                task,
                args=list(args),
                queue=queue,
                # No result is awaited: subscribing for one would tie the API to the result
                # backend's connection, which Celery cannot recover after a Redis outage.
                ignore_result=True,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.2},
            )
        except Exception as exc:  # kombu and redis raise a zoo of connection errors
            with self._lock:
                self._down_until = time.monotonic() + self._backoff
            log.warning(
                "broker unreachable (%s: %s) queueing %s %s; not trying again for %.0f s",
                exc.__class__.__name__,
                exc,
                queue,
                args,
                self._backoff,
            )
            return False
        return True

    def ping(self) -> bool:
        """Whether the broker answers within the timeout."""
        try:
            with self._app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self._timeout)
            return True
        except Exception:
            return False
