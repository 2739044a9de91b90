"""The benchmarks in bench/ keep working against the product's current APIs: each answers
``--help``, and bench/train_neu.py trains, exports and measures a tiny candidate on a
folder of simulated parts (no real dataset: tests never need ../shared). Speed is never
asserted here; only that the script runs and writes its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import part_image

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p.name for p in (ROOT / "bench").glob("*.py") if 'if __name__ == "__main__":' in p.read_text()
)


def _run(args: list[str], results: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if results is not None:
        env["INSPECTOR_BENCH_RESULTS"] = str(results)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280
    )


def test_every_benchmark_script_is_found() -> None:
    assert {"real_lines.py", "train_neu.py", "serving.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_answers_help(script: str) -> None:
    done = _run([f"bench/{script}", "--help"])
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_train_neu_trains_and_measures_a_candidate_on_a_class_folder(tmp_path: Path) -> None:
    data = tmp_path / "parts"
    for label in ("scratch", "pit"):
        (data / label).mkdir(parents=True)
        for seed in range(12):
            image = part_image(label, seed=seed, size=48)
            (data / label / f"{label}-{seed}.jpg").write_bytes(image)
    results = tmp_path / "results"
    done = _run(
        [
            "bench/train_neu.py",
            "--data",
            str(data),
            "--candidates",
            "compact_cnn:32:1",
            "--epochs",
            "1",
            "--latency-runs",
            "2",
            "--no-wait",
        ],
        results,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    written = list(results.glob("train_neu-*.json"))
    assert len(written) == 1, done.stdout[-2000:]
    result = json.loads(written[0].read_text())
    (row,) = result["results"]
    assert row["candidate"] == "compact_cnn 32x32x1"
    assert row["epochs_run"] == 1
    assert 0.0 <= row["heldout_accuracy"] <= 1.0
    assert row["keras_serving_agreement"] == 1.0
    assert row["saved_model_mb"] > 0
