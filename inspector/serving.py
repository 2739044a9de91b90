"""ModelHolder: load → warm up → verify → swap → drain → unload, in TF Serving's
availability-preserving order, so a promotion never fails a request.

A new version is loaded beside the current one (budget 2× model memory), its stored
warm-up requests are replayed and must give the recorded outputs, its class list must
match its version document; only then does the reference switch, between two batches.
The old version is released after the switch. A version that fails any step never
serves: the old one keeps serving, and the caller is told why.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector import registry
from inspector.errors import InspectorError
from storage import ObjectStore

log = logging.getLogger(__name__)

WARMUP_TOLERANCE = 1e-4


class LoadFailed(InspectorError):
    """A version could not be loaded, warmed up or verified."""

    code = "load_failed"


@dataclass
class LoadedModel:
    """One version in memory, ready to serve, with the threshold it judges at now (an
    operator may move it at approval: it changes here, without a reload)."""

    version: int
    classes: list[str]
    good: list[str]
    threshold: float | None
    serving: Any  # inspector.export.ServingModel
    loaded_at: float
    load_seconds: float

    def predict(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        """Outputs of the ``serving_default`` signature for encoded images."""
        return dict(self.serving.predict_bytes(list(images)))


def good_classes(doc: dict[str, Any]) -> list[str]:
    """A version's good (non-defect) classes; versions before thresholds knew only ``ok``."""
    if "good_classes" in doc:
        return list(doc["good_classes"])
    return [c for c in doc["classes"] if c == "ok"]


def rss_bytes() -> int:
    """Resident memory of this process (Linux)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def load_version(store: ObjectStore, number: int, models_dir: Path) -> LoadedModel:
    """Download (once), load, warm up and verify a version; :class:`LoadFailed` if any
    step fails."""
    from inspector.export import ServingModel  # TensorFlow: inference worker only

    started = time.monotonic()
    try:
        doc = registry.get_version(store, number)
        target = models_dir / f"v{number}"
        if not (target / "saved_model" / "saved_model.pb").exists():
            partial = models_dir / f".v{number}-{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            registry.download_directory(store, number, "saved_model", partial / "saved_model")
            registry.download_file(store, number, "warmup.json", partial / "warmup.json")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)
        serving = ServingModel(target / "saved_model")
        warmup = json.loads((target / "warmup.json").read_text())
        images = [base64.b64decode(r["b64"]) for r in warmup["requests"]]
        outputs = serving.predict_bytes(images)
    except LoadFailed:
        raise
    except Exception as exc:  # a broken version fails in many ways; none may escape
        raise LoadFailed(
            f"version {number} cannot be loaded: {exc.__class__.__name__}: {str(exc)[:300]}"
        ) from exc
    names = [n.decode() for n in outputs["class_names"][0]] if len(images) else list(doc["classes"])
    if names != list(doc["classes"]):
        raise LoadFailed(
            f"version {number} answers with classes {names}, its document says {doc['classes']}"
        )
    diff = (
        float(np.abs(outputs["probabilities"] - np.asarray(warmup["probabilities"])).max())
        if images
        else 0.0
    )
    if diff > WARMUP_TOLERANCE:
        raise LoadFailed(
            f"version {number} answers its warm-up requests differently (max |Δ| {diff:.3g})"
        )
    seconds = time.monotonic() - started
    threshold = registry.effective_threshold(store, number)
    log.info(
        "version %d loaded, warmed up and verified in %.2f s (threshold %s)",
        number,
        seconds,
        threshold,
    )
    return LoadedModel(
        number,
        list(doc["classes"]),
        good_classes(doc),
        threshold,
        serving,
        time.time(),
        seconds,
    )


@dataclass
class HolderStatus:
    """What a worker reports about the versions it holds (TF Serving's vocabulary)."""

    version: int | None = None
    state: str = "START"  # of ``version``: START, LOADING, AVAILABLE, END
    unloading_version: int | None = None  # the version being released after a swap
    shadow_version: int | None = None
    loading_version: int | None = None
    last_error: str | None = None
    swaps: int = 0
    last_swap_seconds: float | None = None
    rss_bytes: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class ModelHolder:
    """Holds the serving version (and optionally a shadow candidate) and swaps safely.

    ``prepare`` loads a version in the background thread that calls it; ``swap_if_ready``
    is called by the serving loop between batches, so no batch ever sees two versions
    and nothing is in flight when the old version is released.
    """

    def __init__(self, store: ObjectStore, models_dir: Path) -> None:
        self.store = store
        self.models_dir = models_dir
        models_dir.mkdir(parents=True, exist_ok=True)
        self._current: LoadedModel | None = None
        self._shadow: LoadedModel | None = None
        self._ready: LoadedModel | None = None
        self._ready_shadow: tuple[LoadedModel | None] | None = None
        self._lock = threading.Lock()
        self.status = HolderStatus()
        # Called after each change of ``status`` (loading, failed, swapped), so that the
        # worker can publish it at once instead of at its next heartbeat.
        self.on_change: Callable[[], None] = lambda: None

    @property
    def current(self) -> LoadedModel | None:
        """The version serving now."""
        return self._current

    @property
    def shadow(self) -> LoadedModel | None:
        """The candidate running in shadow mode, if any."""
        return self._shadow

    def prepare(self, number: int) -> LoadedModel:
        """Load, warm up and verify ``number`` beside the current version (blocking);
        it starts serving at the next ``swap_if_ready``. Raises :class:`LoadFailed`."""
        if self._current is not None and self._current.version == number:
            return self._current
        self.status.loading_version = number
        if self._current is None:
            self.status.state = "LOADING"
        self.on_change()
        try:
            loaded = load_version(self.store, number, self.models_dir)
        except LoadFailed as exc:
            self.status.last_error = exc.message
            self.status.loading_version = None
            if self._current is None:
                self.status.state = "END"
            self.on_change()
            raise
        with self._lock:
            self._ready = loaded
        return loaded

    def apply_thresholds(self, state: registry.RegistryState) -> None:
        """Judge with the thresholds the registry has now (no reload)."""
        for model in (self._current, self._shadow):
            if model is None or model.version not in state.thresholds:
                continue
            if model.threshold != state.thresholds[model.version]:
                log.info(
                    "version %d now judges at threshold %s (was %s)",
                    model.version,
                    state.thresholds[model.version],
                    model.threshold,
                )
                model.threshold = state.thresholds[model.version]

    def prepare_shadow(self, number: int | None) -> None:
        """Load (or drop, with None) the shadow candidate; failures only log."""
        if (self._shadow.version if self._shadow else None) == number:
            return
        loaded = None
        if number is not None:
            try:
                loaded = load_version(self.store, number, self.models_dir)
            except LoadFailed as exc:
                log.warning("shadow candidate not loaded: %s", exc.message)
                return
        with self._lock:
            self._ready_shadow = (loaded,)

    def swap_if_ready(self) -> bool:
        """Switch to a prepared version (and shadow); release what was replaced."""
        with self._lock:
            ready, self._ready = self._ready, None
            ready_shadow, self._ready_shadow = self._ready_shadow, None
        if ready is None and ready_shadow is None:
            return False
        started = time.monotonic()
        old = None
        if ready is not None:
            old, self._current = self._current, ready
            self.status.state = "AVAILABLE"
            self.status.version = ready.version
            self.status.loading_version = None
            self.status.swaps += 1
            log.info(
                "serving version %d (was %s)", ready.version, old.version if old else "nothing"
            )
        if ready_shadow is not None:
            old_shadow, self._shadow = self._shadow, ready_shadow[0]
            self.status.shadow_version = self._shadow.version if self._shadow else None
            del old_shadow
        if old is not None:
            # The new version already serves; only the old one is on its way out.
            self.status.unloading_version = old.version
            del old
            gc.collect()
            self.status.unloading_version = None
        self.status.last_swap_seconds = round(time.monotonic() - started, 4)
        self.status.rss_bytes = rss_bytes()
        self.status.history.append(
            {"version": self.status.version, "at": time.time(), "rss_bytes": self.status.rss_bytes}
        )
        del self.status.history[:-50]
        self.on_change()
        return True
