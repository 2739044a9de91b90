"""The camera that uploads a simulated line to the API, against a fake API."""

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

import pytest

from inspector import camera
from inspector.records import validate_name
from inspector.simulate import LineSimulator, encode


def test_uploads_are_scheduled_at_fixed_slots_that_do_not_drift():
    assert [camera.schedule(i, 50) for i in (0, 1, 10, 500)] == [0.0, 0.02, 0.2, 10.0]
    assert camera.schedule(123, None) == 0.0


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
    report = camera.run_simulation(
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
    first = camera.run_simulation(api.url, "secret", count=5, size=32, seed=9, fmt="png")
    again = camera.run_simulation(
        api.url, "secret", count=5, size=32, seed=9, fmt="png", labels=False
    )
    assert (first.accepted, first.duplicates) == (5, 0)
    assert (again.accepted, again.duplicates) == (0, 5)
    assert all("label" in r.fields for r in api.received[:5])
    assert not any("label" in r.fields for r in api.received[5:])
    assert all(r.content_type == "image/png" and r.filename.endswith(".png") for r in api.received)


def test_parts_are_failed_only_after_every_retry_fails(api):
    api.always_fail = {"cam-1-0-000001"}
    report = camera.run_simulation(api.url, "secret", count=4, size=32, retries=2, backoff=0.01)
    assert (report.sent, report.accepted, report.failed) == (4, 3, 1)
    assert report.failures == {"unavailable": 1} and report.retries == 2
    assert sum(r.fields["part_id"] == "cam-1-0-000001" for r in api.received) == 3


def test_connection_errors_are_retried_then_counted_as_failed():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = camera.run_simulation(
        f"http://127.0.0.1:{port}", "secret", count=2, size=32, retries=1, backoff=0.01
    )
    assert (report.sent, report.failed, report.accepted) == (2, 2, 0)
    assert report.failures == {"ConnectError": 2} and report.retries == 2
    assert "failed: ConnectError 2" in report.summary()


def test_a_wrong_token_stops_the_run_instead_of_rejecting_every_part(api):
    report = camera.run_simulation(api.url, "wrong", count=50, size=32, concurrency=2)
    assert report.aborted is not None and "unauthorized" in report.aborted
    assert 1 <= report.sent <= 4 and report.rejected == {"unauthorized": report.sent}


def test_a_rate_spreads_the_uploads_over_time(api):
    started = time.monotonic()
    report = camera.run_simulation(api.url, "secret", count=6, rate=40, size=32, concurrency=6)
    arrivals = sorted(r.at - started for r in api.received)
    # Part k is not sent before its slot k/40 s, so the k-th arrival cannot be earlier
    # either; only lower bounds are safe to assert about timing.
    assert all(at >= k / 40 - 0.005 for k, at in enumerate(arrivals))
    assert report.elapsed >= 5 / 40 and report.accepted == 6


def test_run_simulation_refuses_bad_arguments():
    for kwargs in ({"rate": 0}, {"fmt": "gif"}, {"concurrency": 0}, {"count": -1}):
        with pytest.raises(ValueError):
            camera.run_simulation("http://127.0.0.1:9", "t", **{"count": 1, **kwargs})
    with pytest.raises(ValueError, match="http://"):
        camera.run_simulation("127.0.0.1:9", "t", count=1)


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
