"""The service started the way `make run` starts it, played by `inspector simulate`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from storage.local import LocalStore
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _child_pids(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", output)}


@pytest.fixture
def service(tmp_path):
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path / "data"),
        "INSPECTOR_API_PORT": str(port),
        "INSPECTOR_EMBEDDED_REDIS_PORT": str(free_port()),
    }
    run = ServiceProcess("run", ["run"], env, tmp_path).start()
    base_url = f"http://127.0.0.1:{port}"
    run.wait_http(f"{base_url}/readyz", timeout=90)
    run.wait_for_output("all 6 processes are up")
    yield run, base_url, tmp_path / "data"
    run.stop()


def test_simulated_line_is_accepted_and_ingested_then_ctrl_c_stops_everything(service):
    run, base_url, data_dir = service
    count = 40
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inspector",
            "simulate",
            "--url",
            base_url,
            "--rate",
            "20",
            "--count",
            str(count),
            "--size",
            "128",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{count} accepted" in result.stdout

    store = LocalStore(data_dir / "store")
    wait_for(lambda: sum(1 for _ in store.list("index/ingested/")) == count, 90, "ingest", run.log)
    labelled = httpx.get(
        f"{base_url}/v1/classes", headers={"Authorization": "Bearer dev-operator"}
    ).json()
    assert {c["name"] for c in labelled} >= {"ok", "scratch", "pit", "crack", "stain"}

    classes = subprocess.run(
        [sys.executable, "-m", "inspector", "classes", "list", "--url", base_url],
        capture_output=True,
        text=True,
    )
    assert classes.returncode == 0 and "scratch" in classes.stdout

    pids = _child_pids(run.output)
    assert set(pids) == {
        "redis",
        "api",
        "worker-ingest",
        "worker-inference",
        "worker-train",
        "beat",
    }
    assert run.proc is not None
    run.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground process
    assert run.proc.wait(60) == 0
    assert not [name for name, pid in pids.items() if _alive(pid)]


def test_a_child_that_dies_takes_the_whole_service_down_cleanly(service):
    run, _base_url, _data_dir = service
    pids = _child_pids(run.output)
    os.kill(pids["worker-ingest"], signal.SIGKILL)
    assert run.proc is not None
    assert run.proc.wait(60) == 1
    assert "worker-ingest exited" in run.output
    assert not [name for name, pid in pids.items() if _alive(pid)]
