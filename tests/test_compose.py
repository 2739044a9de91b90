"""docker-compose.yml, checked without a Docker engine: services, commands, healthchecks,
dependencies and required variables. The commands themselves run in
tests/integration/test_compose_commands.py."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from inspector.cli import WORKER_QUEUES, app
from inspector.config import Settings
from tests.compose import COMPOSE_FILE, ROOT, SAMPLE_ENV, MissingVariable, load

SERVICES = {
    "redis",
    "minio",
    "minio-init",
    "api",
    "worker-ingest",
    "worker-inference",
    "worker-train",
    "beat",
}
INSPECTOR_SERVICES = {"api", "worker-ingest", "worker-inference", "worker-train", "beat"}


@pytest.fixture(scope="module")
def compose():
    return load(SAMPLE_ENV)


def test_every_service_is_there(compose):
    assert set(compose["services"]) == SERVICES


@pytest.mark.parametrize("name", sorted(INSPECTOR_SERVICES))
def test_each_command_is_a_real_entry_point_of_the_project(compose, name):
    command = compose["services"][name]["command"]
    assert command[0] == "inspector"
    result = CliRunner().invoke(app, [*command[1:2], "--help"])
    assert result.exit_code == 0, result.output
    if command[1] == "worker":
        assert command[2] in WORKER_QUEUES


def test_one_worker_per_queue(compose):
    queues = {
        s["command"][2]
        for s in compose["services"].values()
        if s.get("command", [None, None])[1:2] == ["worker"]
    }
    assert queues == {"ingest", "inference", "train"}


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name != "minio-init":
            assert service["healthcheck"]["test"], name


def test_dependencies_wait_for_health(compose):
    services = compose["services"]
    for name in INSPECTOR_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for service in services.values():
        for target in service.get("depends_on", {}):
            assert target in services


@pytest.mark.parametrize("variable", sorted(SAMPLE_ENV))
def test_required_secrets_have_no_default(variable):
    env = {k: v for k, v in SAMPLE_ENV.items() if k != variable}
    with pytest.raises(MissingVariable, match=variable):
        load(env)


def test_no_secret_is_written_in_the_file():
    text = COMPOSE_FILE.read_text()
    assert "minioadmin" not in text
    assert "PASSWORD: " not in text.replace("PASSWORD: ${", "")


def test_the_services_environment_is_a_valid_production_configuration(compose, monkeypatch):
    env = compose["services"]["api"]["environment"]
    for service in INSPECTOR_SERVICES:
        assert compose["services"][service]["environment"] == env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert (
        env["INSPECTOR_GATE_POLICY"] == "/app/deploy/gate-policy.toml"
    )  # the Dockerfile copies it there
    monkeypatch.setenv("INSPECTOR_GATE_POLICY", str(ROOT / "deploy" / "gate-policy.toml"))
    settings = Settings()
    assert settings.env == "production"
    assert settings.resolved_store_url.startswith("s3://inspector/")
    assert settings.redis_url == "redis://redis:6379/0"


def test_the_build_and_init_files_exist(compose):
    build = compose["services"]["api"]["build"]
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    mount = compose["services"]["minio-init"]["volumes"][0].split(":")[0]
    assert (ROOT / mount).is_file()
