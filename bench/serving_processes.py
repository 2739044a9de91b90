"""The processes around bench/serving.py: the ones it starts (Redis, ``inspector api`` and
``inspector worker inference`` as a Service, the naive server), each stopped on every
exit path, and the other benchmarks it waits for before timing anything.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request  # at module level: FastAPI resolves the annotation here

from bench.common import ROOT
from bench.serving_load import PREDICT_PATH

SCRIPT = Path(__file__).resolve().with_name("serving.py")  # runs the naive server too


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


def track(process: Any) -> Any:
    _started.append(process)
    return process


@atexit.register
def stop_everything() -> None:
    """Stop every process this benchmark started (newest first)."""
    while _started:
        with contextlib.suppress(Exception):
            _started.pop().stop()


def forget(process: Any) -> None:
    """Stop tracking ``process`` (stopped already); ValueError if it was not tracked."""
    _started.remove(process)


class NaiveServer:
    """The naive service: bench/serving.py run with ``--naive-server`` in its own process
    group."""

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
                    str(SCRIPT),
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
        track(self)
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
        self.redis = track(RedisServer(workdir=workdir / "redis").start())
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

        self.api = track(
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
        self.worker = track(ServiceProcess(name, ["worker", "inference"], env, self.workdir))
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
