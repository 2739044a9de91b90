"""A training run: snapshot → tf.data → (warm-started) fine-tune → exported model version.

Runs are requested (a small document in the store), executed by the train worker, and
finish with a result document: the version they produced, or why they failed. A run
is idempotent twice over: a re-delivered run whose result exists returns it, and a run
whose run key (snapshot + parent + configuration) already produced a version returns
that version instead of training again.

    training/runs/<run_id>/request.json   who asked, when, for what (written by the API)
    training/runs/<run_id>/result.json    succeeded (version) or failed (code, message)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector import datasets, records, registry, training_data
from inspector.errors import InspectorError
from inspector.train_config import (  # noqa: F401  re-exported: the run's configuration
    Architecture,
    AugmentConfig,
    TrainConfig,
    TrainingPlan,
    plan_training,
)
from storage import NotFound, ObjectStore

if TYPE_CHECKING:
    from inspector.trainer import Outcome

log = logging.getLogger(__name__)

RUNS_PREFIX = "training/runs/"
Progress = Callable[[dict[str, Any]], None]


class TrainingFailed(InspectorError):
    """The run cannot produce a version (diverged, nothing new to learn, bad configuration)."""

    code = "training_failed"


# --- run documents ----------------------------------------------------------------------


def progress_key(run_id: str) -> str:
    """Where the train worker publishes a run's latest progress in Redis (a view only: the
    run's state and result are in the store)."""
    return f"inspector:train-progress:{run_id}"


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus randomness."""
    return f"{records.now_utc():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def request_run(
    store: ObjectStore,
    *,
    by: str,
    config: TrainConfig,
    parent: str = "production",
    reason: str = "",
) -> dict[str, Any]:
    """Record a request for a run; the caller then queues it for the train worker."""
    if parent not in ("production", "none") and not parent.isdigit():
        raise TrainingFailed(
            f"parent {parent!r} must be 'production', 'none' or a version number",
            code="invalid_parent",
        )
    if parent.isdigit():
        registry.get_version(store, int(parent))
    run_id = new_run_id()
    doc = {
        "run_id": run_id,
        "requested_by": by,
        "requested_at": records.now_utc().isoformat(),
        "parent": parent,
        "reason": reason,
        "config": config.model_dump(),
    }
    store.put_if_absent(
        f"{RUNS_PREFIX}{run_id}/request.json", records.to_json(doc), "application/json"
    )
    return doc


def read_run(store: ObjectStore, run_id: str) -> dict[str, Any]:
    """A run's request and, once it ended, its result; ``state`` says which."""
    if not run_id or "/" in run_id or ".." in run_id:
        raise TrainingFailed(f"no training run {run_id!r}", code="run_not_found")
    try:
        request = records.read_json(store, f"{RUNS_PREFIX}{run_id}/request.json")
    except NotFound as exc:
        raise TrainingFailed(f"no training run {run_id!r}", code="run_not_found") from exc
    try:
        result = records.read_json(store, f"{RUNS_PREFIX}{run_id}/result.json")
    except NotFound:
        result = None
    return {**request, "state": result["state"] if result else "queued", "result": result}


def list_runs(store: ObjectStore) -> list[dict[str, Any]]:
    """Every run, newest first."""
    run_ids = sorted(
        {
            info.key.split("/")[2]
            for info in store.list(RUNS_PREFIX)
            if info.key.endswith("/request.json")
        },
        reverse=True,
    )
    return [read_run(store, run_id) for run_id in run_ids]


def record_failure(store: ObjectStore, run_id: str, code: str, message: str) -> dict[str, Any]:
    """End a run that never started (e.g. it could not be queued)."""
    return _finish(store, run_id, {"state": "failed", "code": code, "message": message})


def _finish(store: ObjectStore, run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    doc = {**result, "finished_at": records.now_utc().isoformat()}
    if not store.put_if_absent(
        f"{RUNS_PREFIX}{run_id}/result.json", records.to_json(doc), "application/json"
    ):
        return records.read_json(store, f"{RUNS_PREFIX}{run_id}/result.json")
    return doc


def has_new_labelled_data(store: ObjectStore) -> tuple[bool, str]:
    """Whether labelled images exist that the newest version did not train on, and why."""
    labelled = records.labelled_images(store)
    if not labelled:
        return False, "no ingested image has a label yet"
    versions = registry.list_versions(store)
    if not versions:
        return True, f"{len(labelled)} labelled images and no model yet"
    latest = versions[-1]
    seen = {
        e.image_id: e.label for e in datasets.load_snapshot(store, latest["snapshot_id"]).entries
    }
    changed = sum(1 for image_id, label in labelled.items() if seen.get(image_id) != label)
    if not changed:
        return (
            False,
            f"no labelled data since version {latest['version']} "
            f"(snapshot {latest['snapshot_id']})",
        )
    return True, f"{changed} new or relabelled images since version {latest['version']}"


def plan_nightly_run(store: ObjectStore, config: TrainConfig) -> dict[str, Any] | None:
    """The nightly decision: request a run if labelled data arrived since the newest
    version, else log why not and return None."""
    new, why = has_new_labelled_data(store)
    if not new:
        log.info("nightly training skipped: %s", why)
        return None
    log.info("nightly training requested: %s", why)
    return request_run(store, by="nightly", config=config, reason=why)


# --- executing a run --------------------------------------------------------------------


def execute_run(
    store: ObjectStore, run_id: str, *, cache_dir: Path, progress: Progress = lambda _: None
) -> dict[str, Any]:
    """Run a requested run to its result (idempotent: a finished run returns its result)."""
    run = read_run(store, run_id)
    if run["result"] is not None:
        return dict(run["result"])
    config = TrainConfig(**run["config"])
    started = time.monotonic()
    budget = config.time_budget_minutes * 60
    work_dir = Path(tempfile.mkdtemp(prefix=f"inspector-run-{run_id}-"))
    try:
        version = train_version(
            store,
            config,
            parent=run["parent"],
            by=run["requested_by"],
            run_id=run_id,
            cache_dir=cache_dir,
            work_dir=work_dir,
            deadline=started + budget if budget else None,
            progress=progress,
        )
    except InspectorError as exc:
        log.error("training run %s failed: %s: %s", run_id, exc.code, exc.message)
        return _finish(store, run_id, {"state": "failed", "code": exc.code, "message": exc.message})
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    log.info(
        "training run %s produced version %s in %.0f s",
        run_id,
        version["version"],
        time.monotonic() - started,
    )
    return _finish(
        store,
        run_id,
        {
            "state": "succeeded",
            "version": version["version"],
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def run_key(snapshot_id: str, parent: int | None, config: TrainConfig) -> str:
    """What makes two runs the same run."""
    material = json.dumps(
        {"snapshot": snapshot_id, "parent": parent, "config": config.model_dump()}, sort_keys=True
    )
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def _resolve_parent(store: ObjectStore, parent: str) -> int | None:
    if parent == "none":
        return None
    if parent == "production":
        number = registry.alias(store, "production")
        if number is None:
            log.info("no production model yet: training from scratch")
        return number
    return int(parent)


def train_version(
    store: ObjectStore,
    config: TrainConfig,
    *,
    parent: str,
    by: str,
    run_id: str,
    cache_dir: Path,
    work_dir: Path,
    progress: Progress,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Train, export and publish one model version (its fit ended in time for
    ``deadline``, a ``time.monotonic()``); returns its document."""
    progress({"phase": "snapshot"})
    snapshot = datasets.take_snapshot(store, by=f"run:{run_id}", policy=config.split_policy)
    parent_number = _resolve_parent(store, parent)
    parent_doc = registry.get_version(store, parent_number) if parent_number is not None else None
    key = run_key(snapshot.snapshot_id, parent_number, config)
    existing = registry.version_for_run_key(store, key)
    if existing is not None:
        log.info("run key %s already produced version %d: returning it", key, existing)
        return registry.get_version(store, existing)
    data, outcome = _fit(
        store, snapshot, parent_doc, config, (cache_dir, work_dir), progress, deadline
    )
    progress({"phase": "publishing"})
    number = registry.claim_version_number(store)
    doc = {
        "run_id": run_id,
        "run_key": key,
        "created_by": by,
        "snapshot_id": snapshot.snapshot_id,
        "parent_version": data.parent,
        "classes": data.classes,
        "good_classes": data.good,
        "architecture": config.architecture,
        "head": training_data.HEAD,
        "input": data.spec.to_doc(),
        "config": config.model_dump(),
        "plan": data.plan.to_doc(),
        "data": {
            "train": len(data.train),
            "new": data.new_images,
            "replayed": data.replayed,
            "validation": len(data.validation),
            "heldout": len(data.heldout),
            "snapshot_counts": snapshot.counts,
        },
        **({"note": data.note} if data.note else {}),
        **outcome.summary,
    }
    return registry.publish_version(store, number, outcome.files, doc)


def _fit(
    store: ObjectStore,
    snapshot: datasets.Snapshot,
    parent_doc: dict[str, Any] | None,
    config: TrainConfig,
    dirs: tuple[Path, Path],
    progress: Progress,
    deadline: float | None,
) -> tuple[training_data.TrainingData, Outcome]:
    """The run's data and fitted, exported model: a warm start from ``parent_doc`` where
    it can be one; where the warm start did not learn the classes new to its parent or
    forgot one it knew (:func:`inspector.learnt.check_warm_start`), a run on every
    training image with a first run's plan (and the version says why), from the parent's
    weights shrunk and perturbed or from scratch (``config.fallback``)."""
    from inspector import learnt, trainer  # TensorFlow: only here, in the train worker

    cache_dir, work_dir = dirs
    data = training_data.select(store, snapshot, parent_doc, config)
    refit = config.fallback == "shrink_perturb"
    try:
        return data, trainer.fit_and_export(
            store,
            config,
            data,
            cache_dir=cache_dir,
            work_dir=work_dir,
            progress=progress,
            deadline=deadline,
        )
    except learnt.WarmStartFailed as exc:
        if data.parent is None:
            raise
        restart = (
            f"from version {data.parent}'s weights shrunk and perturbed"
            if refit
            else "from scratch"
        )
        note = f"{exc.message}: trained again on every labelled image, {restart}"
        log.warning(note)
        progress({"phase": "restarting", "reason": note})
    data = dataclasses.replace(
        training_data.select(store, snapshot, parent_doc if refit else None, config, refit=refit),
        note="; ".join(n for n in (data.note, note) if n),
    )
    again = work_dir / "again"
    again.mkdir()
    return data, trainer.fit_and_export(
        store,
        config,
        data,
        cache_dir=cache_dir,
        work_dir=again,
        progress=progress,
        deadline=deadline,
    )


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Remaining seconds at the current pace, or None before there is a pace."""
    if done <= 0 or total <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


def finite(value: float) -> bool:
    """Whether a loss is a real number."""
    return not (math.isnan(value) or math.isinf(value))
