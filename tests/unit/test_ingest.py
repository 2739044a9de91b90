"""Ingest as a plain function on both real stores: idempotent, indexed, reconcilable."""

from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest

from inspector import ingest, records
from inspector.errors import IngestFailed
from inspector.records import UploadMetadata
from inspector.uploads import accept_upload
from tests.factories import part_image

META = UploadMetadata.parse(
    line="l1", station="s1", camera_id="c1", part_id="p1", captured_at="2026-11-26T09:00:00Z"
)
SPEC = ingest.CanonicalSpec(size=48, color="gray")


@pytest.fixture(params=["local", "s3"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


def test_ingest_makes_a_canonical_copy_and_an_index_entry_once(store):
    image_id = accept_upload(
        store, part_image("scratch", seed=1, size=96), META, uploaded_by="c"
    ).record.image_id
    first = ingest.ingest_image(store, image_id, SPEC)
    assert first.status == "ingested"
    canonical = cv2.imdecode(
        np.frombuffer(store.get_bytes(records.canonical_key(image_id)), np.uint8),
        cv2.IMREAD_UNCHANGED,
    )
    assert canonical.shape == (48, 48)
    assert set(first.entry["stats"]) == {"brightness", "contrast", "sharpness"}
    before = {i.key: i.etag for i in store.list("")}
    second = ingest.ingest_image(store, image_id, SPEC)
    assert second.status == "already" and second.entry == first.entry
    assert {i.key: i.etag for i in store.list("")} == before
    assert list(records.ingested_ids(store)) == [image_id]


def test_corrupt_raw_bytes_fail_permanently_and_are_recorded(store):
    image_id = accept_upload(store, part_image("ok", seed=2), META, uploaded_by="c").record.image_id
    record = records.read_record(store, image_id)
    store.put_bytes(record.raw_key, b"\xff\xd8\xff" + bytes(100))
    with pytest.raises(IngestFailed) as caught:
        ingest.ingest_image(store, image_id, SPEC)
    assert caught.value.code == "corrupt_image"
    assert records.read_json(store, records.failure_key(image_id))["code"] == "corrupt_image"
    assert ingest.find_unindexed(store, records.now_utc() + timedelta(minutes=1)) == []


def test_unknown_image_fails_without_writing(store):
    before = {i.key for i in store.list("")}
    with pytest.raises(IngestFailed):
        ingest.ingest_image(store, "a" * 64, SPEC)
    assert {i.key for i in store.list("")} == before


def test_the_reconciler_finds_stored_but_not_ingested_images(store):
    ids = [
        accept_upload(store, part_image("pit", seed=n), META, uploaded_by="c").record.image_id
        for n in range(3)
    ]
    ingest.ingest_image(store, ids[0], SPEC)
    later = records.now_utc() + timedelta(minutes=1)
    assert sorted(ingest.find_unindexed(store, later)) == sorted(ids[1:])
    assert ingest.find_unindexed(store, records.now_utc() - timedelta(minutes=1)) == []
