"""Serving benchmark: the verdict path against its ceiling and against the naive way, the
micro-batcher's settings, hot-swaps under load, and memory across swaps, in one run.

A model version is trained first, in this process, with the product's own code
(``inspector.training``: ``compact_cnn`` at ``--input-size`` px, a few epochs on simulated
parts) and put in production; ``--store`` reuses a store that has one. Requests carry
simulated parts encoded as JPEG at ``--image-sizes`` (the first size gets every
measurement; the others only the throughput rows). Then, each at a closed-loop load of
``--concurrency`` clients for ``--duration`` s after ``--warmup`` s:

(a)  ceiling    the same SavedModel in this process: ``ServingModel.predict_bytes`` on
                batches of ``--batch`` encoded images, from N threads (images/s). Beside it,
                one image per call (what a server without batching can at best do);
(b)  service    ``inspector api`` + ``inspector worker inference`` as real processes, a real
                Redis (tests.servers.RedisServer) and a local store:
                ``POST /v1/models/inspector:predict`` (TF Serving API, one image a request)
                and ``POST /v1/images`` (upload: stored, then judged within the deadline);
                requests/s, p50/p99, and the worker's mean batch (its served/batches);
(c)  naive      a tiny FastAPI app on uvicorn in a subprocess that calls the model on each
                request, one at a time (no batching, no queue).

Then the micro-batcher is tuned (``--batcher`` settings of ``INSPECTOR_INFERENCE_MAX_BATCH``
and ``_MAX_WAIT_MS``, one fresh worker each, :predict at the highest concurrency); p99 is
measured with an open-loop client paced at half the service's best throughput; and, under
that paced load, ``--swaps`` new versions (clones of the first) are approved through
``POST /v1/models/inspector/versions/N:approve``: p99 around each swap against steady
state, seconds from the approval to the first answer by the new version, failed
requests, and the worker's resident memory after each swap.

CPU time per process (client, API, worker, Redis, naive server, everything else) is
sampled from /proc around each window. Before anything is timed, the benchmark waits
until no other benchmark or ``explore.py`` runs (``pgrep -f "bench/|explore.py"``, every
``--poll`` s) and the machine is idle. Every process it starts is stopped on every exit
path. Results: bench/results/serving-<timestamp>.json; BENCHMARKS.md explains them.

    .venv/bin/python bench/serving.py
    .venv/bin/python bench/serving.py --concurrency 1,4,16 --image-sizes 1152x864,128x128
    .venv/bin/python bench/serving.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import atexit
import base64
import contextlib
import http.client
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
from starlette.requests import Request  # at module level: FastAPI resolves the annotation here

from bench import common
from bench.ingest import CpuSample, cpu_by_group, unique_jpeg

ROOT = common.ROOT
CAMERA = "Bearer dev-camera"
OPERATOR = "Bearer dev-operator"
PREDICT_PATH = "/v1/models/inspector:predict"
UPLOAD_PATH = "/v1/images"
PACKAGES = ("fastapi", "starlette", "uvicorn", "h11", "httptools", "uvloop", "redis", "hiredis")
OTHER_CPU_NOTE = 0.2  # cores; above this, something outside the benchmark competed
DEFAULT_BATCHER = (16, 0.0)  # the product's defaults (inspector/config.py)


class Failure(Exception):
    """One request did not succeed; the message is its error code."""


def say(text: str = "") -> None:
    print(text, flush=True)


# --- a quiet machine -------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, CPU seconds of it and its reaped children) for every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(entry.path, "stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                cpu = sum(map(int, fields[11:15])) / os.sysconf("SC_CLK_TCK")
                table[int(entry.name)] = (int(fields[1]), cpu)
    return table


def _descendants(pid: int, table: dict[int, tuple[int, float]]) -> set[int]:
    """``pid`` and every process below it."""
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, (parent, _) in table.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return tree


def others_running(table: dict[int, tuple[int, float]]) -> dict[int, str]:
    """Other benchmarks or explorations now (``pgrep -f "bench/|explore.py"``), not this
    process, what it started, or the shells that started it: pid → command line."""
    found = subprocess.run(
        ["pgrep", "-af", r"bench/|explore\.py"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    mine = _descendants(os.getpid(), table)
    pid = os.getpid()
    while pid > 1 and pid in table:  # ancestors
        pid = table[pid][0]
        mine.add(pid)
    others = {int(line.split(" ", 1)[0]): line.split(" ", 1)[-1] for line in found}
    return {pid: cmd for pid, cmd in others.items() if pid not in mine}


def wait_for_others(poll: float) -> float:
    """Block while another benchmark or exploration runs; seconds waited (poll 0: none).

    One that (with everything it started) stays idle for two polls in a row is waiting
    itself, perhaps for this one (common.wait_for_quiet_machine waits for every
    benchmark): then go ahead, or the two would wait for each other for ever.
    """
    if poll <= 0:
        return 0.0
    started = time.monotonic()
    before: dict[int, float] = {}
    idle_polls = 0
    while True:
        table = _proc_table()
        others = others_running(table)
        if not others:
            return time.monotonic() - started
        cpu = {
            pid: sum(table[p][1] for p in _descendants(pid, table) if p in table) for pid in others
        }
        busy = [pid for pid in others if pid not in before or cpu[pid] - before[pid] > 0.03 * poll]
        idle_polls = 0 if busy else idle_polls + 1
        if idle_polls >= 2:
            say(
                f"going ahead: {len(others)} other benchmark(s) idle for {2 * poll:.0f} s "
                "(waiting themselves)"
            )
            return time.monotonic() - started
        pid = (busy or list(others))[0]
        say(f"waiting: {pid} {others[pid][:100]} is running; next check in {poll:.0f} s")
        before = cpu
        time.sleep(poll)


# --- processes we start ----------------------------------------------------------------

_started: list[Any] = []  # everything with a .stop(), stopped at exit whatever happens


def _track(process: Any) -> Any:
    _started.append(process)
    return process


@atexit.register
def stop_everything() -> None:
    """Stop every process this benchmark started (newest first)."""
    while _started:
        with contextlib.suppress(Exception):
            _started.pop().stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class NaiveServer:
    """The naive service: this file run with ``--naive-server`` in its own process group."""

    def __init__(self, saved_model: Path, workdir: Path) -> None:
        from tests.servers import free_port

        self.port = free_port()
        self.log = workdir / "naive-server.log"
        self.saved_model = saved_model
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NaiveServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--naive-server",
                    "--port",
                    str(self.port),
                    "--saved-model",
                    str(self.saved_model),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ROOT,
            )
        _track(self)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"naive server exited:\n{self.log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"naive server did not answer:\n{self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def naive_server(port: int, saved_model: Path) -> None:
    """What a first attempt at serving looks like: one FastAPI route that decodes the body
    and calls the model on it, one request at a time (an async route blocks the loop)."""
    import uvicorn
    from fastapi import FastAPI

    from inspector.export import ServingModel

    model = ServingModel(saved_model)
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(PREDICT_PATH)
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.json()
        images = [base64.b64decode(item["b64"]) for item in body["instances"]]
        out = model.predict_bytes(images)
        names = [n.decode() for n in out["class_names"][0]]
        return {
            "predictions": [
                {
                    "probabilities": [round(float(p), 6) for p in probabilities],
                    "class_names": names,
                    "label": label.decode(),
                    "confidence": float(confidence),
                }
                for probabilities, label, confidence in zip(
                    out["probabilities"], out["label"], out["confidence"], strict=True
                )
            ]
        }

    model.predict_bytes([base64.b64decode(_tiny_jpeg())])  # trace once before serving
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _tiny_jpeg() -> str:
    from inspector.simulate import LineSimulator, encode

    return base64.b64encode(encode(LineSimulator(size=32, seed=1).part("ok").image)).decode()


class Service:
    """Redis, ``inspector api`` and ``inspector worker inference`` on a local store."""

    def __init__(self, store_url: str, workdir: Path, extra_env: dict[str, str]) -> None:
        from tests.servers import RedisServer, free_port

        self.workdir = workdir
        self.redis = _track(RedisServer(workdir=workdir / "redis").start())
        self.port = free_port()
        self.env = {
            "INSPECTOR_DATA_DIR": str(workdir / "data"),
            "INSPECTOR_STORE_URL": store_url,
            "INSPECTOR_REDIS_URL": self.redis.url,
            # The memory phase measures growth across 20 swaps; a worker that recycles
            # itself half-way would hide it (and nothing restarts it here).
            "INSPECTOR_INFERENCE_RECYCLE_RSS_GROWTH": "1000",
            **extra_env,
        }
        self.api: Any = None
        self.worker: Any = None
        self.batcher: tuple[int, float] | None = None
        import redis

        self.r = redis.Redis.from_url(self.redis.url)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_api(self) -> None:
        from tests.processes import ServiceProcess

        self.api = _track(
            ServiceProcess("api", ["api", "--port", str(self.port)], self.env, self.workdir)
        ).start()
        self.api.wait_http(f"{self.base_url}/healthz", timeout=120)

    def start_worker(self, max_batch: int, max_wait_ms: float) -> None:
        """A fresh inference worker with these batcher settings, serving and reporting."""
        from tests.processes import ServiceProcess, wait_for

        self.stop_worker()
        env = {
            **self.env,
            "INSPECTOR_INFERENCE_MAX_BATCH": str(max_batch),
            "INSPECTOR_INFERENCE_MAX_WAIT_MS": str(max_wait_ms),
        }
        name = f"inference-{max_batch}x{max_wait_ms:g}"
        self.worker = _track(ServiceProcess(name, ["worker", "inference"], env, self.workdir))
        self.worker.start()
        self.batcher = (max_batch, max_wait_ms)
        self.worker.wait_for_output("ready (serving version", timeout=180)
        wait_for(lambda: self.status() is not None, 30, "worker status in Redis", self.worker.log)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            with contextlib.suppress(ValueError):
                _started.remove(self.worker)
            self.worker = None

    @property
    def worker_pid(self) -> int:
        return int(self.worker.proc.pid)

    def status(self) -> dict[str, Any] | None:
        """The worker's latest heartbeat (every 2 s): served, batches, rss_bytes, …"""
        from workers.inference_queue import STATUS

        raw = self.r.hget(STATUS, f"inference@{socket.gethostname()}:{self.worker_pid}")
        return json.loads(raw) if raw else None

    def fresh_status(self, after: float, timeout: float = 6.0) -> dict[str, Any] | None:
        """The first heartbeat sent after wall-clock time ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status and status["updated_at"] > after:
                return status
            time.sleep(0.1)
        return self.status()

    def roots(self) -> dict[str, int]:
        roots = {
            "client (bench)": os.getpid(),
            "redis": self.redis._proc.pid,
            "api": int(self.api.proc.pid),
        }
        if self.worker is not None:
            roots["inference worker"] = self.worker_pid
        return roots

    def stop(self) -> None:
        self.stop_worker()
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.r.close()
        self.redis.close()


def rss_of(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else 0


# --- the model and the images ----------------------------------------------------------


def prepare_store(workdir: Path, args: argparse.Namespace) -> tuple[Any, int, dict[str, Any]]:
    """A local store with a production version: a copy of ``--store``, or trained here."""
    from inspector import registry
    from storage.local import LocalStore

    target = workdir / "store"
    if args.store:
        shutil.copytree(args.store, target)
        store = LocalStore(target)
        version = registry.alias(store, "production")
        if version is None:
            sys.exit(f"--store {args.store} has no production version")
        doc = registry.get_version(store, version)
        return store, version, {"reused_store": str(args.store), "config": doc.get("config")}

    from inspector import training
    from inspector.training import TrainConfig
    from tests.factories import fill_store

    store = LocalStore(target)
    t0 = time.perf_counter()
    mix = {"ok": 0.4, "scratch": 0.15, "pit": 0.15, "crack": 0.15, "stain": 0.15}
    fill_store(store, args.train_images, mix=mix, seed=11, size=args.input_size, fmt="png")
    filled = time.perf_counter() - t0
    config = TrainConfig(
        architecture="compact_cnn",
        image_size=args.input_size,
        channels=3,
        epochs=args.train_epochs,
        patience=args.train_epochs,
        batch_size=32,
    )
    request = training.request_run(store, by="bench", config=config, parent="none")
    t0 = time.perf_counter()
    result = training.execute_run(store, request["run_id"], cache_dir=workdir / "train-cache")
    if result.get("state") != "succeeded":
        sys.exit(f"training failed: {result}")
    version = int(result["version"])
    for action in ("register", "gate_passed", "approve"):
        registry.transition(store, version, action, actor="bench", role="operator", reason="bench")
    if args.save_store:
        shutil.rmtree(args.save_store, ignore_errors=True)
        shutil.copytree(target, args.save_store)
    return (
        store,
        version,
        {
            "trained_here": True,
            "images": args.train_images,
            "fill_seconds": round(filled, 1),
            "train_seconds": round(time.perf_counter() - t0, 1),
            "config": config.model_dump(),
        },
    )


def make_pool(size: tuple[int, int], count: int, seed: int) -> list[bytes]:
    """``count`` distinct simulated parts (all classes) as JPEG, quality 92."""
    from inspector.simulate import LineSimulator, encode

    mix = {"ok": 0.6, "scratch": 0.1, "pit": 0.1, "crack": 0.1, "stain": 0.1}
    sim = LineSimulator(size=size, seed=seed, mix=mix)
    return [encode(part.image, "jpeg") for part in sim.parts(count)]


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


# --- measuring -------------------------------------------------------------------------


@dataclass
class Bench:
    """The run's settings and everything measured so far."""

    args: argparse.Namespace
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def measure(
        self,
        label: str,
        op: Op,
        clients: int,
        roots: dict[str, int],
        service: Service | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Warm up, then one timed closed-loop window with CPU (and the worker's batches)
        sampled around it; the row, also kept."""
        paused = wait_for_others(self.args.poll)
        if self.args.warmup > 0:
            closed_loop(op, clients, self.args.warmup)
        before_status = service.status() if service is not None and service.worker else None
        cpu0 = CpuSample.take()
        window = closed_loop(op, clients, self.args.duration)
        cpu = cpu_by_group(cpu0, CpuSample.take(), roots)
        row = self._row(label, f"closed x{clients}", clients, window, cpu, **extra)
        row["paused_for_others_s"] = round(paused, 1)
        if before_status is not None and service is not None:
            after = service.fresh_status(time.time())
            row.update(batch_stats(before_status, after))
        self._say_row(row)
        return row

    def measure_open(
        self,
        label: str,
        op: Op,
        rate: float,
        roots: dict[str, int],
        service: Service | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """One paced (open-loop) window at ``rate`` requests/s."""
        wait_for_others(self.args.poll)
        open_loop(op, rate, min(self.args.warmup, 3.0))
        before_status = service.status() if service is not None else None
        cpu0 = CpuSample.take()
        window = open_loop(op, rate, self.args.open_duration)
        cpu = cpu_by_group(cpu0, CpuSample.take(), roots)
        row = self._row(label, f"open {rate:.0f}/s", None, window, cpu, rate=rate, **extra)
        if before_status is not None and service is not None:
            row.update(batch_stats(before_status, service.fresh_status(time.time())))
        self._say_row(row)
        return row

    def _row(
        self,
        label: str,
        load: str,
        clients: int | None,
        window: Window,
        cpu: dict[str, float],
        **extra: Any,
    ) -> dict[str, Any]:
        summary = window.summary()
        ok = summary["requests_ok"]
        row = {
            "path": label,
            "load": load,
            "clients": clients,
            "image_size": self.args.current_size,
            **summary,
            "cpu_cores": cpu,
            "cpu_ms_per_request": {
                name: round(cores * window.elapsed / ok * 1000, 2) if ok else None
                for name, cores in cpu.items()
            },
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            **extra,
        }
        if cpu.get("other", 0.0) > OTHER_CPU_NOTE:
            self.notes.append(
                f"{label} {load} ({row['image_size']}): other processes used "
                f"{cpu['other']:.2f} cores"
            )
        self.rows.append(row)
        return row

    def _say_row(self, row: dict[str, Any]) -> None:
        batch = f"  mean batch {row['mean_batch']:.1f}" if row.get("mean_batch") else ""
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_cores"].items() if v >= 0.02)
        say(
            f"  {row['path']:<34} {row['load']:<12} {row['images_per_s']:8.1f} img/s "
            f"{row['per_s']:8.1f} req/s  p50 {_ms(row['p50_ms']):>7}  p99 {_ms(row['p99_ms']):>7}"
            f"  errors {row['errors']}{batch}  [cores: {cpu}]"
        )


def batch_stats(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Images and batches the worker served between two heartbeats, and their ratio."""
    if not before or not after:
        return {}
    served = after["served"] - before["served"]
    batches = after["batches"] - before["batches"]
    return {
        "worker_images": served,
        "worker_batches": batches,
        "mean_batch": round(served / batches, 2) if batches else None,
    }


def _times_1000(value: float | None) -> float | None:
    return None if value is None else value * 1000


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def component_costs(model: Any, pool: list[bytes], redis_url: str, workdir: Path) -> dict[str, Any]:
    """Single-thread cost of each step on the verdict path, measured apart (median ms)."""
    import redis

    from inspector import images
    from inspector.records import UploadMetadata
    from inspector.uploads import accept_upload
    from storage.local import LocalStore
    from workers import inference_queue

    image = pool[0]
    body = predict_body(image)
    doc = inference_queue.pack(inference_queue.request(images=[image]))
    r = redis.Redis.from_url(redis_url)
    key = f"bench:components:{secrets.token_hex(4)}"
    store = LocalStore(workdir / "components-store")
    meta = UploadMetadata.parse(
        line="l", station="s", camera_id="c", part_id="p", captured_at="2026-11-26T09:00:00Z"
    )
    seq = itertools.count()
    batch = [pool[i % len(pool)] for i in range(16)]

    def redis_round_trip() -> None:
        r.lpush(key, doc)
        r.rpop(key)

    steps: dict[str, tuple[Callable[[], object], int]] = {
        "API: json.loads of the :predict body": (lambda: json.loads(body), 200),
        "API: base64 decode of the image": (
            lambda: base64.b64decode(json.loads(body)["instances"][0]["b64"], validate=True),
            200,
        ),
        "API: queue request (JSON header + raw bytes)": (
            lambda: inference_queue.pack(inference_queue.request(images=[image])),
            200,
        ),
        "Redis: LPUSH + RPOP of the request document": (redis_round_trip, 200),
        "worker: unpack the request": (lambda: inference_queue.unpack(doc), 200),
        "model: predict_bytes, 1 image": (lambda: model.predict_bytes([image]), 50),
        "model: predict_bytes, 16 images (per image)": (lambda: model.predict_bytes(batch), 20),
        "upload: images.inspect_upload (validation decode)": (
            lambda: images.inspect_upload(image, images.ImageLimits()),
            100,
        ),
        "upload: accept_upload into a LocalStore (fsync)": (
            lambda: accept_upload(
                store, unique_jpeg(image, f"c{next(seq)}".encode()), meta, uploaded_by="bench"
            ),
            100,
        ),
    }
    out = {}
    try:
        for name, (step, n) in steps.items():
            step()
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                step()
                times.append((time.perf_counter() - t0) * 1000)
            median = statistics.median(times)
            if "16 images" in name:
                median /= 16
            out[name] = round(median, 3)
    finally:
        r.delete(key)
        r.close()
        shutil.rmtree(workdir / "components-store", ignore_errors=True)
    return out


# --- phases ----------------------------------------------------------------------------


def phase_in_process(bench: Bench, model: Any, pool: list[bytes], levels: list[int]) -> None:
    """(a) The ceiling: batches in this process; and one image per call beside it."""
    roots = {"bench (this process)": os.getpid()}
    for clients in levels:
        bench.measure(
            f"(a) ceiling: in-process, batch {bench.args.batch}",
            ModelCall(model, pool, bench.args.batch),
            clients,
            roots,
        )
    for clients in levels:
        bench.measure("in-process, 1 image per call", ModelCall(model, pool, 1), clients, roots)


def phase_naive(
    bench: Bench, saved_model: Path, pool: list[bytes], levels: list[int], workdir: Path
) -> dict[str, Any]:
    """(c) The naive service; its best row."""
    server = NaiveServer(saved_model, workdir).start()
    try:
        roots = {"client (bench)": os.getpid(), "naive server": server.pid}
        op = Predict(server.port, pool)
        rows = [
            bench.measure("(c) naive: FastAPI, model per request", op, c, roots) for c in levels
        ]
    finally:
        server.stop()
        _started.remove(server)
    return max(rows, key=lambda r: r["per_s"])


def phase_swaps(
    bench: Bench, service: Service, store: Any, first: int, pool: list[bytes], rate: float
) -> dict[str, Any]:
    """Approve ``--swaps`` clones one after another under paced :predict load."""
    from inspector import registry
    from tests.training_support import clone_version

    args = bench.args
    numbers = []
    for _ in range(args.swaps):
        number = clone_version(store, first)
        for action in ("register", "gate_passed"):
            registry.transition(store, number, action, actor="bench", role="system")
        numbers.append(number)
    wait_for_others(args.poll)
    pid = service.worker_pid
    memory: list[dict[str, Any]] = [{"after_swap": 0, "version": first, "rss_bytes": rss_of(pid)}]
    swaps: list[dict[str, Any]] = []
    roots = service.roots()
    # A fresh worker (and API) answers slowly at first: warm both, at every batch size.
    closed_loop(Predict(service.port, pool), max(args.levels), max(args.warmup, 5.0))
    cpu0 = CpuSample.take()
    load = OpenLoop(Predict(service.port, pool), rate)
    try:
        time.sleep(args.steady)
        for i, number in enumerate(numbers, 1):
            # A new connection each time: uvicorn closes idle ones after 5 s.
            ops = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
            approved = time.perf_counter()
            ops.request(
                "POST",
                f"/v1/models/inspector/versions/{number}:approve",
                body=json.dumps({"reason": "bench hot-swap"}).encode(),
                headers={"Authorization": OPERATOR, "Content-Type": "application/json"},
            )
            answer = ops.getresponse()
            answer.read()
            ops.close()
            approve_ms = (time.perf_counter() - approved) * 1000
            if answer.status != 200:
                raise RuntimeError(f"approving version {number}: HTTP {answer.status}")
            deadline = approved + 120
            while number not in load.first_done and time.perf_counter() < deadline:
                time.sleep(0.02)
            # Threads record in the order they finish, so look for the earliest answer.
            time.sleep(0.2)
            first_new = min(
                (s.done for s in list(load.samples) if s.version == number), default=None
            )
            if first_new is None:
                raise RuntimeError(f"version {number} never answered within 120 s")
            time.sleep(max(0.0, approved + args.swap_interval - time.perf_counter()))
            status = service.status() or {}
            memory.append(
                {
                    "after_swap": i,
                    "version": number,
                    "rss_bytes": rss_of(pid),
                    "status_rss_bytes": status.get("rss_bytes"),
                }
            )
            swaps.append(
                {
                    "swap": i,
                    "version": number,
                    "approved_at": approved,
                    "approve_http_ms": round(approve_ms, 1),
                    "first_answer_s": round(first_new - approved, 3),
                    # The serving loop's own pause at the switch (it includes gc.collect()).
                    "worker_swap_pause_s": status.get("last_swap_seconds"),
                }
            )
            say(
                f"  swap {i:>2} → v{number}: approve {approve_ms:.0f} ms, first answer by "
                f"v{number} after {first_new - approved:.2f} s, worker RSS "
                f"{memory[-1]['rss_bytes'] / 2**20:.0f} MiB"
            )
    finally:
        load.stop()
    cpu = cpu_by_group(cpu0, CpuSample.take(), roots)
    return analyse_swaps(load, swaps, memory, rate, cpu, args, service.status())


def analyse_swaps(
    load: OpenLoop,
    swaps: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    rate: float,
    cpu: dict[str, float],
    args: argparse.Namespace,
    status: dict[str, Any] | None,
) -> dict[str, Any]:
    """p99 around each swap against steady state, failures, and memory growth."""
    samples = sorted(load.samples, key=lambda s: s.due)
    failed = [s for s in samples if not s.ok]
    ok = [s for s in samples if s.ok]
    first_approval = swaps[0]["approved_at"] if swaps else float("inf")
    # Steady state: the paced load before the first approval, its first second left out.
    steady = [s.latency_ms for s in ok if load.start_at + 1 <= s.due < first_approval - 1]
    windows = []
    for swap in swaps:
        start = swap["approved_at"] - 1.0
        # 5 s around the swap: 1 s before the approval to 4 s after, stretched to 1 s
        # after the first answer by the new version when loading took longer than 3 s.
        end = max(swap["approved_at"] + 4.0, swap["approved_at"] + swap["first_answer_s"] + 1.0)
        windows.append((start, end))
        inside = [s.latency_ms for s in ok if start <= s.due < end]
        swap.update(
            {"window_s": round(end - start, 2), "requests": len(inside), **percentiles(inside)}
        )
    between = [
        s.latency_ms
        for s in ok
        if s.due >= first_approval and not any(a <= s.due < b for a, b in windows)
    ]
    steady_p = percentiles(steady)
    swap_p99 = [w["p99_ms"] for w in swaps if w["p99_ms"] is not None]
    first = memory[1]["rss_bytes"] if len(memory) > 1 else None
    last = memory[-1]["rss_bytes"]
    timeline = []  # per second of the phase: requests due, p50, p99, max (ms)
    for second in range(int((samples[-1].due - load.start_at) + 1) if samples else 0):
        due = [s.latency_ms for s in ok if second <= s.due - load.start_at < second + 1]
        q = percentiles(due)
        timeline.append([second, len(due), q["p50_ms"], q["p99_ms"], q["max_ms"]])
    for swap in swaps:
        swap["approved_at"] = round(swap["approved_at"] - load.start_at, 3)  # s into the phase
    return {
        "rate_per_s": rate,
        "requests": len(samples),
        "failed": len(failed),
        "failed_codes": sorted({s.code for s in failed}),
        "steady": {"requests": len(steady), **steady_p},
        "between_swaps": {"requests": len(between), **percentiles(between)},
        "swaps": swaps,
        "swap_p99_median_ms": round(statistics.median(swap_p99), 2) if swap_p99 else None,
        "swap_p99_max_ms": max(swap_p99, default=None),
        "swap_p99_ratio_median": _ratio(statistics.median(swap_p99), steady_p["p99_ms"])
        if swap_p99
        else None,
        "swap_p99_ratio_max": _ratio(max(swap_p99), steady_p["p99_ms"]) if swap_p99 else None,
        "first_answer_s": {
            "median": round(statistics.median([w["first_answer_s"] for w in swaps]), 3)
            if swaps
            else None,
            "max": max((w["first_answer_s"] for w in swaps), default=None),
        },
        "memory": memory,
        "timeline": timeline,
        "rss_growth_first_to_last": round(last / first - 1, 4) if first else None,
        "worker_status_at_end": status,
        "cpu_cores": cpu,
        "settings": {"steady_s": args.steady, "swap_interval_s": args.swap_interval},
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


# --- reporting -------------------------------------------------------------------------


def report_tables(result: dict[str, Any]) -> str:
    """The summary tables, as Markdown."""
    rows = result["rows"]
    lines = []
    for size in result["settings"]["image_sizes"]:
        ceiling = max(
            (
                r["images_per_s"]
                for r in rows
                if r["image_size"] == size and r["path"].startswith("(a)")
            ),
            default=None,
        )
        lines += [
            f"\nRequests of one {size} JPEG (the ceiling's images/s in batches of "
            f"{result['settings']['batch']}: best {ceiling}/s)",
            "",
            "| path | load | images/s | ÷ ceiling (best) | p50 ms | p99 ms | errors | mean batch "
            "| CPU ms per request (where) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in rows:
            if r["image_size"] != size:
                continue
            ratio = f"{r['images_per_s'] / ceiling:.2f}" if ceiling else "-"
            where = ", ".join(
                f"{k} {v:.1f}"
                for k, v in r["cpu_ms_per_request"].items()
                if v is not None and v >= 0.05 and k != "other"
            )
            lines.append(
                f"| {r['path']} | {r['load']} | {r['images_per_s']:.1f} | {ratio} | "
                f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {r['errors']} | "
                f"{r.get('mean_batch') or '-'} | {where} |"
            )
    tuning = result.get("tuning") or []
    if tuning:
        lines += [
            "\nMicro-batcher (:predict, closed loop at the highest concurrency)",
            "",
            "| max batch | max wait ms | req/s | p50 ms | p99 ms | mean batch |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {t['max_batch']} | {t['max_wait_ms']:g} | {t['per_s']:.1f} | {_ms(t['p50_ms'])} | "
            f"{_ms(t['p99_ms'])} | {t.get('mean_batch') or '-'} |"
            for t in tuning
        ]
    swaps = result.get("swaps")
    if swaps:
        steady = swaps["steady"]
        lines += [
            f"\nHot-swap under {swaps['rate_per_s']:.0f} req/s paced :predict: "
            f"{swaps['requests']} requests, {swaps['failed']} failed",
            "",
            f"steady p50/p99 {_ms(steady['p50_ms'])}/{_ms(steady['p99_ms'])} ms; around swaps "
            f"p99 median {_ms(swaps['swap_p99_median_ms'])} ms "
            f"(×{swaps['swap_p99_ratio_median']}), max {_ms(swaps['swap_p99_max_ms'])} ms "
            f"(×{swaps['swap_p99_ratio_max']}); between swaps p99 "
            f"{_ms(swaps['between_swaps']['p99_ms'])} ms",
            f"approval → first answer by the new version: median "
            f"{swaps['first_answer_s']['median']} s, max {swaps['first_answer_s']['max']} s",
            "",
            "| swap | version | approve HTTP ms | first answer s | switch pause ms | p50 ms "
            "| p99 ms | max ms | worker RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        rss = {m["after_swap"]: m["rss_bytes"] for m in swaps["memory"]}
        lines.append(f"| 0 | - | - | - | - | - | - | - | {rss[0] / 2**20:.0f} |")
        lines += [
            f"| {w['swap']} | {w['version']} | {w['approve_http_ms']:.0f} | "
            f"{w['first_answer_s']:.2f} | {_ms(_times_1000(w['worker_swap_pause_s']))} | "
            f"{_ms(w['p50_ms'])} | {_ms(w['p99_ms'])} | "
            f"{_ms(w['max_ms'])} | {rss[w['swap']] / 2**20:.0f} |"
            for w in swaps["swaps"]
        ]
        growth = swaps["rss_growth_first_to_last"]
        lines.append(
            "\nworker RSS after swap 1 → after the last: "
            + ("-" if growth is None else f"{growth * 100:+.1f} %")
        )
    return "\n".join(lines)


def code_state() -> dict[str, Any]:
    """The commit measured, and files changed since (other people keep working here)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "modified": git("status", "--short").splitlines()}


def versions() -> dict[str, str | None]:
    """Versions of the packages on the serving path."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/serving.py",
        description="Serving benchmark: verdicts/s and latency through the inference worker "
        "(TF Serving :predict and uploads) against the SavedModel called in-process on "
        "batches (the ceiling) and a naive one-request-at-a-time server; micro-batcher "
        "settings; hot-swaps under load; worker memory across swaps.",
    )
    parser.add_argument("--concurrency", default="1,4,16", help="closed-loop clients (1,4,16)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed window")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds before each")
    parser.add_argument(
        "--open-duration", type=float, default=15.0, help="seconds of each paced window"
    )
    parser.add_argument(
        "--image-sizes",
        default="1152x864,128x128",
        help="request images WxH, comma-separated; the first gets every measurement",
    )
    parser.add_argument("--pool", type=int, default=64, help="distinct images per size")
    parser.add_argument("--batch", type=int, default=16, help="batch of the in-process ceiling")
    parser.add_argument("--input-size", type=int, default=64, help="model input (px, square)")
    parser.add_argument("--train-images", type=int, default=360, help="simulated training parts")
    parser.add_argument("--train-epochs", type=int, default=6, help="epochs of the quick model")
    parser.add_argument("--store", type=Path, help="reuse this store's production version")
    parser.add_argument("--save-store", type=Path, help="keep the prepared store here")
    parser.add_argument(
        "--batcher",
        default="1:0,4:1,8:1,16:0,16:2,16:5,32:2",
        help="MAX_BATCH:MAX_WAIT_MS settings to try (16:0 is the product default)",
    )
    parser.add_argument("--swaps", type=int, default=20, help="versions approved under load")
    parser.add_argument("--swap-interval", type=float, default=8.0, help="seconds between swaps")
    parser.add_argument("--steady", type=float, default=20.0, help="paced seconds before swaps")
    parser.add_argument(
        "--load-fraction",
        type=float,
        default=0.5,
        help="paced load as a fraction of the service's best throughput",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=30.0,
        help="seconds between checks for other benchmarks (pgrep -f 'bench/|explore.py')",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="max seconds to wait for an idle machine after the others end (0: don't)",
    )
    parser.add_argument(
        "--swaps-only",
        type=float,
        metavar="RATE",
        help="only the hot-swap and memory phase, under RATE paced :predict requests/s "
        "(default batcher), e.g. to check a change to the swap path",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="do not wait for other benchmarks or an idle machine (for trying the script out; "
        "the numbers are then not worth keeping)",
    )
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--saved-model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        return args
    try:
        args.levels = [int(c) for c in args.concurrency.split(",")]
        args.sizes = [
            tuple(int(v) for v in s.lower().split("x")) for s in args.image_sizes.split(",")
        ]
        args.batchers = [
            (int(b), float(w)) for b, w in (s.split(":") for s in args.batcher.split(","))
        ]
    except ValueError:
        parser.error(
            "--concurrency is like 1,4,16, --image-sizes like 1152x864,128x128, "
            "--batcher like 16:2,32:5"
        )
    if min(args.levels) < 1 or args.duration <= 0 or args.pool < 1 or args.swaps < 1:
        parser.error("--concurrency, --duration, --pool and --swaps must be positive")
    if args.no_wait:
        args.poll, args.idle_timeout = 0.0, 0.0
    if DEFAULT_BATCHER not in args.batchers:
        args.batchers.insert(0, DEFAULT_BATCHER)
    args.current_size = ""
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.naive_server:
        naive_server(args.port, args.saved_model)
        return 0
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up on `kill` as on Ctrl-C
    started = datetime.now(UTC)
    waited = wait_for_others(args.poll)
    idle = common.wait_for_idle(args.idle_timeout, log=say) if args.idle_timeout > 0 else 0.0
    info = common.machine()
    info["packages"].update(versions())
    info["waited_for_others_s"] = round(waited, 1)
    info["waited_for_idle_s"] = round(idle, 1)
    say(f"machine: {common.describe(info)}")
    bench = Bench(args)
    result: dict[str, Any] = {
        "benchmark": "bench/serving.py",
        "command": " ".join([".venv/bin/python", "bench/serving.py", *(argv or sys.argv[1:])]),
        "started_at": started.isoformat(timespec="seconds"),
        "machine": info,
        "code": code_state(),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("naive_server", "port", "saved_model")
        },
        "rows": bench.rows,
    }
    result["settings"]["image_sizes"] = [f"{w}x{h}" for w, h in args.sizes]
    result["settings"]["batch"] = args.batch
    with tempfile.TemporaryDirectory(prefix="inspector-bench-serving-") as tmp:
        workdir = Path(tmp)
        try:
            run(bench, args, workdir, result)
        except Exception as exc:  # keep what was measured, say what broke
            import traceback

            traceback.print_exc()
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            stop_everything()
    result["notes"] = bench.notes
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = common.save_results("serving", result)
    say(report_tables(result))
    say(f"\nmachine: {common.describe(info)}; load average at end {os.getloadavg()}")
    if bench.notes:
        say("\nnote: these windows shared the machine:\n  " + "\n  ".join(bench.notes))
    say(f"results: {common.shown(out)}")
    if "error" in result:
        say(f"\nFAILED: {result['error']}")
        return 1
    return 0


def run(bench: Bench, args: argparse.Namespace, workdir: Path, result: dict[str, Any]) -> None:
    """Every phase, in order; fills ``result``."""
    from inspector import registry

    say("\npreparing the model version …")
    t0 = time.perf_counter()
    store, version, model_info = prepare_store(workdir, args)
    saved_model = registry.download_directory(
        store, version, "saved_model", workdir / "model" / "saved_model"
    )
    size_bytes = sum(p.stat().st_size for p in saved_model.rglob("*") if p.is_file())
    doc = registry.get_version(store, version)
    result["model"] = {
        **model_info,
        "version": version,
        "classes": doc["classes"],
        "architecture": (model_info.get("config") or {}).get("architecture"),
        "input_size": (model_info.get("config") or {}).get("image_size"),
        "saved_model_bytes": size_bytes,
        "prepare_seconds": round(time.perf_counter() - t0, 1),
    }
    say(
        f"  version {version} ({result['model']['architecture']}, "
        f"{result['model']['input_size']} px, classes {doc['classes']}) ready in "
        f"{result['model']['prepare_seconds']} s"
    )

    from inspector.export import ServingModel

    model = ServingModel(saved_model)
    pools = {}
    for w, h in args.sizes:
        pools[(w, h)] = make_pool((w, h), args.pool, seed=w * 7 + h)
        sizes = [len(p) for p in pools[(w, h)]]
        say(f"  {args.pool} request images of {w}x{h}: mean {np.mean(sizes) / 1024:.1f} KiB")
    result["images"] = {
        f"{w}x{h}": {"count": len(p), "mean_bytes": int(np.mean([len(x) for x in p]))}
        for (w, h), p in pools.items()
    }
    model.predict_bytes(pools[args.sizes[0]][: args.batch])  # trace once

    service = _track(Service(store.url, workdir / "service", {}))
    result["components"] = {}
    for w, h in args.sizes:
        result["components"][f"{w}x{h}"] = component_costs(
            model, pools[(w, h)], service.redis.url, workdir
        )
    say("\nstep costs, one thread, median ms:")
    for size, steps in result["components"].items():
        say(f"  {size}: " + "; ".join(f"{k} {v}" for k, v in steps.items()))

    if args.swaps_only:
        args.current_size = f"{args.sizes[0][0]}x{args.sizes[0][1]}"
        service.start_api()
        service.start_worker(*DEFAULT_BATCHER)
        say(
            f"\n[{args.current_size}] hot-swaps only: {args.swaps} approvals under "
            f"{args.swaps_only:g} req/s paced load (batcher 16:0)"
        )
        result["swaps"] = phase_swaps(
            bench, service, store, version, pools[args.sizes[0]], args.swaps_only
        )
        service.stop()
        return

    primary = args.sizes[0]
    top = [max(args.levels)]
    for size in args.sizes:
        args.current_size = f"{size[0]}x{size[1]}"
        levels = args.levels if size == primary else top
        say(f"\n[{args.current_size}] (a) in-process")
        phase_in_process(bench, model, pools[size], levels)
        say(f"\n[{args.current_size}] (c) naive server")
        naive_best = phase_naive(bench, saved_model, pools[size], levels, workdir)
        if size == primary:
            result["naive_best"] = {k: naive_best[k] for k in ("per_s", "p50_ms", "p99_ms")}

    say("\n(b) the service: Redis, inspector api, inspector worker inference")
    service.start_api()
    service.start_worker(*DEFAULT_BATCHER)
    for size in args.sizes:
        args.current_size = f"{size[0]}x{size[1]}"
        levels = args.levels if size == primary else top
        say(f"\n[{args.current_size}] (b) service, batcher {DEFAULT_BATCHER}")
        for clients in levels:
            bench.measure(
                "(b) service: POST :predict",
                Predict(service.port, pools[size]),
                clients,
                service.roots(),
                service,
                batcher="16:0",
            )
        upload = Upload(service.port, pools[size])
        for clients in levels:
            bench.measure(
                "(b) service: POST /v1/images",
                upload,
                clients,
                service.roots(),
                service,
                batcher="16:0",
            )

    args.current_size = f"{primary[0]}x{primary[1]}"
    pool = pools[primary]
    say(f"\n[{args.current_size}] micro-batcher settings, :predict x{top[0]}")
    tuning = []
    for max_batch, max_wait in args.batchers:
        if (max_batch, max_wait) == DEFAULT_BATCHER:
            row = next(
                r
                for r in bench.rows
                if r["path"] == "(b) service: POST :predict"
                and r["image_size"] == args.current_size
                and r["clients"] == top[0]
            )
        else:
            service.start_worker(max_batch, max_wait)
            row = bench.measure(
                f"(b) :predict, batcher {max_batch}:{max_wait:g}",
                Predict(service.port, pool),
                top[0],
                service.roots(),
                service,
                batcher=f"{max_batch}:{max_wait:g}",
            )
        tuning.append(
            {
                "max_batch": max_batch,
                "max_wait_ms": max_wait,
                **{k: row.get(k) for k in ("per_s", "p50_ms", "p99_ms", "mean_batch")},
            }
        )
    result["tuning"] = tuning
    best = max(tuning, key=lambda t: t["per_s"])
    result["best_batcher"] = best
    say(
        f"  best: max batch {best['max_batch']}, max wait {best['max_wait_ms']:g} ms "
        f"({best['per_s']} req/s)"
    )

    # p99 at half the best throughput, paced, for the default and the best setting.
    rate = round(best["per_s"] * args.load_fraction)
    paced: dict[str, Any] = {}
    for max_batch, max_wait in dict.fromkeys(
        [DEFAULT_BATCHER, (best["max_batch"], best["max_wait_ms"])]
    ):
        service.start_worker(max_batch, max_wait)
        key = f"{max_batch}:{max_wait:g}"
        paced[f":predict {key}"] = bench.measure_open(
            f"(b) :predict paced, batcher {key}",
            Predict(service.port, pool),
            rate,
            service.roots(),
            service,
            batcher=key,
        )
    upload_best = max(
        (
            r
            for r in bench.rows
            if r["path"] == "(b) service: POST /v1/images" and r["image_size"] == args.current_size
        ),
        key=lambda r: r["per_s"],
    )
    upload_rate = round(upload_best["per_s"] * args.load_fraction)
    if upload_rate >= 1:
        paced[f"/v1/images {key}"] = bench.measure_open(
            f"(b) /v1/images paced, batcher {key}",
            Upload(service.port, pool),
            upload_rate,
            service.roots(),
            service,
            batcher=key,
        )
    naive_rate = round(result["naive_best"]["per_s"] * args.load_fraction)
    if naive_rate >= 1:
        server = NaiveServer(saved_model, workdir).start()
        try:
            paced["naive"] = bench.measure_open(
                "(c) naive paced",
                Predict(server.port, pool),
                naive_rate,
                {"client (bench)": os.getpid(), "naive server": server.pid},
            )
        finally:
            server.stop()
            _started.remove(server)
    result["paced"] = {
        k: {
            "rate": v["rate"],
            **{m: v[m] for m in ("p50_ms", "p99_ms", "max_ms", "errors", "per_s")},
        }
        for k, v in paced.items()
    }

    say(
        f"\n[{args.current_size}] hot-swaps: {args.swaps} approvals under {rate} req/s paced "
        f"load (batcher {key})"
    )
    service.start_worker(best["max_batch"], best["max_wait_ms"])  # a fresh worker for memory
    result["swaps"] = phase_swaps(bench, service, store, version, pool, rate)
    service.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_everything()
        print(
            "\ninterrupted; every process the benchmark started has been stopped", file=sys.stderr
        )
        sys.exit(130)
