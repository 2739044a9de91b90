"""Each docker-compose.yml service command, run locally with the compose environment
(production mode) against a real Redis and a real S3 server, healthchecks included."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inspector import records
from storage.s3 import S3Store
from tests.compose import SAMPLE_ENV, load
from tests.factories import metadata, part_image, upload_files
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port, unique_bucket_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

READY = {
    "worker-ingest": "ready.",
    "worker-inference": "ready (serving version",
    "worker-train": "ready.",
    "beat": "beat: Starting",
}


def _local_command(command: list[str], port: int) -> list[str]:
    args = list(command[1:])  # drop "inspector": run it as `python -m inspector`
    if "--port" in args:
        args[args.index("--port") + 1] = str(port)
    if "--host" in args:
        args[args.index("--host") + 1] = "127.0.0.1"
    return args


def test_every_service_command_runs_with_the_compose_environment(tmp_path, redis_server, s3_server):
    bucket = unique_bucket_name()
    compose = load({**SAMPLE_ENV, "INSPECTOR_BUCKET": bucket})
    services = compose["services"]
    env = dict(services["api"]["environment"])
    # Only the addresses differ from inside compose: the servers run on loopback here.
    env.update(
        INSPECTOR_S3_ENDPOINT=s3_server.endpoint,
        INSPECTOR_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/7",
        INSPECTOR_DATA_DIR=str(tmp_path / "data"),
        INSPECTOR_GATE_POLICY=str(
            Path(__file__).resolve().parents[2] / "deploy" / "gate-policy.toml"
        ),
    )
    store = S3Store(
        s3_server.endpoint,
        bucket,
        "inspector",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )
    store.ensure_bucket()  # what the minio-init service does
    port = free_port()
    processes = {
        name: ServiceProcess(
            name, _local_command(services[name]["command"], port), env, tmp_path
        ).start()
        for name in ("api", *READY)
    }
    try:
        base_url = f"http://127.0.0.1:{port}"
        processes["api"].wait_http(f"{base_url}/readyz")
        for name, text in READY.items():
            processes[name].wait_for_output(text)

        for name in ("worker-ingest", "worker-inference", "worker-train"):
            test = services[name]["healthcheck"]["test"]
            if test[0] == "CMD-SHELL":
                command = test[1].replace("celery ", f"{sys.executable} -m celery ", 1)
            else:
                assert test[:2] == ["CMD", "python"]
                command = " ".join([sys.executable, *test[2:]])
            result = subprocess.run(
                command,
                shell=True,
                env={**os.environ, **env, "HOSTNAME": socket.gethostname()},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, (name, result.stdout, result.stderr)
        api_check = [
            arg.replace(":8000/", f":{port}/") for arg in services["api"]["healthcheck"]["test"]
        ]
        assert api_check[:2] == ["CMD", "python"]
        assert subprocess.run([sys.executable, *api_check[2:]], capture_output=True).returncode == 0

        camera_token = SAMPLE_ENV["INSPECTOR_TOKENS"].split(",")[0].split(":")[2]
        response = httpx.post(
            f"{base_url}/v1/images",
            headers={"Authorization": f"Bearer {camera_token}"},
            files=upload_files(part_image("crack", seed=11)),
            data=metadata(),
        )
        assert response.status_code == 201, response.text
        dev_token = httpx.post(
            f"{base_url}/v1/images", headers={"Authorization": "Bearer dev-camera"}
        )
        assert dev_token.status_code == 401  # production mode: no built-in tokens
        image_id = response.json()["image_id"]
        wait_for(
            lambda: store.exists(records.index_key(image_id)),
            60,
            "ingest on S3",
            processes["worker-ingest"].log,
        )
        assert list(Path(env["INSPECTOR_DATA_DIR"]).glob("celerybeat-schedule*"))
    finally:
        for process in processes.values():
            process.stop()
        store.close()
