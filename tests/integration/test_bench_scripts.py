"""The benchmarks in bench/ keep working against the product's current APIs: each answers
``--help``; bench/train_neu.py trains, exports and measures a tiny candidate, and
bench/pipeline.py times every way it feeds a model, on a folder of simulated parts (no
real dataset: tests never need ../shared). Speed is never asserted here; only that the
script runs and writes its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _class_folder(root: Path, per_class: int) -> Path:
    """A folder shaped like NEU's: one subfolder of small simulated JPEG parts a class."""
    data = root / "parts"
    for label in ("scratch", "pit"):
        (data / label).mkdir(parents=True)
        for seed in range(per_class):
            image = part_image(label, seed=seed, size=48)
            (data / label / f"{label}-{seed}.jpg").write_bytes(image)
    return data


def _result(name: str, args: list[str], tmp_path: Path) -> dict[str, Any]:
    """Run bench/<name>.py with ``args``, its results moved below ``tmp_path``; the one
    JSON it wrote."""
    results = tmp_path / "results"
    done = _run([f"bench/{name}.py", *args], results)
    assert done.returncode == 0, done.stderr[-3000:]
    written = list(results.glob(f"{name}-*.json"))
    assert len(written) == 1, done.stdout[-2000:]
    return dict(json.loads(written[0].read_text()))


def test_train_neu_trains_and_measures_a_candidate_on_a_class_folder(tmp_path: Path) -> None:
    result = _result(
        "train_neu",
        [
            "--data",
            str(_class_folder(tmp_path, 12)),
            "--candidates",
            "compact_cnn:32:1",
            "--epochs",
            "1",
            "--latency-runs",
            "2",
            "--no-wait",
        ],
        tmp_path,
    )
    (row,) = result["results"]
    assert row["candidate"] == "compact_cnn 32x32x1"
    assert row["epochs_run"] == 1
    assert 0.0 <= row["heldout_accuracy"] <= 1.0
    assert row["keras_serving_agreement"] == 1.0
    assert row["saved_model_mb"] > 0


def test_pipeline_times_every_way_of_feeding_the_model_on_a_class_folder(tmp_path: Path) -> None:
    # The smallest run: 32 px, the first epoch and one more a way, no waiting.
    smallest = {"size": 32, "batch-size": 4, "rounds": 1, "max-rounds": 1, "alone-epochs": 1}
    smallest |= {"round-idle-timeout": 0, "idle-timeout": 0}
    options = [f"--{name}={value}" for name, value in smallest.items()]
    data = str(_class_folder(tmp_path, 8))
    result = _result(
        "pipeline", ["--data", data, *options, "--keras-layers", "--no-wait"], tmp_path
    )
    assert [row["path"] for row in result["rows"]] == ["a", "b", "b0", "c", "k"]
    for row in result["rows"]:
        assert len(row["epochs"]) == 2  # the first epoch and one steady one
        assert row["median_images_per_s"] > 0
        assert row["alone_images_per_s"] > 0
    assert 0 < result["train_images"] < 16
