"""What TensorFlow's oneDNN kernels change on this machine: a training step and a defect
map of the product's model, once with ``TF_ENABLE_ONEDNN_OPTS=0`` and once with ``1``
(Inspector's default, ``inspector/__init__.py``), each in a process of its own (the
switch is read when TensorFlow loads).

    .venv/bin/python bench/onednn.py                      # KolektorSDD's canvas
    .venv/bin/python bench/onednn.py --canvas 192x192x1   # NEU's

TensorFlow turns the kernels on by itself only on CPUs with AVX-512 VNNI or AMX; on others
this says what leaving them off would cost. The model is fcn16 untrained (time does not
depend on the weights' values), fed random pixels; a step is Adam on a batch of 16.
Prints seconds per training step, ms per defect map at batch 1 and the ratios off ÷ on.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from typing import Any

from bench import common


def _median_seconds(fn: Any, seconds: float) -> float:
    fn()  # warm up (traces the graph)
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 3:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(height: int, width: int, channels: int, seconds: float) -> dict[str, float]:
    """In this process: s per training step, ms per defect map (batch 1)."""
    import numpy as np

    from bench.defect_maps import images, latency
    from inspector import export
    from inspector.model_input import InputSpec
    from inspector.modeling import build_model

    spec = InputSpec(height, width, channels)
    model = build_model("fcn16", ["ok", "crack"], ["ok"], spec)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (16, height, width, channels)).astype("float32")
    y = np.zeros(16, "int64")
    step = _median_seconds(lambda: model.train_on_batch(x, y), seconds)
    work = Path(tempfile.mkdtemp(prefix="onednn-"))
    export.export_saved_model(model, ["ok", "crack"], spec, work / "model", threshold=0.5)
    defect_map = latency(work / "model", images(8, height, width), 1, seconds)
    return {"train_step_s": round(step, 3), "defect_map_ms": round(defect_map, 1)}


def main() -> None:
    """Measure with the kernels off and on, each in a child process; print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canvas", default="560x224x1", help="height x width x channels")
    parser.add_argument("--seconds", type=float, default=20, help="timing per case")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width, channels = (int(v) for v in args.canvas.split("x"))
    if args.child:
        print(json.dumps(measure(height, width, channels, args.seconds)))
        return
    rows = []
    for value in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": value, "TF_CPP_MIN_LOG_LEVEL": "2"}
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                f"--canvas={args.canvas}",
                f"--seconds={args.seconds}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append({"TF_ENABLE_ONEDNN_OPTS": value, **json.loads(child.stdout.splitlines()[-1])})
    off, on = rows
    ratios = {k: round(off[k] / on[k], 2) for k in ("train_step_s", "defect_map_ms")}
    rows.append({"TF_ENABLE_ONEDNN_OPTS": "off ÷ on", **ratios})
    print(f"canvas {args.canvas}; {common.describe(common.machine())}")
    print(common.table(rows, [(k, k) for k in rows[0]]))
    out = common.save_results(
        "onednn", {"canvas": args.canvas, "rows": rows, "machine": common.machine()}
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
