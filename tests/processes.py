"""Processes of the service itself (API, Celery workers, `inspector run`) for tests.

Each runs as a real subprocess in its own process group, with its output in a log
file whose tail is shown when something goes wrong.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def wait_for(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``check`` until it is true, or fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = (
        "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        if log and log.exists()
        else ""
    )
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


class ServiceProcess:
    """One `inspector …` command running as a subprocess."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        # Only the test's own configuration: nothing leaks in from the runner's INSPECTOR_*.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
        self.env = {**inherited, **env, "PYTHONUNBUFFERED": "1"}
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start it (again); output is appended to the log."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "inspector", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def output(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 60, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log."""
        wait_for(
            lambda: self.output.count(text) >= count, timeout, f"{self.name}: {text!r}", self.log
        )

    def wait_http(self, url: str, timeout: float = 60) -> None:
        """Wait until ``url`` answers 200."""

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}\n{self.output[-3000:]}"
                )
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, f"{self.name} at {url}", self.log)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to its whole process group."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process and every child it forked, as a power cut would."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait, SIGKILL if needed; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
