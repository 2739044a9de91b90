"""The inference worker: a micro-batching consumer of the inference queue.

`inspector worker inference` runs this module as its own process (TensorFlow loads here,
and this process never forks). Not a Celery task: a verdict has a 200 ms deadline, and
batching independent requests needs a consumer that can wait a millisecond for more
work and answer each caller on its own reply list. The issue allows "a micro-batcher of
its own"; Celery still runs everything else (ingest, training, reconcilers).

Threads: the serving loop (batches requests, swaps models between batches), a watcher
(Redis pub/sub on registry changes, and a poll of the production alias as fallback; it
loads new versions in the background), and a heartbeat (status in Redis for the API).
This module owns the worker's lifecycle: those threads, taking batches off the queue,
and recycling the process; judging a batch and recording its verdicts is
workers/inference_judge.py.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import redis as redis_lib

from inspector import registry, verdicts
from inspector.config import Settings, get_settings, open_configured_store
from inspector.serving import LoadFailed, ModelHolder, rss_bytes
from inspector.supervisor import RECYCLE_EXIT_CODE
from storage import ObjectStore, StoreError
from workers.inference_judge import BatchJudge
from workers.inference_queue import QUEUE, REGISTRY_CHANNEL, STATUS, unpack

log = logging.getLogger("inspector.inference")


class InferenceWorker:
    """Serves verdicts from the production version; swaps versions without a gap."""

    def __init__(self, settings: Settings, store: ObjectStore, name: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.name = name or f"inference@{socket.gethostname()}:{os.getpid()}"
        self.redis = redis_lib.Redis.from_url(
            settings.resolved_redis_url,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=10,
        )
        self.holder = ModelHolder(store, settings.models_dir)
        self.stopping = threading.Event()
        self.status_changed = threading.Event()
        self.holder.on_change = self.status_changed.set
        self.wake = threading.Event()
        self.judge = BatchJudge(settings, store, self.redis, self.holder)
        self.recycle = False
        self.baseline_rss: int | None = None

    @property
    def served(self) -> int:
        """Images answered so far."""
        return self.judge.served

    @property
    def batches(self) -> int:
        """Batches answered so far."""
        return self.judge.batches

    # --- the watcher: which version should serve? ------------------------------------
    def desired(self) -> tuple[int | None, int | None, registry.RegistryState]:
        """(production version, shadow candidate, the registry) according to the registry now."""
        state = registry.read_state(self.store)
        shadow = verdicts.shadow_candidate(self.store) if self.settings.shadow_mode else None
        return state.aliases.get("production"), shadow, state

    def sync(self) -> None:
        """Prepare whatever the registry wants that is not loaded yet, and judge at the
        thresholds it has now."""
        production, shadow, state = self.desired()
        self.holder.apply_thresholds(state)
        current = self.holder.current
        if production is not None and (current is None or current.version != production):
            try:
                self.holder.prepare(production)
            except LoadFailed as exc:
                log.error("%s; the current version keeps serving", exc.message)
                try:
                    registry.transition(
                        self.store,
                        production,
                        "load_failed",
                        actor=self.name,
                        role="system",
                        reason=exc.message,
                    )
                except Exception as refused:  # another worker may have marked it already
                    log.info("not marked load_failed: %s", refused)
        self.holder.prepare_shadow(shadow)

    def watch(self) -> None:
        """Re-sync on every registry notification, and every few seconds regardless."""
        # This thread loads new versions beside the serving one: on a busy machine it
        # should get the CPU the serving loop leaves (Linux niceness is per thread).
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        pubsub = None
        while not self.stopping.is_set():
            try:
                if pubsub is None:
                    pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(REGISTRY_CHANNEL)
                pubsub.get_message(timeout=self.settings.inference_poll_seconds)
            except redis_lib.RedisError:
                pubsub = None
                self.stopping.wait(self.settings.inference_poll_seconds)
            try:
                self.sync()
            except StoreError as exc:
                log.warning("cannot read the registry: %s", exc)

    # --- the heartbeat -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What this worker reports to the API."""
        s = self.holder.status
        return {
            "name": self.name,
            "version": s.version,
            "state": s.state,
            "shadow_version": s.shadow_version,
            "unloading_version": s.unloading_version,
            "loading_version": s.loading_version,
            "last_error": s.last_error,
            "swaps": s.swaps,
            "last_swap_seconds": s.last_swap_seconds,
            "rss_bytes": rss_bytes(),
            "served": self.served,
            "batches": self.batches,
            "updated_at": time.time(),
        }

    def heartbeat(self) -> None:
        """Publish the status every two seconds, and at once when a version starts loading,
        fails or swaps, until stopped; remove it at the end."""
        while not self.stopping.is_set():
            self.status_changed.clear()
            with contextlib.suppress(redis_lib.RedisError):
                self.redis.hset(STATUS, self.name, json.dumps(self.status()))
            self.status_changed.wait(2.0)
        with contextlib.suppress(redis_lib.RedisError):
            self.redis.hdel(STATUS, self.name)

    # --- the serving loop ----------------------------------------------------------------
    def next_batch(self) -> list[dict[str, Any]]:
        """Block for one request, then take what else is queued, waiting up to ``max_wait``
        ms once for more. (Not a second BRPOP: Redis rounds blocking timeouts to its
        100 ms clock, and a timeout under a millisecond means "forever".)"""
        first: Any = self.redis.brpop([QUEUE], timeout=1)
        if first is None:
            return []
        batch = self._unpack([first[1]])
        limit = self.settings.inference_max_batch
        batch += self._drain(limit - 1)
        wait = self.settings.inference_max_wait_ms / 1000
        if len(batch) < limit and wait > 0:
            time.sleep(wait)
            batch += self._drain(limit - len(batch))
        return batch

    def _drain(self, count: int) -> list[dict[str, Any]]:
        if count <= 0:
            return []
        items: Any = self.redis.rpop(QUEUE, count)
        return self._unpack(items or [])

    @staticmethod
    def _unpack(items: list[bytes]) -> list[dict[str, Any]]:
        requests = []
        for item in items:
            try:
                requests.append(unpack(item))
            except (ValueError, KeyError, TypeError) as exc:  # nobody to answer: drop it
                log.error("dropped a malformed inference request: %s", exc)
        return requests

    def _should_recycle(self) -> bool:
        """Whether memory grew too much across swaps (TensorFlow may not give it back)."""
        status = self.holder.status
        if status.swaps <= 1:
            self.baseline_rss = None
            return False
        if self.baseline_rss is None:
            self.baseline_rss = status.history[0]["rss_bytes"] if status.history else rss_bytes()
        growth = (status.rss_bytes - self.baseline_rss) / max(self.baseline_rss, 1)
        if growth > self.settings.inference_recycle_rss_growth:
            log.warning(
                "memory grew %.0f%% across %d swaps; recycling this worker (queued requests wait)",
                growth * 100,
                status.swaps,
            )
            return True
        return False

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT; finish the batch in hand first."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        # Releasing a replaced SavedModel needs a full gc.collect() (its objects form
        # cycles), and the serving loop makes it between two batches. Freezing what exists
        # before any model loads (TensorFlow's modules: ~280,000 objects) keeps that
        # collection to the models' own objects: 13 ms instead of 157 ms (BENCHMARKS.md).
        import inspector.export  # noqa: F401  TensorFlow, imported now to be frozen with the rest

        gc.collect()
        gc.freeze()
        self.sync()
        self.holder.swap_if_ready()
        threads = [threading.Thread(target=t, daemon=True) for t in (self.watch, self.heartbeat)]
        for thread in threads:
            thread.start()
        log.info("%s ready (serving version %s)", self.name, self.holder.status.version)
        while not self.stopping.is_set():
            try:
                batch = self.next_batch()
            except redis_lib.RedisError as exc:
                log.warning("queue unreachable (%s); retrying", exc)
                self.stopping.wait(1.0)
                continue
            if batch:
                self.judge.serve(batch)
            else:
                self.holder.swap_if_ready()
            if self._should_recycle():
                self.recycle = True
                break
        log.info("%s stopping after %d images in %d batches", self.name, self.served, self.batches)
        self.stopping.set()
        self.status_changed.set()
        for thread in threads:
            thread.join(timeout=5)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `inspector worker inference`."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], prog="inspector worker inference"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 0 if a worker on this host reported lately"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("INSPECTOR_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    settings = get_settings()
    if args.check:
        from workers.inference_queue import InferenceClient

        host = f"inference@{socket.gethostname()}:"
        alive = [
            n for n in InferenceClient(settings.resolved_redis_url).workers() if n.startswith(host)
        ]
        raise SystemExit(0 if alive else 1)
    worker = InferenceWorker(settings, open_configured_store(settings))
    worker.run()
    if worker.recycle:
        # The supervisor (`inspector run`) and docker compose (restart: unless-stopped)
        # start a fresh process; requests wait in the queue meanwhile.
        raise SystemExit(RECYCLE_EXIT_CODE)


if __name__ == "__main__":
    main()
