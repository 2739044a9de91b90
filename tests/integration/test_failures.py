"""Real failures of real parts: the broker down during uploads, the store down during
ingest, a corrupt image. Nothing accepted is lost; nothing permanent is retried forever."""

from __future__ import annotations

import httpx
import pytest

from inspector import records
from storage.s3 import S3Store
from tests.factories import metadata, part_image, upload_files
from tests.processes import ServiceProcess, wait_for
from tests.servers import RedisServer, TcpProxy, free_port, unique_bucket_name

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
CAMERA = {"Authorization": "Bearer dev-camera"}


def _upload(base_url: str, n: int, seed: int = 0) -> list[dict]:
    bodies = []
    for i in range(n):
        response = httpx.post(
            f"{base_url}/v1/images",
            headers=CAMERA,
            files=upload_files(part_image("scratch", seed=seed + i)),
            data=metadata(part_id=f"p{seed + i}"),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        bodies.append(response.json())
    return bodies


def _indexed(store) -> int:
    return sum(1 for _ in store.list("index/ingested/"))


def test_uploads_while_the_broker_is_down_are_ingested_by_the_reconciler(tmp_path, local_store):
    redis = RedisServer(workdir=tmp_path / "redis").start()
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path),
        "INSPECTOR_STORE_URL": local_store.url,
        "INSPECTOR_REDIS_URL": redis.url,
        "INSPECTOR_ENQUEUE_TIMEOUT_SECONDS": "0.5",
        "INSPECTOR_RECONCILE_INTERVAL_SECONDS": "1",
        "INSPECTOR_RECONCILE_GRACE_SECONDS": "0",
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp_path).start()
    worker = ServiceProcess("worker", ["worker", "ingest", "--concurrency", "1"], env, tmp_path)
    beat = ServiceProcess("beat", ["beat"], env, tmp_path)
    try:
        base_url = f"http://127.0.0.1:{port}"
        api.wait_http(f"{base_url}/healthz")
        redis.stop()
        bodies = _upload(base_url, 4)
        assert {b["ingest"] for b in bodies} == {"deferred"}
        assert "broker unreachable" in api.output
        assert len(list(local_store.list("images/records/"))) == 4

        redis.start()
        # The API finds the broker again by itself (after a short back-off) ...
        recovered: list[dict] = []

        def queued_again() -> bool:
            recovered.extend(_upload(base_url, 1, seed=50 + len(recovered)))
            return recovered[-1]["ingest"] == "queued"

        wait_for(queued_again, 30, "the API to queue again", api.log)
        # ... and the images it could not queue wait in the store for the reconciler.
        worker.start()
        worker.wait_for_output("ready.")
        deferred = {b["image_id"] for b in bodies + recovered if b["ingest"] == "deferred"}
        wait_for(lambda: _indexed(local_store) == 1, 30, "the queued image", worker.log)
        assert deferred.isdisjoint(records.ingested_ids(local_store))  # only the reconciler can
        beat.start()
        total = len(bodies) + len(recovered)
        wait_for(
            lambda: _indexed(local_store) == total, 90, "the reconciler to queue them", worker.log
        )
        assert deferred <= set(records.ingested_ids(local_store))
    finally:
        for process in (beat, worker, api):
            process.stop()
        redis.close()


@pytest.fixture
def proxied_s3(s3_server):
    """A fresh bucket, reachable directly and through a proxy that can be cut."""
    bucket = unique_bucket_name()
    direct = S3Store(
        s3_server.endpoint, bucket, access_key=s3_server.access_key, secret_key=s3_server.secret_key
    )
    direct.ensure_bucket()
    proxy = TcpProxy(
        int(s3_server.endpoint.rsplit(":", 1)[1]), s3_server.endpoint.split("//")[1].split(":")[0]
    )
    yield direct, proxy, bucket, s3_server
    proxy.close()
    direct.close()


def _s3_env(tmp_path, redis_url, bucket, endpoint, s3_server) -> dict[str, str]:
    return {
        "INSPECTOR_DATA_DIR": str(tmp_path),
        "INSPECTOR_STORE_URL": f"s3://{bucket}/line",
        "INSPECTOR_S3_ENDPOINT": endpoint,
        "INSPECTOR_S3_ACCESS_KEY": s3_server.access_key,
        "INSPECTOR_S3_SECRET_KEY": s3_server.secret_key,
        "INSPECTOR_S3_TIMEOUT_SECONDS": "1",
        "INSPECTOR_REDIS_URL": redis_url,
    }


def test_ingest_retries_while_the_store_is_down_and_finishes_when_it_is_back(
    tmp_path, redis_server, proxied_s3
):
    direct, proxy, bucket, s3_server = proxied_s3
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/5"
    httpx_port = free_port()
    api_env = _s3_env(tmp_path, redis_url, bucket, s3_server.endpoint, s3_server)
    worker_env = _s3_env(tmp_path, redis_url, bucket, proxy.endpoint, s3_server)
    api = ServiceProcess("api", ["api", "--port", str(httpx_port)], api_env, tmp_path).start()
    worker = ServiceProcess(
        "worker", ["worker", "ingest", "--concurrency", "1"], worker_env, tmp_path
    )
    try:
        base_url = f"http://127.0.0.1:{httpx_port}"
        api.wait_http(f"{base_url}/healthz")
        proxy.block()
        bodies = _upload(base_url, 3, seed=100)
        assert {b["ingest"] for b in bodies} == {"queued"}
        worker.start()
        worker.wait_for_output("Retry in", timeout=60)
        assert "index/ingested/" not in str([i.key for i in direct.list("line/")])
        proxy.unblock()
        store = S3Store(
            s3_server.endpoint,
            bucket,
            "line",
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
        )
        wait_for(lambda: _indexed(store) == 3, 120, "ingest after the store came back", worker.log)
        assert "rejected" not in worker.output.lower()
    finally:
        worker.stop()
        api.stop()


def test_a_corrupt_image_is_rejected_not_retried(tmp_path, redis_server, local_store):
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/6"
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path),
        "INSPECTOR_STORE_URL": local_store.url,
        "INSPECTOR_REDIS_URL": redis_url,
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp_path).start()
    worker = ServiceProcess("worker", ["worker", "ingest", "--concurrency", "1"], env, tmp_path)
    try:
        base_url = f"http://127.0.0.1:{port}"
        api.wait_http(f"{base_url}/healthz")
        (good, bad) = _upload(base_url, 2, seed=200)
        # The disk under the store rotted after the upload was accepted.
        local_store.put_bytes(
            records.read_record(local_store, bad["image_id"]).raw_key, b"\xff\xd8\xff" + bytes(64)
        )
        worker.start()
        wait_for(
            lambda: local_store.exists(records.failure_key(bad["image_id"])),
            60,
            "the failure record",
            worker.log,
        )
        wait_for(
            lambda: local_store.exists(records.index_key(good["image_id"])),
            60,
            "the good image",
            worker.log,
        )
        worker.wait_for_output("reject requeue=False")
        assert "Retry in" not in worker.output
        failure = records.read_json(local_store, records.failure_key(bad["image_id"]))
        assert failure["code"] == "corrupt_image"
        shown = httpx.get(
            f"{base_url}/v1/images/{bad['image_id']}",
            headers={"Authorization": "Bearer dev-operator"},
        )
        assert shown.json()["ingest"]["state"] == "failed"
    finally:
        worker.stop()
        api.stop()
