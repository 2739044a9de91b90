"""Load generation for bench/serving.py: the requests it sends (TF Serving ``:predict``,
uploads, the SavedModel called in this process), the closed- and open-loop clients that
send them, and what a window of them measured (latency percentiles, errors, throughput).
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench.ingest_ops import unique_jpeg

CAMERA = "Bearer dev-camera"
PREDICT_PATH = "/v1/models/inspector:predict"
UPLOAD_PATH = "/v1/images"


class Failure(Exception):
    """One request did not succeed; the message is its error code."""


def predict_body(image: bytes) -> bytes:
    """A TF Serving row-format request for one image."""
    return json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()


def multipart(fields: dict[str, str], data: bytes, filename: str) -> tuple[bytes, str]:
    """An upload's multipart/form-data body and its content type."""
    boundary = f"bench{secrets.token_hex(12)}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- load generation -------------------------------------------------------------------


@dataclass
class Sample:
    """One request: when it was due and sent, when it ended, what answered."""

    due: float
    sent: float
    done: float
    ok: bool
    version: int | None
    code: str = ""

    @property
    def latency_ms(self) -> float:
        return (self.done - self.due) * 1000


@dataclass
class Window:
    """What one window of load did."""

    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0
    per_call: int = 1  # images per request

    def summary(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.ok]
        errors: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                errors[s.code] = errors.get(s.code, 0) + 1
        return {
            "requests_ok": len(ok),
            "errors": sum(errors.values()),
            "error_codes": errors,
            "elapsed_s": round(self.elapsed, 3),
            "per_s": round(len(ok) / self.elapsed, 1) if self.elapsed else 0.0,
            "images_per_s": round(len(ok) * self.per_call / self.elapsed, 1)
            if self.elapsed
            else 0.0,
            **percentiles([s.latency_ms for s in ok]),
            "max_send_lag_ms": round(max((s.sent - s.due for s in self.samples), default=0) * 1000)
            if self.samples
            else None,
        }


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of ``values`` (ms)."""
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    q = np.percentile(values, [50, 90, 99, 100])
    return {
        k: round(float(v), 2)
        for k, v in zip(("p50_ms", "p90_ms", "p99_ms", "max_ms"), q, strict=True)
    }


class Op:
    """One kind of request: ``open``/``close`` a per-thread client, ``prepare`` the next
    request outside the timed part, ``call`` it (the version that answered, or Failure)."""

    per_call = 1

    def open(self) -> Any:
        return None

    def close(self, client: Any) -> None:
        """Release the per-thread client."""

    def prepare(self, seq: int) -> Any:
        raise NotImplementedError

    def call(self, client: Any, item: Any) -> int | None:
        raise NotImplementedError


class ModelCall(Op):
    """``ServingModel.predict_bytes`` in this process on ``per_call`` images."""

    def __init__(self, model: Any, pool: list[bytes], per_call: int) -> None:
        self.model, self.pool, self.per_call = model, pool, per_call

    def prepare(self, seq: int) -> list[bytes]:
        start = (seq * self.per_call) % len(self.pool)
        return [self.pool[(start + i) % len(self.pool)] for i in range(self.per_call)]

    def call(self, client: Any, item: list[bytes]) -> int | None:
        out = self.model.predict_bytes(item)
        if len(out["probabilities"]) != len(item):
            raise Failure("wrong_rows")
        return None


class HttpOp(Op):
    """Requests over one keep-alive HTTP/1.1 connection per thread (http.client: the
    lightest client at hand, since it shares the cores with the service)."""

    path = PREDICT_PATH
    expected = 200

    def __init__(self, port: int) -> None:
        self.port = port

    def open(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def close(self, client: http.client.HTTPConnection) -> None:
        client.close()

    def headers(self, item: Any) -> dict[str, str]:
        return {"Authorization": CAMERA, "Content-Type": "application/json"}

    def call(self, client: http.client.HTTPConnection, item: Any) -> int | None:
        try:
            client.request("POST", self.path, body=item[0], headers=item[1])
            response = client.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            client.close()  # reconnects on the next request
            raise Failure(type(exc).__name__) from exc
        if response.status != self.expected:
            raise Failure(f"http_{response.status}")
        return self.version(json.loads(data))

    def version(self, doc: dict[str, Any]) -> int | None:
        spec = doc.get("model_spec")
        return int(spec["version"]) if spec else None


class Predict(HttpOp):
    """``POST /v1/models/inspector:predict`` with one image (TF Serving row format)."""

    def __init__(self, port: int, pool: list[bytes]) -> None:
        super().__init__(port)
        self.bodies = [predict_body(image) for image in pool]
        self._headers = {"Authorization": CAMERA, "Content-Type": "application/json"}

    def prepare(self, seq: int) -> tuple[bytes, dict[str, str]]:
        return self.bodies[seq % len(self.bodies)], self._headers


class Upload(HttpOp):
    """``POST /v1/images`` of a distinct image (a unique JPEG comment each time); ok only
    when the answer carries the verdict (``verdict_status`` done within the deadline)."""

    path = UPLOAD_PATH
    expected = 201

    def __init__(self, port: int, pool: list[bytes]) -> None:
        super().__init__(port)
        self.pool, self.tag = pool, secrets.token_hex(4)
        self._ids = itertools.count()  # unique across every window this op is used in

    def prepare(self, seq: int) -> tuple[bytes, dict[str, str]]:
        part_id = f"bench-{self.tag}-{next(self._ids)}"
        data = unique_jpeg(self.pool[seq % len(self.pool)], part_id.encode())
        fields = {
            "line": "line-1",
            "station": "station-1",
            "camera_id": "bench-cam",
            "part_id": part_id,
            "captured_at": datetime.now(UTC).isoformat(),
        }
        body, content_type = multipart(fields, data, f"{part_id}.jpg")
        return body, {"Authorization": CAMERA, "Content-Type": content_type}

    def version(self, doc: dict[str, Any]) -> int | None:
        if doc.get("verdict_status") != "done":
            raise Failure(f"verdict_{doc.get('verdict_status')}")
        return int(doc["verdict"]["model_version"])


def _attempt(op: Op, client: Any, item: Any, due: float) -> Sample:
    sent = time.perf_counter()
    try:
        version = op.call(client, item)
    except Failure as exc:
        return Sample(due, sent, time.perf_counter(), False, None, str(exc))
    except Exception as exc:  # anything else is a failed request too, never a crash
        return Sample(due, sent, time.perf_counter(), False, None, type(exc).__name__)
    return Sample(due, sent, time.perf_counter(), True, version)


def closed_loop(op: Op, clients: int, duration: float) -> Window:
    """``clients`` threads, each sending its next request as soon as the last one ends,
    until ``duration`` has passed; the window ends when the last one in flight ends."""
    window = Window(per_call=op.per_call)
    seqs, lock = itertools.count(), threading.Lock()
    start = time.perf_counter()
    deadline = start + duration
    ends: list[float] = []

    def client_thread() -> None:
        client = op.open()
        try:
            while time.perf_counter() < deadline:
                with lock:
                    seq = next(seqs)
                item = op.prepare(seq)
                sample = _attempt(op, client, item, time.perf_counter())
                window.samples.append(sample)  # list.append is atomic
        finally:
            op.close(client)
            ends.append(time.perf_counter())

    threads = [threading.Thread(target=client_thread, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window.elapsed = max(ends, default=time.perf_counter()) - start
    return window


class OpenLoop:
    """Requests due at a fixed rate (one every 1/rate s) from a pool of threads, whatever
    the answers' latency; latency counts from when a request was due, so a client that
    falls behind shows as latency (no coordinated omission). Runs until ``stop()`` or
    ``count`` requests."""

    def __init__(self, op: Op, rate: float, threads: int = 48, count: int | None = None) -> None:
        self.op, self.rate, self.count = op, rate, count
        self.samples: list[Sample] = []
        self.first_done: dict[int | None, float] = {}  # version → its first answer's end
        self._stop = threading.Event()
        self._seqs, self._lock = itertools.count(), threading.Lock()
        self.start_at = time.perf_counter() + 0.1
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        client = self.op.open()
        try:
            while not self._stop.is_set():
                with self._lock:
                    seq = next(self._seqs)
                if self.count is not None and seq >= self.count:
                    return
                item = self.op.prepare(seq)
                due = self.start_at + seq / self.rate
                pause = due - time.perf_counter()
                if pause > 0 and self._stop.wait(pause):
                    return
                sample = _attempt(self.op, client, item, due)
                self.samples.append(sample)
                if sample.ok and sample.version not in self.first_done:
                    self.first_done[sample.version] = sample.done
        finally:
            self.op.close(client)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        self._stop.set()
        self.join()


def open_loop(op: Op, rate: float, duration: float) -> Window:
    """``rate`` requests/s for ``duration`` s, paced; the window."""
    load = OpenLoop(op, rate, count=max(1, int(rate * duration)))
    load.join()
    samples = sorted(load.samples, key=lambda s: s.due)
    elapsed = max((s.done for s in samples), default=load.start_at) - load.start_at
    return Window(samples, elapsed, op.per_call)
