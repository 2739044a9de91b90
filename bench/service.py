"""`inspector run` for benchmarks: the whole service as `make run` starts it, on a
temporary data directory and free ports."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port


class Service:
    """`inspector run` on a temporary data directory and free ports; stopped with SIGINT."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.data_dir = workdir / "data"
        env = {
            "INSPECTOR_DATA_DIR": str(self.data_dir),
            "INSPECTOR_API_PORT": str(self.port),
            "INSPECTOR_EMBEDDED_REDIS_PORT": str(free_port()),
            **env,
        }
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process = ServiceProcess("inspector-run", ["run"], env, workdir)

    def start(self) -> None:
        self.process.start()
        self.process.wait_http(f"{self.base_url}/readyz", timeout=120)
        self.process.wait_for_output("processes are up", timeout=60)
        # The supervisor reports "up" once the processes exist; wait until every Celery
        # worker has booted too, so no start-up work lands in a timed window. Celery logs
        # "] ingest@host ready."; the inference worker "inference@host:pid ready (…)".
        wait_for(
            lambda: len(set(re.findall(r"\b(\w+)@\S+ ready\b", self.process.output))) >= 3,
            60,
            "the ingest, train and inference workers to be ready",
            self.process.log,
        )

    @property
    def pid(self) -> int:
        """The supervisor's pid (every other process of the service descends from it)."""
        assert self.process.proc is not None, "not started"
        return self.process.proc.pid

    @property
    def children(self) -> dict[str, int]:
        """The supervisor's children by name, as it logged them."""
        found = re.findall(r"started (\S+) \(pid (\d+)\)", self.process.output)
        return {name: int(pid) for name, pid in found}

    def stop(self) -> None:
        """SIGINT (what Ctrl-C sends `make run`), wait; kill whatever is left, by pid."""
        proc = self.process.proc
        if proc is None:
            return
        children = self.children
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                print("  inspector run did not stop within 60 s; killing it", file=sys.stderr)
                self.process.kill()
        for name, pid in children.items():
            if _alive(pid):
                print(f"  {name} (pid {pid}) outlived the supervisor; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # each child leads its own session


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
