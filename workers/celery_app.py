"""The Celery app, built from Settings. Queues: ingest, inference, train, registry.

This module must stay importable by the API without pulling in TensorFlow: task
modules are listed in ``include`` and imported only by worker processes.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from celery.schedules import crontab
from kombu import Exchange, Queue

from inspector.config import Settings, get_settings

QUEUES = ("ingest", "inference", "train", "registry")
TASK_INGEST = "inspector.ingest_image"
TASK_RECONCILE = "inspector.reconcile_ingest"
TASK_TRAIN = "inspector.train"
TASK_NIGHTLY = "inspector.nightly_training"
TASK_ASSESS = "inspector.assess"
TASK_RECONCILE_VERDICTS = "inspector.reconcile_verdicts"
TASK_DRIFT = "inspector.check_drift"


def cron_schedule(spec: str) -> crontab:
    """A Celery crontab from five cron fields: minute hour day-of-month month day-of-week."""
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(
            f"INSPECTOR_TRAIN_SCHEDULE {spec!r} must have five cron fields, e.g. '0 2 * * *'"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(minute, hour, day_of_week, day_of_month, month_of_year)


def make_celery(settings: Settings) -> Celery:
    """A Celery app wired to the settings' Redis, with at-least-once delivery."""
    url = settings.resolved_redis_url
    app = Celery("inspector", broker=url, backend=url, include=["workers.tasks"])
    app.conf.update(
        # A task is acknowledged only after it finished, and a worker killed mid-task
        # gives it back: with idempotent tasks this is at-least-once without duplicates.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
        task_default_queue="ingest",
        task_default_exchange="ingest",
        task_default_routing_key="ingest",
        task_routes={
            TASK_INGEST: {"queue": "ingest"},
            TASK_RECONCILE: {"queue": "ingest"},
            TASK_TRAIN: {"queue": "train"},
            TASK_NIGHTLY: {"queue": "train"},
            TASK_ASSESS: {"queue": "train"},
            TASK_RECONCILE_VERDICTS: {"queue": "ingest"},
            TASK_DRIFT: {"queue": "ingest"},
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout,
            # Sweep for tasks of killed workers every few seconds rather than every 100 s.
            "unacked_restore_interval": min(10, max(1, settings.broker_visibility_timeout // 2)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": settings.enqueue_timeout_seconds,
            "socket_timeout": 30,
        },
        result_backend_transport_options={
            "socket_connect_timeout": settings.enqueue_timeout_seconds
        },
        redis_socket_connect_timeout=settings.enqueue_timeout_seconds,
        worker_hijack_root_logger=False,
        beat_schedule={
            "reconcile-ingest": {
                "task": TASK_RECONCILE,
                "schedule": settings.reconcile_interval_seconds,
                "options": {"queue": "ingest", "expires": settings.reconcile_interval_seconds},
            },
            "reconcile-verdicts": {
                "task": TASK_RECONCILE_VERDICTS,
                "schedule": settings.reconcile_interval_seconds,
                "options": {"queue": "ingest", "expires": settings.reconcile_interval_seconds},
            },
            "check-drift": {
                "task": TASK_DRIFT,
                "schedule": settings.drift_interval_seconds,
                "options": {"queue": "ingest", "expires": settings.drift_interval_seconds},
            },
            "nightly-training": {
                "task": TASK_NIGHTLY,
                "schedule": cron_schedule(settings.train_schedule),
                "options": {"queue": "train", "expires": 6 * 3600},
            },
        },
    )
    return app


@functools.cache
def get_celery() -> Celery:
    """The process's Celery app, built on first use from the environment's settings."""
    return make_celery(get_settings())


def __getattr__(name: str) -> Any:
    # `celery -A workers.celery_app` looks up `app`; building it lazily lets tests and
    # `inspector run` set the environment before the settings are read.
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(name)
