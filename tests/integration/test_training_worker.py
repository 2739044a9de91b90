"""A real training run through real processes: simulated parts uploaded over HTTP,
ingested by the ingest worker, trained by the train worker (solo pool), started and
followed with `inspector train`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from inspector import registry
from tests.factories import upload_parts
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "gate-policy.toml"


@contextmanager
def training_service(
    tmp_path: Path, redis_url: str, store: Any, env: dict[str, str]
) -> Iterator[tuple[str, ServiceProcess, ServiceProcess]]:
    """The API, an ingest worker and a train worker on ``store``: (base URL, ingest, train)."""
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path),
        "INSPECTOR_STORE_URL": store.url,
        "INSPECTOR_REDIS_URL": redis_url,
        **env,
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp_path).start()
    ingest = ServiceProcess(
        "ingest", ["worker", "ingest", "--concurrency", "1"], env, tmp_path
    ).start()
    trainer = ServiceProcess("train", ["worker", "train"], env, tmp_path).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        api.wait_http(f"{base_url}/healthz")
        yield base_url, ingest, trainer
    finally:
        for process in (trainer, ingest, api):
            process.stop()


def _wait_ingested(store: Any, count: int, ingest: ServiceProcess) -> None:
    wait_for(
        lambda: sum(1 for _ in store.list("index/ingested/")) == count,
        120,
        "ingest",
        ingest.log,
    )


def test_train_through_the_api_and_the_train_worker(tmp_path, redis_server, local_store):
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/8"
    env = {"INSPECTOR_CANONICAL_SIZE": "48"}
    with training_service(tmp_path, redis_url, local_store, env) as (base_url, ingest, trainer):
        upload_parts(base_url, {"ok": 0.34, "pit": 0.33, "scratch": 0.33}, 240, seed=21)
        _wait_ingested(local_store, 240, ingest)
        trainer.wait_for_output("ready.")

        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "inspector",
                "train",
                "--url",
                base_url,
                "--epochs",
                "4",
                "--image-size",
                "32",
                "--set",
                "patience=4",
                # The default floors (1,000 steps, 400 a class) are for real lines; this
                # test is about the processes and the progress bar, not accuracy.
                "--set",
                "min_steps=80",
                "--set",
                "min_steps_per_class=0",
                "--reason",
                "integration test",
            ],
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr + trainer.output[-3000:]
        assert "produced model version 1" in cli.stdout
        assert "epoch" in cli.stderr and "ETA" in cli.stderr  # the progress bar
        version = registry.get_version(local_store, 1)
        assert version["classes"] == ["ok", "pit", "scratch"]
        assert version["config"]["epochs"] == 4
        assert "saved_model/saved_model.pb" in version["files"]
        assert "epoch 1/4" in trainer.output
        runs = httpx.get(
            f"{base_url}/v1/training-runs", headers={"Authorization": "Bearer dev-operator"}
        ).json()
        assert runs[0]["state"] == "succeeded" and runs[0]["version"]["version"] == 1


def test_small_defects_on_non_square_parts_are_learnt_through_the_train_worker(
    tmp_path, redis_server, local_store
):
    """Pits 3-5 px across and 1-px scratches on tall 64×160 parts, with the product's
    default training settings: the model keeps the parts' shape and resolution, learns
    the defects, and a run whose input squashes them away is told apart."""
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/9"
    env = {"INSPECTOR_GATE_POLICY": str(POLICY)}
    operator = {"Authorization": "Bearer dev-operator"}
    with training_service(tmp_path, redis_url, local_store, env) as (base_url, ingest, trainer):
        mix = {"ok": 0.5, "pit": 0.25, "scratch": 0.25}
        upload_parts(base_url, mix, 300, seed=31, size=(64, 160), defect_size="small")
        _wait_ingested(local_store, 300, ingest)
        trainer.wait_for_output("ready.")

        def train(config: dict) -> dict:
            run = httpx.post(
                f"{base_url}/v1/training-runs",
                headers=operator,
                json={"parent": "none", "reason": "small defects", "config": config},
            ).json()
            wait_for(
                lambda: (
                    httpx.get(f"{base_url}{run['url']}", headers=operator).json()["state"]
                    in ("succeeded", "failed")
                ),
                400,
                "the training run",
                trainer.log,
            )
            return httpx.get(f"{base_url}{run['url']}", headers=operator).json()

        learnt = train({})
        assert learnt["state"] == "succeeded", learnt
        version = learnt["version"]
        assert version["input"] == {"height": 160, "width": 64, "channels": 3}
        assert version["heldout"]["accuracy"] >= 0.9, version["heldout"]
        assert 0 < version["operating_point"]["threshold"] <= 0.5
        # The same parts squashed to a 32-px canvas: the defects are gone from the input.
        squashed = train({"image_size": 32})
        if squashed["state"] == "succeeded":
            assert squashed["version"]["heldout"]["accuracy"] < version["heldout"]["accuracy"]
        else:
            assert squashed["result"]["code"] == "did_not_learn"
            assert "the model did not learn" in squashed["result"]["message"]
