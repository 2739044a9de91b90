"""The inference queue's wire format: a JSON header, then the images' raw bytes."""

from __future__ import annotations

import pytest

from workers import inference_queue as q


def test_a_request_survives_the_wire_with_its_images_byte_for_byte():
    images = [b"\xff\xd8\xff\n\n binary \x00 with newlines \n", b"", b"\x89PNG\r\n\x1a\n" * 50]
    req = q.request(images=images, image_ids=["a", None, "c"], lines=["l1", None, "l3"])
    wire = q.pack(req)
    assert isinstance(wire, bytes)
    back = q.unpack(wire)
    assert back == req
    assert back["images"] == images


def test_a_request_by_stored_image_id_carries_no_bytes():
    req = q.request(image_ids=["f" * 64], reply=False, record=True)
    back = q.unpack(q.pack(req))
    assert back["images"] == [] and back["image_ids"] == ["f" * 64]
    assert back["reply_to"] is None and back["record"] is True


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"not json at all\n",
        b'{"id": "x", "images": [10]}\n12345',  # truncated images
        b'{"id": "x", "images": [1]}',  # no separator
    ],
)
def test_anything_else_is_refused(wire):
    with pytest.raises(ValueError):
        q.unpack(wire)
