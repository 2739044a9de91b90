"""A shifted line (darker lighting, a defect the model never saw) raises a drift alert
that the console and /metrics show; /metrics parsed with prometheus_client's parser."""

from __future__ import annotations

import time

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inspector import drift, registry, training
from inspector.config import Settings
from inspector.simulate import LineSimulator, encode
from tests.factories import metadata, upload_files
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port
from tests.training_support import copy_store
from workers.celery_app import TASK_DRIFT, make_celery

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
CAMERA = {"Authorization": "Bearer dev-camera"}
N = 200  # PSI over 10 bins has noise of about 9/N: small samples drift by chance


def parts(line: str, shifted: bool, seed: int) -> list[bytes]:
    mix = {"ok": 0.34, "pit": 0.33, "scratch": 0.33, "crack": 0.0, "stain": 0.0}
    if shifted:
        mix = {"ok": 0.3, "pit": 0.1, "scratch": 0.1, "crack": 0.0, "stain": 0.5}
    images = []
    for part in LineSimulator(size=48, seed=seed, mix=mix).parts(N):
        image = part.image
        if shifted:  # the lamp over this line is failing
            image = cv2.convertScaleAbs(image, alpha=0.45, beta=0)
        images.append(encode(np.ascontiguousarray(image), "png"))
    return images


def scrape(base_url: str) -> dict[str, list]:
    text = httpx.get(f"{base_url}/metrics").text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list, **labels: str) -> float:
    return sum(s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_shifted_line_raises_a_drift_alert_seen_in_the_console_and_metrics(
    trained_template, tmp_path, redis_server
):
    root, _ = trained_template
    store = copy_store(root, tmp_path)
    for action in ("register", "gate_passed", "approve"):
        registry.transition(store, 1, action, actor="setup", role="operator", reason="first")
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path / "data"),
        "INSPECTOR_STORE_URL": store.url,
        "INSPECTOR_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/13",
        "INSPECTOR_VERDICT_DEADLINE_MS": "10000",
        "INSPECTOR_CANONICAL_SIZE": "48",  # as the training data was ingested
    }
    processes = [
        ServiceProcess("api", ["api", "--port", str(port)], env, tmp_path),
        # Configured to start a training run on an alert (no train worker here: it stays queued).
        ServiceProcess(
            "ingest",
            ["worker", "ingest", "--concurrency", "1"],
            {**env, "INSPECTOR_DRIFT_STARTS_TRAINING": "true"},
            tmp_path,
        ),
        ServiceProcess("inference", ["worker", "inference"], env, tmp_path),
    ]
    for process in processes:
        process.start()
    api, ingest, inference = processes
    base_url = f"http://127.0.0.1:{port}"
    try:
        api.wait_http(f"{base_url}/healthz")
        inference.wait_for_output("ready (serving version 1)")
        with httpx.Client(base_url=base_url, headers=CAMERA, timeout=30) as client:
            for line, shifted, seed in (("line-a", False, 61), ("line-b", True, 62)):
                for n, data in enumerate(parts(line, shifted, seed)):
                    answer = client.post(
                        "/v1/images",
                        files=upload_files(data, "p.png", "image/png"),
                        data=metadata(line=line, part_id=f"{line}-{n}"),
                    )
                    assert answer.status_code == 201, answer.text
            refused = client.post(
                "/v1/images", files=upload_files(b"not an image"), data=metadata()
            )
            assert refused.status_code == 415
        wait_for(
            lambda: sum(1 for _ in store.list("index/ingested/")) >= 360 + 2 * N,
            120,
            "ingest",
            ingest.log,
        )

        # The beat task, sent the way beat sends it, run by the real ingest worker.
        settings = Settings(redis_url=env["INSPECTOR_REDIS_URL"], data_dir=tmp_path / "data")
        make_celery(settings).send_task(TASK_DRIFT, queue="ingest")
        wait_for(lambda: len(drift.latest(store)) == 3, 120, "the drift check", ingest.log)
        checks = {c["line"]: c for c in drift.latest(store)}
        # line-1 is where the training images came from: no drift there either.
        assert (
            checks["line-b"]["alert"]
            and not checks["line-a"]["alert"]
            and not checks["line-1"]["alert"]
        ), checks
        assert (
            checks["line-b"]["scores"]["brightness"]
            > 1.0
            > checks["line-a"]["scores"]["brightness"]
        )
        assert checks["line-b"]["images"] == N and drift.alerts(store)[0]["line"] == "line-b"
        # The worker logs after it stores the check: wait for the line, not just look.
        ingest.wait_for_output("drift on line line-b: ALERT", 30)

        def drift_runs() -> list[dict]:
            return [r for r in training.list_runs(store) if r["requested_by"] == "drift"]

        # ... and requests the run after it logs every line: wait for the run as well.
        wait_for(lambda: bool(drift_runs()), 30, "the drift's training run", ingest.log)
        runs = drift_runs()
        assert [r["state"] for r in runs] == ["queued"], runs
        assert "line-b" in runs[0]["reason"] and "line-a" not in runs[0]["reason"]

        with httpx.Client(base_url=base_url, timeout=30) as browser:
            browser.post("/login", data={"token": "dev-operator", "next": "/"})
            page = browser.get("/").text
        assert "Drift on line <strong>line-b</strong>" in page and "line-a" in page

        time.sleep(0.1)
        metrics = scrape(base_url)
        assert value(metrics["inspector_uploads"], result="accepted") == 2 * N
        assert value(metrics["inspector_uploads_rejected"], reason="unsupported_format") == 1
        assert (
            value(
                metrics["inspector_http_request_duration_seconds"],
                route="/v1/images",
                method="POST",
            )
            > 0
        )
        assert value(metrics["inspector_verdicts_total"], line="line-a") == N
        assert value(metrics["inspector_verdicts_total"], line="line-b") == N
        assert value(metrics["inspector_serving_model_version"]) == 1
        assert value(metrics["inspector_model_swaps_total"]) == 1
        assert (
            "inspector_queue_depth" in metrics
            and value(metrics["inspector_queue_depth"], queue="inference") == 0
        )
        assert value(metrics["inspector_drift_alert"], line="line-b") == 1
        assert value(metrics["inspector_drift_alert"], line="line-a") == 0
        assert value(metrics["inspector_drift_psi"], line="line-b", feature="brightness") > 1.0
        assert "inspector_training_run_seconds" in metrics
    finally:
        for process in reversed(processes):
            process.stop()
