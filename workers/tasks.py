"""Thin tasks: take ids, call one domain function, return a small summary."""

from __future__ import annotations

import functools
import json
import logging
import time
from datetime import timedelta
from typing import Any

from celery.exceptions import Reject
from celery.signals import worker_process_init

from inspector import drift, gating, ingest, promotion, records, training, verdicts
from inspector.config import get_settings, open_configured_store
from inspector.errors import IngestFailed
from inspector.train_config import config_from_settings
from storage import ObjectStore, Unavailable
from workers.celery_app import (
    TASK_ASSESS,
    TASK_DRIFT,
    TASK_INGEST,
    TASK_NIGHTLY,
    TASK_RECONCILE,
    TASK_RECONCILE_VERDICTS,
    TASK_TRAIN,
    get_celery,
)

log = logging.getLogger(__name__)
app = get_celery()
settings = get_settings()


@functools.cache
def worker_store() -> ObjectStore:
    """One store client per worker process (connection pools do not survive a fork)."""
    return open_configured_store(get_settings())


@worker_process_init.connect
def _fresh_store_after_fork(**_: Any) -> None:
    worker_store.cache_clear()


@app.task(
    name=TASK_INGEST,
    bind=True,
    autoretry_for=(Unavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=settings.ingest_max_retries,
)
def ingest_image(self: Any, image_id: str) -> dict[str, Any]:
    """Canonical copy, statistics and index entry for one accepted image."""
    spec = ingest.CanonicalSpec(settings.canonical_size, settings.canonical_color)
    try:
        result = ingest.ingest_image(worker_store(), image_id, spec)
    except IngestFailed as exc:
        # Retrying cannot help; the failure is recorded in the store for operators.
        raise Reject(str(exc), requeue=False) from exc
    return {"image_id": image_id, "status": result.status}


@app.task(name=TASK_RECONCILE)
def reconcile_ingest() -> dict[str, Any]:
    """Queue accepted images that were never ingested (e.g. the broker was down)."""
    cutoff = ingest.records.now_utc() - timedelta(seconds=settings.reconcile_grace_seconds)
    missing = ingest.find_unindexed(worker_store(), cutoff)
    # A short Redis marker per image keeps a long ingest backlog from being queued
    # again on every run; if the marker is lost, the worst case is a harmless re-run.
    redis = app.backend.client
    ttl = int(max(600, 10 * settings.reconcile_interval_seconds))
    queued = 0
    for image_id in missing:
        if redis.set(f"inspector:reconcile:{image_id}", 1, nx=True, ex=ttl):
            ingest_image.apply_async((image_id,), queue="ingest")
            queued += 1
    if missing:
        log.info(
            "reconciler: %d stored-but-not-ingested images, %d queued now", len(missing), queued
        )
    return {"missing": len(missing), "queued": queued}


@app.task(name=TASK_RECONCILE_VERDICTS)
def reconcile_verdicts() -> dict[str, Any]:
    """Ask for a verdict on accepted images that never got one (no worker was up, or a
    worker died before storing it), once a production model is being served."""
    from workers.inference_queue import InferenceClient, request

    client = InferenceClient(settings.resolved_redis_url)
    if client.serving_version() is None:
        return {"queued": 0, "reason": "no production model is being served"}
    store = worker_store()
    cutoff = ingest.records.now_utc() - timedelta(seconds=settings.reconcile_grace_seconds)
    judged = verdicts.judged_ids(store)
    missing = [
        records.id_from_key(info.key)
        for info in store.list("images/records/")
        if info.modified < cutoff and records.id_from_key(info.key) not in judged
    ]
    redis = app.backend.client
    ttl = int(max(600, 10 * settings.reconcile_interval_seconds))
    fresh = [
        i for i in missing if redis.set(f"inspector:reconcile-verdict:{i}", 1, nx=True, ex=ttl)
    ]
    for start in range(0, len(fresh), settings.inference_max_batch):
        chunk = fresh[start : start + settings.inference_max_batch]
        client.send(request(image_ids=chunk, reply=False, record=True))
    if missing:
        log.info(
            "verdict reconciler: %d images without a verdict, %d queued now",
            len(missing),
            len(fresh),
        )
    return {"missing": len(missing), "queued": len(fresh)}


@app.task(name=TASK_DRIFT)
def check_drift() -> dict[str, Any]:
    """Compare each line's recent images with the production model's training data;
    optionally start a training run when a line drifted."""
    store = worker_store()
    results = drift.run_check(
        store,
        threshold=settings.drift_threshold,
        window=settings.drift_window,
        min_images=settings.drift_min_images,
    )
    drifted = [r["line"] for r in results if r["alert"]]
    for result in results:
        log.log(
            logging.WARNING if result["alert"] else logging.INFO,
            "drift on line %s: %s (worst %s %.3f, threshold %.2f)",
            result["line"],
            "ALERT" if result["alert"] else "ok",
            result["worst"]["score"],
            result["worst"]["psi"],
            result["threshold"],
        )
    started = None
    if drifted and settings.drift_starts_training:
        busy = any(run["state"] == "queued" for run in training.list_runs(store))
        if not busy:
            run = training.request_run(
                store,
                by="drift",
                config=_default_config(),
                reason=f"drift on line(s) {', '.join(drifted)}",
            )
            train.apply_async((run["run_id"],), queue="train")
            started = run["run_id"]
    return {"lines": len(results), "drifted": drifted, "training_run": started}


def _default_config() -> training.TrainConfig:
    return config_from_settings(settings)


# --- training (train queue, solo pool: TensorFlow is loaded in this process only) ------

PROGRESS_TTL_SECONDS = 7 * 24 * 3600


@app.task(name=TASK_TRAIN, bind=True)
def train(self: Any, run_id: str) -> dict[str, Any]:
    """Execute a requested training run; a re-delivered run returns its recorded result."""
    redis = app.backend.client
    lock = f"inspector:train-lock:{run_id}"
    # A run redelivered while its first delivery still trains (visibility timeout) waits.
    if not redis.set(lock, self.request.id or "1", nx=True, ex=12 * 3600):
        raise self.retry(countdown=300, max_retries=None)
    started = time.time()

    def progress(update: dict[str, Any]) -> None:
        doc = {**update, "run_id": run_id, "started_at": started, "updated_at": time.time()}
        redis.set(training.progress_key(run_id), json.dumps(doc), ex=PROGRESS_TTL_SECONDS)

    try:
        result = training.execute_run(
            worker_store(), run_id, cache_dir=settings.cache_dir, progress=progress
        )
        if result["state"] == "succeeded":
            progress({"phase": "assessing"})
            report = assess_version(int(result["version"]))
            result = {**result, "blessed": report["blessed"], "report_id": report["report_id"]}
        return result
    finally:
        redis.delete(lock)


def assess_version(number: int, *, again: bool = False, actor: str = "inspector") -> dict[str, Any]:
    """Evaluate, gate and infra-check a version with the configured policy."""
    return promotion.assess(
        worker_store(),
        number,
        policy=gating.load_policy(settings.gate_policy),
        policy_source=settings.gate_policy,
        cache_dir=settings.cache_dir,
        infra_timeout=settings.infra_check_timeout_seconds,
        auto_promote=settings.auto_promote,
        again=again,
        actor=actor,
    )


@app.task(name=TASK_ASSESS)
def assess(number: int, actor: str = "inspector") -> dict[str, Any]:
    """Assess a version again (e.g. production changed since its report)."""
    report = assess_version(number, again=True, actor=actor)
    return {"version": number, "blessed": report["blessed"], "report_id": report["report_id"]}


@app.task(name=TASK_NIGHTLY)
def nightly_training() -> dict[str, Any]:
    """Request and run a training run, unless no labelled data arrived since the last one."""
    run = training.plan_nightly_run(worker_store(), _default_config())
    if run is None:
        return {"skipped": True}
    train.apply_async((run["run_id"],), queue="train")
    return {"run_id": run["run_id"], "reason": run["reason"]}
