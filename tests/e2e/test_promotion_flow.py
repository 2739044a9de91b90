"""The whole loop with real processes: simulated parts → ingest → train → assess (evaluate,
gate, infra check) → approve → production moves → audit shows it → rollback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inspector import registry
from tests.factories import upload_parts
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

POLICY = """
[floors]
accuracy = 0.3

[significance]
alpha = 0.05
require = "not_worse"
"""


def cli(base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inspector", *args, "--url", base_url],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_assess_approve_audit_rollback(tmp_path, redis_server, local_store):
    policy = tmp_path / "gate-policy.toml"
    policy.write_text(POLICY)
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp_path),
        "INSPECTOR_STORE_URL": local_store.url,
        "INSPECTOR_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/9",
        "INSPECTOR_GATE_POLICY": str(policy),
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp_path).start()
    ingest = ServiceProcess(
        "ingest", ["worker", "ingest", "--concurrency", "1"], env, tmp_path
    ).start()
    trainer = ServiceProcess("train", ["worker", "train"], env, tmp_path).start()
    base_url = f"http://127.0.0.1:{port}"
    # Fewer steps than the real-line floors (1,000 and 400 a class from scratch, 300 warm):
    # enough for 32-px simulated parts to pass the shipped gate's floors; the flow is the
    # point.
    train_args = (
        *("train", "--epochs", "8", "--image-size", "32", "--set", "patience=8"),
        *("--set", "min_steps=400", "--set", "min_steps_per_class=0"),
        *("--set", "fine_tune_min_steps=120"),
        # The second run is a warm start whatever it learns (this test follows its version
        # through the gate and approval); the fallback to a run from scratch is tested in
        # tests/unit/test_training.py.
        *("--set", "new_class_recall=0", "--set", "kept_class_recall=0"),
    )
    try:
        api.wait_http(f"{base_url}/healthz")
        upload_parts(base_url, {"ok": 0.34, "pit": 0.33, "scratch": 0.33}, 240, seed=41)
        wait_for(
            lambda: sum(1 for _ in local_store.list("index/ingested/")) == 240,
            120,
            "ingest",
            ingest.log,
        )
        trainer.wait_for_output("ready.")

        first = cli(base_url, *train_args)
        assert first.returncode == 0, first.stdout + first.stderr + trainer.output[-3000:]
        assert "produced model version 1" in first.stdout
        listed = cli(base_url, "models", "list")
        assert "v1" in listed.stdout and "awaiting_approval" in listed.stdout, listed.stdout
        assert "No production model yet" in listed.stdout
        approved = cli(base_url, "models", "approve", "1", "--reason", "first model for line 1")
        assert approved.returncode == 0 and "now production" in approved.stdout, approved.stderr

        upload_parts(base_url, {"crack": 1.0}, 90, seed=42)
        wait_for(
            lambda: sum(1 for _ in local_store.list("index/ingested/")) == 330,
            120,
            "ingest",
            ingest.log,
        )
        second = cli(base_url, *train_args)
        assert second.returncode == 0, second.stdout + second.stderr + trainer.output[-3000:]
        assert "produced model version 2" in second.stdout
        version = registry.get_version(local_store, 2)
        assert version["parent_version"] == 1 and version["classes"][-1] == "crack"
        shown = cli(base_url, "models", "show", "2")
        assert (
            shown.returncode == 0
            and "production" in shown.stdout
            and "infra check: ok" in shown.stdout
        )
        state = registry.read_state(local_store).state_of(2)
        if state == "gate_failed":
            override = cli(
                base_url,
                "models",
                "approve",
                "2",
                "--override",
                "--reason",
                "new defect class needed",
            )
            assert override.returncode == 0, override.stderr
        else:
            assert state == "awaiting_approval", shown.stdout
            approve = cli(base_url, "models", "approve", "2", "--reason", "learns cracks")
            assert approve.returncode == 0, approve.stderr
        assert registry.alias(local_store, "production") == 2

        audit = cli(base_url, "audit")
        assert audit.returncode == 0
        assert (
            "first model for line 1" in audit.stdout
            and "v2 awaiting_approval → production" in audit.stdout
        ) or ("(override)" in audit.stdout)
        rolled = cli(base_url, "models", "rollback", "--reason", "false rejects at station 2")
        assert rolled.returncode == 0 and "production is version 1 again" in rolled.stdout, (
            rolled.stderr
        )
        assert registry.alias(local_store, "production") == 1
        last = registry.audit_log(local_store)[-1]
        assert (last["action"], last["version"], last["actor"], last["production_before"]) == (
            "rollback",
            1,
            "dev-operator",
            2,
        )
    finally:
        for process in (trainer, ingest, api):
            process.stop()
