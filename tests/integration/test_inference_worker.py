"""The inference worker with real processes: every upload gets a verdict naming the
version that made it, promotions and a rollback swap models under continuous traffic
with zero failed requests, and a corrupt version is refused while the old one serves."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import pytest

from inspector import registry
from tests.factories import metadata, part_image, upload_files
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port
from tests.training_support import clone_version, copy_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
OPERATOR = {"Authorization": "Bearer dev-operator"}
CAMERA = {"Authorization": "Bearer dev-camera"}


def promote(store, number: int) -> None:
    registry.transition(store, number, "register", actor="test", role="system")
    registry.transition(store, number, "gate_passed", actor="test", role="system")


class Traffic:
    """Uploads and TF Serving predictions, back to back, from two threads."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.results: list[tuple[str, int, int | None, float]] = []  # kind, status, version, at
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=t, daemon=True) for t in (self.uploads, self.predictions)
        ]

    def uploads(self) -> None:
        n = 0
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                n += 1
                response = client.post(
                    f"{self.base_url}/v1/images",
                    headers=CAMERA,
                    files=upload_files(part_image("ok", seed=10_000 + n, size=48)),
                    data=metadata(part_id=f"t{n}"),
                )
                verdict = response.json().get("verdict") if response.status_code < 300 else None
                self.results.append(
                    (
                        "upload",
                        response.status_code,
                        verdict and verdict["model_version"],
                        time.time(),
                    )
                )

    def predictions(self) -> None:
        image = base64.b64encode(part_image("pit", seed=7, size=48)).decode()
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                response = client.post(
                    f"{self.base_url}/v1/models/inspector:predict",
                    headers=CAMERA,
                    json={"instances": [{"b64": image}]},
                )
                version = (
                    int(response.json()["model_spec"]["version"])
                    if response.status_code == 200
                    else None
                )
                self.results.append(("predict", response.status_code, version, time.time()))

    def latest_version(self) -> int | None:
        return self.results[-1][2] if self.results else None

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_swaps_under_continuous_traffic_fail_no_request(trained_template, tmp_path, redis_server):
    root, _ = trained_template
    store = copy_store(root, tmp_path)
    promote(store, 1)
    registry.transition(store, 1, "approve", actor="setup", role="operator", reason="first")
    versions = [clone_version(store, 1) for _ in range(3)]
    broken = clone_version(store, 1)
    key = next(
        i.key
        for i in store.list(registry.version_prefix(broken) + "saved_model/variables/")
        if ".data-" in i.key
    )
    store.put_bytes(key, store.get_bytes(key)[:64])
    for number in [*versions, broken]:
        promote(store, number)

    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path / "data"),
        "INSPECTOR_STORE_URL": store.url,
        "INSPECTOR_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/10",
        "INSPECTOR_VERDICT_DEADLINE_MS": "10000",
        "INSPECTOR_INFERENCE_POLL_SECONDS": "1",
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp_path).start()
    worker = ServiceProcess("inference", ["worker", "inference"], env, tmp_path).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        api.wait_http(f"{base_url}/healthz")
        worker.wait_for_output("ready (serving version 1)")

        def serving(number: int) -> bool:
            return traffic.latest_version() == number and all(
                r[2] == number for r in traffic.results[-4:]
            )

        with httpx.Client(timeout=30, headers=OPERATOR) as ops, Traffic(base_url) as traffic:
            wait_for(lambda: len(traffic.results) >= 10, 60, "traffic", worker.log)
            for number in versions:
                answer = ops.post(
                    f"{base_url}/v1/models/inspector/versions/{number}:approve",
                    json={"reason": "swap"},
                )
                assert answer.status_code == 200, answer.text
                wait_for(lambda n=number: serving(n), 60, f"version {number} serving", worker.log)
            back = ops.post(f"{base_url}/v1/models/inspector:rollback", json={"reason": "back one"})
            assert back.status_code == 200 and back.json()["aliases"]["production"] == versions[1]
            wait_for(lambda: serving(versions[1]), 60, "rollback serving", worker.log)
            bad = ops.post(
                f"{base_url}/v1/models/inspector/versions/{broken}:approve",
                json={"reason": "broken"},
            )
            assert bad.status_code == 200
            wait_for(
                lambda: registry.read_state(store).state_of(broken) == "load_failed",
                60,
                "load_failed",
                worker.log,
            )
            time.sleep(2)  # traffic continues on the old version
            expected = {
                "version": str(versions[1]),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            # The worker publishes its status when a load fails; the API caches it 1 s.
            wait_for(
                lambda: (
                    ops.get(f"{base_url}/v1/models/inspector").json()["model_version_status"]
                    == [expected]
                ),
                10,
                "the status to show the old version serving",
                worker.log,
            )
        failures = [r for r in traffic.results if r[1] >= 300 or r[2] is None]
        assert not failures, failures[:5]
        assert len(traffic.results) > 50
        seen = [r[2] for r in traffic.results]
        assert set(seen) == {1, *versions} and broken not in seen
        assert registry.alias(store, "production") == versions[1]
        event = registry.audit_log(store)[-1]
        assert (event["action"], event["version"]) == ("load_failed", broken)
        assert "cannot be loaded" in event["reason"]
    finally:
        worker.stop()
        api.stop()
