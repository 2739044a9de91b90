"""The synthetic production line, and the camera that uploads it."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np
import pytest

from inspector import images, simulate
from inspector.records import DEFAULT_CLASSES, validate_name
from inspector.simulate import CLASSES, SURFACES, LineSimulator, encode, parse_mix

# --- the line ---------------------------------------------------------------------------


def test_classes_are_the_vocabulary_and_the_default_mix_is_mostly_ok():
    assert tuple(DEFAULT_CLASSES) == CLASSES
    assert set(simulate.DEFAULT_MIX) == set(CLASSES)
    assert sum(simulate.DEFAULT_MIX.values()) == pytest.approx(1)
    assert simulate.DEFAULT_MIX["ok"] > 0.5


def test_the_same_seed_gives_the_same_parts_and_another_seed_others():
    def run(seed: int) -> list[simulate.SimulatedPart]:
        return list(LineSimulator(size=64, seed=seed).parts(6))

    first, again, other = run(7), run(7), run(8)
    assert [(p.label, p.surface) for p in first] == [(p.label, p.surface) for p in again]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not any(np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("label", CLASSES)
def test_each_class_is_drawn_on_each_surface_with_its_label(label, surface):
    part = LineSimulator(size=96, surfaces=(surface,), seed=3).part(label)
    assert (part.label, part.surface) == (label, surface)
    assert part.image.shape == (96, 96, 3) and part.image.dtype == np.uint8
    assert 20 < part.image.mean() < 235  # a lit part, neither black nor blown out


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("label", [c for c in CLASSES if c != "ok"])
def test_a_defect_is_drawn_and_survives_downscaling_to_64_px(label, surface):
    # The same seed draws the same part under the same light; only the defect differs.
    for seed in range(3):
        clean = LineSimulator(size=256, surfaces=(surface,), seed=seed).part("ok").image
        faulty = LineSimulator(size=256, surfaces=(surface,), seed=seed).part(label).image
        diff = np.abs(clean.astype(np.int16) - faulty.astype(np.int16)).max(axis=2)
        changed = (diff > 20).mean()
        assert 0.0005 < changed < 0.3, f"{label} changed {changed:.2%} of the part"

        def small(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)

        # What a classifier trained on 64x64 images sees: a clear local difference.
        assert np.abs(small(clean) - small(faulty)).max() > 25


@pytest.mark.parametrize("label", ["pit", "scratch", "crack"])
def test_small_defects_are_a_few_pixels_wide_whatever_the_part_size(label):
    for size in ((128, 320), (500, 1260)):  # width × height: tall parts, like commutators
        clean = LineSimulator(size=size, seed=4, defect_size="small").part("ok").image
        faulty = LineSimulator(size=size, seed=4, defect_size="small").part(label).image
        changed = np.abs(clean.astype(np.int16) - faulty.astype(np.int16)).max(axis=2) > 20
        assert changed.any(), f"no {label} drawn"
        ys, xs = np.nonzero(changed)
        # Thin: the defect's pixels lie within a few pixels of a line or a point.
        thin = (
            min(np.ptp(ys), np.ptp(xs)) + 1
            if label == "pit"
            else changed.sum() / max(np.ptp(ys), np.ptp(xs), 1)
        )
        assert thin <= 6, f"{label} is {thin:.1f} px thick at {size}"

        # A model that squashes the part to 64 px loses it: what is left is faint.
        def squashed(image: np.ndarray) -> np.ndarray:
            return cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.int16)

        normal = LineSimulator(size=size, seed=4).part(label).image
        faint = np.abs(squashed(clean) - squashed(faulty)).max()
        clear = np.abs(squashed(clean) - squashed(normal)).max()
        assert faint < clear, (label, size, faint, clear)


def test_defect_classes_differ_from_ok_in_their_statistics():
    def edges(label: str) -> float:
        sim = LineSimulator(size=128, seed=11, color=False)
        return float(
            np.mean([cv2.Laplacian(sim.part(label).image, cv2.CV_32F).var() for _ in range(8)])
        )

    ok = edges("ok")
    assert edges("scratch") > ok and edges("crack") > ok


def test_sizes_and_colour_modes_are_honoured():
    assert LineSimulator(size=80, seed=1).part().image.shape == (80, 80, 3)
    assert LineSimulator(size=(120, 50), seed=1).part("crack").image.shape == (50, 120, 3)
    gray = LineSimulator(size=(40, 70), seed=1, color=False).part("stain").image
    assert gray.shape == (70, 40) and gray.dtype == np.uint8


def test_a_megapixel_part_has_every_defect_drawn_to_scale():
    # Speed is measured in bench/, never asserted in tests.
    sim = LineSimulator(size=1000, seed=2)
    ok = sim.part("ok").image.astype(int)
    for label in CLASSES[1:]:
        image = LineSimulator(size=1000, seed=2).part(label).image
        assert image.shape == (1000, 1000, 3)
        assert (abs(image.astype(int) - ok).max(axis=2) > 20).mean() > 0.0002, label


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 8}, "too small"),
        ({"surfaces": ("wood",)}, "metal, plastic"),
        ({"surfaces": ()}, "metal, plastic"),
        ({"mix": {"dent": 1.0}}, "ok, scratch, pit, crack, stain"),
        ({"defect_size": "tiny"}, "normal, small"),
    ],
)
def test_a_simulator_refuses_what_it_cannot_draw(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LineSimulator(**kwargs)
    with pytest.raises(ValueError, match="known classes"):
        LineSimulator().part("dent")


# --- the mix ----------------------------------------------------------------------------


def test_sizes_parse_as_a_side_or_width_by_height():
    from inspector.simulate import parse_size

    assert parse_size("256") == 256 and parse_size("320x128") == (320, 128)
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_size("wide")
    with pytest.raises(ValueError, match="too small"):
        parse_size("320x8")


def test_parse_mix_normalises_and_fills_in_unmentioned_classes():
    assert parse_mix("ok=7, scratch=2,stain=1") == {
        "ok": 0.7,
        "scratch": 0.2,
        "pit": 0.0,
        "crack": 0.0,
        "stain": 0.1,
    }
    assert parse_mix("crack=0.3") == {"ok": 0, "scratch": 0, "pit": 0, "crack": 1.0, "stain": 0}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("ok=0.5,dent=0.5", "'dent'.*known classes are ok, scratch, pit, crack, stain"),
        ("ok=0,scratch=0", "sum to 0"),
        ("", "sum to 0"),
        ("ok=-1,scratch=2", "'ok'.*>= 0"),
        ("ok=nan", "'ok'.*finite"),
        ("ok=lots", "not a number"),
        ("ok", "name=weight"),
        ("ok=1,ok=2", "twice"),
    ],
)
def test_parse_mix_refuses_bad_specs_clearly(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_mix(spec)


def test_labels_follow_the_mix():
    sim = LineSimulator(mix=parse_mix("ok=0.6,scratch=0.3,crack=0.1"), seed=5)
    drawn = [sim.next_label() for _ in range(2000)]
    share = {name: drawn.count(name) / len(drawn) for name in CLASSES}
    assert share["ok"] == pytest.approx(0.6, abs=0.05)
    assert share["scratch"] == pytest.approx(0.3, abs=0.05)
    assert share["crack"] == pytest.approx(0.1, abs=0.03)
    assert share["pit"] == share["stain"] == 0


# --- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("color", [True, False], ids=["bgr", "gray"])
@pytest.mark.parametrize("fmt", images.FORMATS)
def test_every_format_encodes_an_upload_the_api_accepts(fmt, color):
    image = LineSimulator(size=(72, 48), seed=4, color=color).part("pit").image
    data = encode(image, fmt)
    info = images.inspect_upload(data, images.ImageLimits())
    assert (info.format, info.width, info.height) == (fmt, 72, 48)
    assert info.channels == (3 if color else 1)
    if fmt != "jpeg":  # lossless formats give the pixels back
        assert np.array_equal(images.decode(data), image)


def test_encode_refuses_unknown_formats():
    with pytest.raises(ValueError, match="jpeg, png, bmp, tiff"):
        encode(np.zeros((8, 8), np.uint8), "gif")


def test_the_contact_sheet_has_a_tile_per_class_and_sample():
    sheet = simulate.contact_sheet(size=32, samples=1)
    assert sheet.shape == (18 + 32 * len(SURFACES), 32 * len(CLASSES), 3)


# --- the camera ---------------------------------------------------------------------------


def test_uploads_are_scheduled_at_fixed_slots_that_do_not_drift():
    assert [simulate.schedule(i, 50) for i in (0, 1, 10, 500)] == [0.0, 0.02, 0.2, 10.0]
    assert simulate.schedule(123, None) == 0.0


@dataclass
class _Received:
    fields: dict[str, str]
    filename: str
    content_type: str
    data: bytes
    authorization: str
    at: float


@dataclass
class _FakeApi:
    """Answers ``POST /v1/images`` per the contract and records what it was sent."""

    token: str = "secret"
    fail_once: set[str] = field(default_factory=set)  # part ids answered 503 the first time
    always_fail: set[str] = field(default_factory=set)  # part ids answered 503 every time
    received: list[_Received] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        if path != "/v1/images":
            return 404, {"error": {"code": "not_found", "message": path}}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": {"code": "unauthorized", "message": "bad token"}}
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        fields, files = {}, []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if part.get_filename():
                files.append((name, part.get_filename(), part.get_content_type(), payload))
            else:
                fields[name] = payload.decode()
        if len(files) != 1 or files[0][0] != "file":
            return 400, {"error": {"code": "missing_file", "message": str(files)}}
        _, filename, content_type, data = files[0]
        part_id = fields.get("part_id", "")
        with self.lock:
            self.received.append(
                _Received(
                    fields, filename, content_type, data, headers["Authorization"], time.monotonic()
                )
            )
            if part_id in self.always_fail or part_id in self.fail_once:
                self.fail_once.discard(part_id)
                return 503, {"error": {"code": "unavailable", "message": "restarting"}}
            image_id = hashlib.sha256(data).hexdigest()
            duplicate = image_id in self.seen
            self.seen.add(image_id)
        return (200 if duplicate else 201), {"image_id": image_id, "duplicate": duplicate}


@pytest.fixture
def api() -> Iterator[_FakeApi]:
    fake = _FakeApi()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, doc = fake.answer(self.path, self.headers, body)
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield fake
    server.shutdown()
    server.server_close()


def test_a_camera_uploads_every_part_with_its_metadata_and_label(api):
    api.fail_once = {"cam-7-3-000002"}  # the API restarts while part 2 is sent
    reports = []
    report = simulate.run_simulation(
        api.url,
        "secret",
        count=12,
        concurrency=3,
        size=48,
        seed=3,
        camera_id="cam-7",
        station="st-2",
        progress=reports.append,
        backoff=0.01,
    )
    assert (report.sent, report.accepted, report.duplicates, report.failed) == (12, 12, 0, 0)
    assert report.rejected == {} and report.retries == 1
    assert sum(report.sent_by_class.values()) == 12 and len(report.latencies_ms) == 12
    assert (
        report.p50_ms is not None and report.p99_ms is not None and report.p50_ms <= report.p99_ms
    )
    assert reports and reports[-1].sent == 12
    assert "12 accepted" in report.summary()

    assert len(api.received) == 13  # 12 parts, one of them twice
    expected = list(LineSimulator(size=48, seed=3).parts(12))
    by_part = {r.fields["part_id"]: r for r in api.received}
    assert sorted(by_part) == [f"cam-7-3-{i:06d}" for i in range(12)]
    for i, part in enumerate(expected):
        got = by_part[f"cam-7-3-{i:06d}"]
        # The camera sends exactly the line's i-th part, with its true label.
        assert got.data == encode(part.image, "jpeg")
        assert got.fields["label"] == part.label
        assert got.filename == f"cam-7-3-{i:06d}.jpg" and got.content_type == "image/jpeg"
        assert (got.fields["line"], got.fields["station"], got.fields["camera_id"]) == (
            "line-1",
            "st-2",
            "cam-7",
        )
        for name in ("line", "station", "camera_id", "part_id"):
            validate_name(name, got.fields[name])
        assert datetime.fromisoformat(got.fields["captured_at"]).tzinfo is not None
        assert got.authorization == "Bearer secret"


def test_a_second_run_with_the_same_seed_sends_duplicates_and_no_labels_when_asked(api):
    first = simulate.run_simulation(api.url, "secret", count=5, size=32, seed=9, fmt="png")
    again = simulate.run_simulation(
        api.url, "secret", count=5, size=32, seed=9, fmt="png", labels=False
    )
    assert (first.accepted, first.duplicates) == (5, 0)
    assert (again.accepted, again.duplicates) == (0, 5)
    assert all("label" in r.fields for r in api.received[:5])
    assert not any("label" in r.fields for r in api.received[5:])
    assert all(r.content_type == "image/png" and r.filename.endswith(".png") for r in api.received)


def test_parts_are_failed_only_after_every_retry_fails(api):
    api.always_fail = {"cam-1-0-000001"}
    report = simulate.run_simulation(api.url, "secret", count=4, size=32, retries=2, backoff=0.01)
    assert (report.sent, report.accepted, report.failed) == (4, 3, 1)
    assert report.failures == {"unavailable": 1} and report.retries == 2
    assert sum(r.fields["part_id"] == "cam-1-0-000001" for r in api.received) == 3


def test_connection_errors_are_retried_then_counted_as_failed():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = simulate.run_simulation(
        f"http://127.0.0.1:{port}", "secret", count=2, size=32, retries=1, backoff=0.01
    )
    assert (report.sent, report.failed, report.accepted) == (2, 2, 0)
    assert report.failures == {"ConnectError": 2} and report.retries == 2
    assert "failed: ConnectError 2" in report.summary()


def test_a_wrong_token_stops_the_run_instead_of_rejecting_every_part(api):
    report = simulate.run_simulation(api.url, "wrong", count=50, size=32, concurrency=2)
    assert report.aborted is not None and "unauthorized" in report.aborted
    assert 1 <= report.sent <= 4 and report.rejected == {"unauthorized": report.sent}


def test_a_rate_spreads_the_uploads_over_time(api):
    started = time.monotonic()
    report = simulate.run_simulation(api.url, "secret", count=6, rate=40, size=32, concurrency=6)
    arrivals = sorted(r.at - started for r in api.received)
    # Part k is not sent before its slot k/40 s, so the k-th arrival cannot be earlier
    # either; only lower bounds are safe to assert about timing.
    assert all(at >= k / 40 - 0.005 for k, at in enumerate(arrivals))
    assert report.elapsed >= 5 / 40 and report.accepted == 6


def test_run_simulation_refuses_bad_arguments():
    for kwargs in ({"rate": 0}, {"fmt": "gif"}, {"concurrency": 0}, {"count": -1}):
        with pytest.raises(ValueError):
            simulate.run_simulation("http://127.0.0.1:9", "t", **{"count": 1, **kwargs})
    with pytest.raises(ValueError, match="http://"):
        simulate.run_simulation("127.0.0.1:9", "t", count=1)


def test_the_simulate_command_says_at_once_when_no_api_answers():
    """Uploads are retried, so a wrong address must be caught before any is sent."""
    import subprocess
    import sys

    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "simulate", "--count", "3", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"no Inspector API answers at {url}" in done.stderr
    assert "make run" in done.stderr
