"""The upload endpoint: what a camera sees, and what lands in the store."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from inspector import records
from inspector.api.main import create_app
from inspector.config import Settings
from storage.s3 import S3Store
from tests.api.conftest import CAMERA, MAX_UPLOAD_BYTES, OPERATOR, TOKENS, keys
from tests.factories import metadata, part_image, png_bomb, upload_files
from tests.servers import free_port


def upload(client: TestClient, data: bytes, headers=CAMERA, **fields):
    return client.post(
        "/v1/images", headers=headers, files=upload_files(data), data=metadata(**fields)
    )


@pytest.fixture
def both_client(settings, any_store):
    with TestClient(create_app(settings, store=any_store)) as test_client:
        yield test_client, any_store


def test_upload_is_stored_before_the_answer_and_queued(both_client):
    client, store = both_client
    data = part_image("scratch", seed=1)
    response = upload(client, data, label="scratch")
    assert response.status_code == 201, response.text
    body = response.json()
    image_id = body["image_id"]
    assert body["duplicate"] is False
    assert body["ingest"] == "queued"
    assert response.headers["location"] == f"/v1/images/{image_id}"
    record = records.read_record(store, image_id)
    assert store.get_bytes(record.raw_key) == data
    assert (record.line, record.camera_id, record.uploaded_by) == ("line-1", "cam-1", "cam-1")
    assert record.captured_at == "2026-11-26T09:00:00+00:00"
    assert records.current_labels(store) == {image_id: "scratch"}


def test_resending_the_same_upload_returns_the_same_id_and_stores_nothing_twice(both_client):
    client, store = both_client
    data = part_image("pit", seed=2)
    first = upload(client, data, label="pit")
    before = keys(store)
    second = upload(client, data, label="pit")
    assert second.status_code == 200
    assert second.json()["image_id"] == first.json()["image_id"]
    assert second.json()["duplicate"] is True
    assert keys(store) == before


def test_every_format_is_accepted(client, store):
    for n, fmt in enumerate(("jpeg", "png", "bmp", "tiff")):
        response = upload(client, part_image("crack", seed=10 + n, fmt=fmt), part_id=f"p{n}")
        assert response.status_code == 201, (fmt, response.text)
        assert records.read_record(store, response.json()["image_id"]).format == fmt


TRUNCATED = part_image("ok", seed=3)[:-400]
TEXT = b"this is not an image, it only has a .jpg name\n" * 10
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04" + bytes(40)

BAD_UPLOADS = [
    # (case, data, form overrides, headers, status, code)
    ("zero-byte body", b"", {}, CAMERA, 400, "empty_body"),
    ("truncated JPEG", TRUNCATED, {}, CAMERA, 422, "corrupt_image"),
    ("text file named .jpg", TEXT, {}, CAMERA, 415, "unsupported_format"),
    ("unsupported format (GIF)", GIF, {}, CAMERA, 415, "unsupported_format"),
    (
        "oversize body",
        b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES + 100_000),
        {},
        CAMERA,
        413,
        "payload_too_large",
    ),
    ("30000x30000 PNG", png_bomb(), {}, CAMERA, 413, "image_too_large"),
    ("unknown label", None, {"label": "wobble"}, CAMERA, 422, "unknown_label"),
    ("label that is no class name", None, {"label": "../x"}, CAMERA, 422, "unknown_label"),
    ("path characters in line", None, {"line": "../../etc"}, CAMERA, 422, "invalid_metadata"),
    ("slash in part id", None, {"part_id": "a/b"}, CAMERA, 422, "invalid_metadata"),
    ("10 kB station", None, {"station": "s" * 10_000}, CAMERA, 422, "invalid_metadata"),
    ("missing camera id", None, {"camera_id": None}, CAMERA, 422, "invalid_metadata"),
    (
        "timestamp without timezone",
        None,
        {"captured_at": "2026-11-26T09:00:00"},
        CAMERA,
        422,
        "invalid_metadata",
    ),
    (
        "timestamp that is no timestamp",
        None,
        {"captured_at": "yesterday"},
        CAMERA,
        422,
        "invalid_metadata",
    ),
    ("missing token", None, {}, {}, 401, "unauthorized"),
    ("wrong token", None, {}, {"Authorization": "Bearer nope-nope-nope-nope"}, 401, "unauthorized"),
    ("not a bearer token", None, {}, {"Authorization": "Basic Y2FtOmNhbQ=="}, 401, "unauthorized"),
]


@pytest.mark.parametrize(
    ("data", "fields", "headers", "status", "code"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_upload_gets_a_clear_error_and_changes_nothing(
    client, store, data, fields, headers, status, code
):
    before = keys(store)
    payload = part_image("ok", seed=4) if data is None else data
    response = upload(client, payload, headers=headers, **fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    assert keys(store) == before


def test_a_request_without_the_file_part_is_refused(client, store):
    before = keys(store)
    response = client.post("/v1/images", headers=CAMERA, data=metadata())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_file"
    response = client.post(
        "/v1/images", headers={**CAMERA, "content-type": "image/jpeg"}, content=part_image()
    )
    assert response.status_code == 400
    assert keys(store) == before


def test_a_chunked_body_past_the_limit_is_refused(client, store):
    before = keys(store)

    def chunks():
        for _ in range(3):
            yield bytes(MAX_UPLOAD_BYTES // 2)

    response = client.post(
        "/v1/images",
        headers={**CAMERA, "content-type": "multipart/form-data; boundary=xyz"},
        content=chunks(),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert keys(store) == before


def test_an_unreachable_store_answers_503_and_accepts_nothing(settings):
    dead = S3Store(
        f"http://127.0.0.1:{free_port()}", "bucket", access_key="k", secret_key="s", timeout=0.5
    )
    with TestClient(create_app(settings, store=dead)) as client:
        response = upload(client, part_image("ok", seed=5))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"]


def test_an_unreachable_broker_still_accepts_the_upload_durably(tmp_path, store):
    settings = Settings(
        data_dir=tmp_path,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        enqueue_timeout_seconds=0.5,
        tokens=TOKENS,
    )
    with TestClient(create_app(settings, store=store)) as client:
        response = upload(client, part_image("ok", seed=6))
    assert response.status_code == 201
    assert response.json()["ingest"] == "deferred"
    records.read_record(store, response.json()["image_id"])


def test_operators_may_upload_too(client):
    assert upload(client, part_image("ok", seed=7), headers=OPERATOR).status_code == 201
