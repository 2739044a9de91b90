"""Records, label events and the vocabulary, on a real local store."""

from __future__ import annotations

import pytest

from inspector import records
from inspector.errors import ImageNotFound, InvalidMetadata, UnknownLabel
from inspector.records import UploadMetadata
from inspector.uploads import accept_upload
from tests.factories import part_image

META = UploadMetadata.parse(
    line="l1", station="s1", camera_id="c1", part_id="p1", captured_at="2026-11-26T10:00:00+01:00"
)


def test_metadata_is_validated_and_normalised_to_utc():
    assert META.captured_at.isoformat() == "2026-11-26T09:00:00+00:00"
    for field, value in [
        ("line", ""),
        ("line", "a/b"),
        ("line", "x" * 65),
        ("line", ".."),
        ("line", "a..b"),
    ]:
        kwargs = {
            "line": "l",
            "station": "s",
            "camera_id": "c",
            "part_id": "p",
            "captured_at": "2026-01-01T00:00:00Z",
        }
        kwargs[field] = value
        with pytest.raises(InvalidMetadata):
            UploadMetadata.parse(**kwargs)


def test_upload_writes_payload_then_record_and_is_idempotent(local_store):
    data = part_image("crack", seed=3)
    first = accept_upload(local_store, data, META, uploaded_by="cam", label="crack")
    again = accept_upload(local_store, data, META, uploaded_by="cam", label="crack")
    assert not first.duplicate and again.duplicate
    assert again.record == first.record
    assert len(list(local_store.list("images/raw/"))) == 1
    assert len(list(local_store.list("labels/"))) == 1


def test_an_interrupted_upload_is_completed_by_its_retry(local_store):
    data = part_image("stain", seed=4)
    done = accept_upload(local_store, data, META, uploaded_by="cam", label="stain")
    # Simulate a crash after the payload and label, before the record (the pointer).
    local_store.delete(records.record_key(done.record.image_id))
    with pytest.raises(ImageNotFound):
        records.read_record(local_store, done.record.image_id)
    retried = accept_upload(local_store, data, META, uploaded_by="cam", label="stain")
    assert not retried.duplicate
    assert records.read_record(local_store, done.record.image_id).label_at_upload == "stain"
    assert len(list(local_store.list("labels/"))) == 1


def test_labelled_images_come_from_two_listings(local_store):
    ids = [
        accept_upload(
            local_store, part_image(label, seed=n), META, uploaded_by="cam", label=label
        ).record.image_id
        for n, label in enumerate(["ok", "pit", "scratch"])
    ]
    unlabelled = accept_upload(
        local_store, part_image("ok", seed=9), META, uploaded_by="cam"
    ).record.image_id
    records.append_label(local_store, ids[0], "crack", "alice")
    for image_id in [*ids[:2], unlabelled]:  # ids[2] not ingested yet
        local_store.put_bytes(records.index_key(image_id), b"{}")
    assert records.labelled_images(local_store) == {ids[0]: "crack", ids[1]: "pit"}


def test_unknown_labels_and_images(local_store):
    with pytest.raises(UnknownLabel, match="inspector classes add"):
        records.require_known_label(local_store, "dent")
    with pytest.raises(ImageNotFound):
        records.append_label(local_store, "f" * 64, "ok", "alice")
    with pytest.raises(ImageNotFound):
        records.read_record(local_store, "../../etc/passwd")


def test_the_vocabulary_is_seeded_once_and_grows(local_store):
    assert records.class_names(local_store) == set(records.DEFAULT_CLASSES)
    cls, created = records.add_class(local_store, "dent", "pressed in", "alice")
    assert created and cls.defect
    _, created_again = records.add_class(local_store, "dent", "whatever", "bob")
    assert not created_again
    assert records.class_names(local_store) == {*records.DEFAULT_CLASSES, "dent"}
    ok = next(c for c in records.list_classes(local_store) if c.name == "ok")
    assert ok.defect is False
