"""Infra check: can this SavedModel be loaded and served, and does it answer its warm-up
requests as it did when it was evaluated? Run in a separate process under a timeout
(`python -m inspector.infracheck SAVED_MODEL WARMUP_JSON`), so a model that crashes or
hangs the loader never touches the process that asked.

Prints one JSON line: {"ok": bool, "load_seconds": …, "max_abs_diff": …, "error": …}.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOLERANCE = 1e-4


def check(saved_model: Path, warmup: Path) -> dict[str, Any]:
    """Load, replay the warm-up requests, compare outputs (in this process)."""
    import numpy as np

    from inspector.export import ServingModel

    started = time.monotonic()
    try:
        serving = ServingModel(saved_model)
    except Exception as exc:  # a broken SavedModel fails in many ways
        return {"ok": False, "error": f"cannot load: {exc.__class__.__name__}: {str(exc)[:300]}"}
    loaded = time.monotonic() - started
    doc = json.loads(warmup.read_text())
    images = [base64.b64decode(r["b64"]) for r in doc["requests"]]
    try:
        outputs = serving.predict_bytes(images)
    except Exception as exc:
        return {"ok": False, "load_seconds": loaded, "error": f"cannot serve: {str(exc)[:300]}"}
    diff = (
        float(np.abs(outputs["probabilities"] - np.asarray(doc["probabilities"])).max())
        if images
        else 0.0
    )
    labels = [label.decode() for label in outputs["label"]]
    ok = diff <= TOLERANCE and labels == doc["labels"]
    return {
        "ok": ok,
        "load_seconds": round(loaded, 3),
        "requests": len(images),
        "max_abs_diff": diff,
        "error": None
        if ok
        else f"warm-up outputs differ from the recorded ones (max |Δ| {diff:.3g})",
    }


def run_isolated(saved_model: Path, warmup: Path, timeout: float) -> dict[str, Any]:
    """:func:`check` in a child process, killed after ``timeout`` seconds."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "inspector.infracheck", str(saved_model), str(warmup)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"loading and serving took longer than {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {
            "ok": False,
            "error": f"the check process failed (exit {done.returncode}): {' | '.join(tail)}",
        }
    result = dict(json.loads(lines[-1]))
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def main() -> None:
    """Entry point of the child process."""
    saved_model, warmup = Path(sys.argv[1]), Path(sys.argv[2])
    print(json.dumps(check(saved_model, warmup)), flush=True)


if __name__ == "__main__":
    main()
