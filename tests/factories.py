"""Factories for test images and uploads, drawn by the project's own line simulator."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from typing import Any

from inspector.simulate import LineSimulator, encode


def part_image(label: str = "ok", *, seed: int = 0, size: int = 64, fmt: str = "jpeg") -> bytes:
    """Encoded bytes of one simulated part."""
    return encode(LineSimulator(size=size, seed=seed).part(label).image, fmt)


def metadata(**overrides: Any) -> dict[str, str]:
    """Valid upload form fields; override any of them."""
    fields = {
        "line": "line-1",
        "station": "station-1",
        "camera_id": "cam-1",
        "part_id": "part-000001",
        "captured_at": datetime(2026, 11, 26, 9, 0, tzinfo=UTC).isoformat(),
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def upload_files(
    data: bytes, name: str = "part.jpg", content_type: str = "image/jpeg"
) -> dict[str, Any]:
    """The multipart ``files`` argument for one image."""
    return {"file": (name, data, content_type)}


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1-bit PNG of ``width``×``height`` zeros: ~100 kB that would decode to ~1 GB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def fill_store(
    store,
    n: int,
    *,
    mix: dict[str, float],
    seed: int = 0,
    size: int = 48,
    fmt: str = "png",
    labelled: bool = True,
    label_as: str | None = None,
) -> list[str]:
    """Upload and ingest ``n`` labelled simulated parts straight through the domain
    (``label_as``: every part labelled so, whatever the simulator drew)."""
    from inspector import ingest
    from inspector.records import UploadMetadata
    from inspector.uploads import accept_upload

    meta = UploadMetadata.parse(
        line="line-1",
        station="s1",
        camera_id="cam-1",
        part_id="p",
        captured_at="2026-11-26T09:00:00Z",
    )
    full_mix = {name: mix.get(name, 0.0) for name in ("ok", "scratch", "pit", "crack", "stain")}
    ids = []
    for part in LineSimulator(size=size, seed=seed, mix=full_mix).parts(n):
        image_id = accept_upload(
            store,
            encode(part.image, fmt),
            meta,
            uploaded_by="cam-1",
            label=(label_as or part.label) if labelled else None,
        ).record.image_id
        ingest.ingest_image(store, image_id, ingest.CanonicalSpec(size, "rgb"))
        ids.append(image_id)
    return ids


def upload_parts(
    base_url: str,
    mix: dict[str, float],
    n: int,
    *,
    seed: int,
    size: int | tuple[int, int] = 48,
    defect_size: str = "normal",
) -> list[str]:
    """Upload ``n`` labelled simulated parts over HTTP, 8 at a time, as cameras would."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    full = {name: mix.get(name, 0.0) for name in ("ok", "scratch", "pit", "crack", "stain")}
    sim = LineSimulator(size=size, seed=seed, mix=full, defect_size=defect_size)
    parts = list(sim.parts(n))

    def send(item) -> str:
        i, part = item
        response = httpx.post(
            f"{base_url}/v1/images",
            headers={"Authorization": "Bearer dev-camera"},
            files={"file": (f"{i}.png", encode(part.image, "png"), "image/png")},
            data={**metadata(part_id=f"p{seed}-{i}"), "label": part.label},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["image_id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(send, enumerate(parts)))
