"""What bench/pipeline.py measures and how: the CPU time this process used, a Keras
callback that records each epoch's wall time, own CPU and the cores the rest of the
machine used, :class:`Way` (one way of feeding the model, its timed epochs and their
medians over the clean ones), a pipeline iterated alone without the model, and the cost of
decoding and resizing one image with TensorFlow and with OpenCV.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import common

if TYPE_CHECKING:
    from inspector.model_input import InputSpec

CLEAN = 0.25  # cores the rest of the machine may use for an epoch to count as clean


def cpu_seconds() -> float:
    """CPU time this process has used (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def epoch_timer() -> Any:
    """A Keras callback that records each epoch's wall time, own CPU and others' cores."""
    import keras

    class _EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[dict[str, float]] = []

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._wall, self._cpu, self._window = (
                time.perf_counter(),
                cpu_seconds(),
                common.CpuWindow(),
            )

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            wall = time.perf_counter() - self._wall
            cpu = cpu_seconds() - self._cpu
            self.epochs.append({"wall": wall, "cpu": cpu, "others": self._window.cores()["others"]})

    return _EpochTimer()


@dataclass
class Way:
    """One way of feeding the model, and its timed epochs."""

    key: str
    name: str
    dataset: Any
    epochs: list[dict[str, float]] = field(default_factory=list)

    def train_epoch(self, model: Any) -> dict[str, float]:
        """One epoch of training; its record."""
        timer = epoch_timer()
        model.fit(self.dataset, epochs=1, callbacks=[timer], verbose=0)
        self.epochs.append(timer.epochs[0])
        return timer.epochs[0]

    def summary(self, n: int) -> dict[str, Any]:
        """First epoch, and medians over the steady (clean if possible) epochs."""
        steady = self.epochs[1:]
        clean = [e for e in steady if e["others"] <= CLEAN]
        used = clean if len(clean) >= 3 else steady
        return {
            "path": self.key,
            "name": self.name,
            "first_epoch_images_per_s": round(n / self.epochs[0]["wall"], 1),
            "median_images_per_s": round(n / statistics.median(e["wall"] for e in used), 1),
            "median_all_images_per_s": round(n / statistics.median(e["wall"] for e in steady), 1),
            "cpu_ms_per_image": round(1000 * statistics.median(e["cpu"] for e in used) / n, 2),
            "own_cores": round(statistics.median(e["cpu"] / e["wall"] for e in used), 2),
            "clean_epochs": f"{len(clean)}/{len(steady)}",
            "median_from": "clean epochs" if used is clean else "all steady epochs",
            "others_cores_median": round(statistics.median(e["others"] for e in steady), 2),
            "epochs": [{k: round(v, 3) for k, v in e.items()} for e in self.epochs],
        }


def iterate_only(make: Callable[[], Any], n: int, epochs: int, cooperative: bool) -> dict[str, Any]:
    """Iterate a pipeline with no model: images/s and CPU ms per image (steady epochs)."""
    dataset = make()
    wall, cpu = [], []
    for _ in range(epochs):
        if cooperative:
            common.wait_for_quiet_machine()
        t, c = time.perf_counter(), cpu_seconds()
        for _batch in dataset:
            pass
        wall.append(time.perf_counter() - t)
        cpu.append(cpu_seconds() - c)
    steady = slice(1, None) if epochs > 1 else slice(None)
    return {
        "first_epoch_images_per_s": round(n / wall[0], 1),
        "median_images_per_s": round(n / statistics.median(wall[steady]), 1),
        "cpu_ms_per_image": round(1000 * statistics.median(cpu[steady]) / n, 3),
    }


def decode_costs(
    neu: Sequence[Path], spec: InputSpec, count: int = 40
) -> dict[str, dict[str, float]]:
    """Milliseconds to decode and resize one image, the product's way (TensorFlow, as the
    first epoch and serving do) and the naive way (OpenCV), for NEU's small JPEGs and for
    camera-sized ones (1152×864 simulated parts, as bench/ingest.py uploads)."""
    import cv2
    import tensorflow as tf

    from inspector.pipeline_data import preprocess_encoded
    from inspector.simulate import LineSimulator, encode

    camera = [
        encode(part.image, "jpeg") for part in LineSimulator(size=(1152, 864), seed=0).parts(count)
    ]
    sets = {"NEU 200x200": [p.read_bytes() for p in neu[:count]], "camera 1152x864": camera}
    graph = tf.function(lambda data: preprocess_encoded(data, spec))
    flag = cv2.IMREAD_GRAYSCALE if spec.channels == 1 else cv2.IMREAD_COLOR

    def opencv(data: bytes) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if image is None:
            raise ValueError("OpenCV cannot decode an image")
        return cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_AREA)

    out = {}
    for name, blobs in sets.items():
        row = {"kib": round(statistics.mean(len(b) for b in blobs) / 1024, 1)}
        for way, fn in (
            ("tensorflow_ms", lambda b: graph(tf.constant(b)).numpy()),
            ("opencv_ms", opencv),
        ):
            fn(blobs[0])
            t = time.perf_counter()
            for blob in blobs:
                fn(blob)
            row[way] = round(1000 * (time.perf_counter() - t) / len(blobs), 2)
        out[name] = row
    return out
