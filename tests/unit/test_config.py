"""Settings: typed, from INSPECTOR_* variables, refusing placeholder secrets in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspector.config import Settings, parse_tokens

GOOD = "cam:camera:0123456789abcdef0,ops:operator:fedcba98765432100"


def test_defaults_run_embedded_with_dev_tokens(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.resolved_store_url == (tmp_path / "data" / "store").as_uri()
    assert settings.resolved_redis_url == "redis://127.0.0.1:6399/0"
    assert {g.role for g in settings.token_grants} == {"camera", "operator", "admin"}


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("INSPECTOR_STORE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("INSPECTOR_MAX_IMAGE_PIXELS", "1000")
    settings = Settings()
    assert settings.resolved_store_url == "s3://bucket/prefix"
    assert settings.max_image_pixels == 1000


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tokens": "cam:camera:dev-camera"},
        {"tokens": "cam:camera:short"},
        {
            "tokens": GOOD,
            "store_url": "s3://b",
            "s3_access_key": "minioadmin",
            "s3_secret_key": "minioadmin",
        },
    ],
    ids=["no tokens", "dev token", "short token", "minio default keys"],
)
def test_production_refuses_placeholders(overrides):
    with pytest.raises(ValidationError, match="refusing to start"):
        Settings(env="production", **overrides)


def test_production_with_real_secrets_starts():
    settings = Settings(
        env="production",
        tokens=GOOD,
        store_url="s3://b",
        s3_access_key="inspector",
        s3_secret_key="a-long-random-secret",
    )
    assert [g.principal for g in settings.token_grants] == ["cam", "ops"]


@pytest.mark.parametrize(
    "spec", ["cam:camera", "cam:pilot:secret", "c/m:camera:x", "a:camera:same,b:admin:same"]
)
def test_bad_token_specs_are_refused(spec):
    with pytest.raises(ValueError):
        parse_tokens(spec)


def test_a_broken_gate_policy_stops_the_service_at_start(tmp_path):
    bad = tmp_path / "policy.toml"
    bad.write_text("[floors]\nacuracy = 0.9\n")
    with pytest.raises(ValidationError, match="unknown keys"):
        Settings(gate_policy=str(bad))
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(gate_policy=str(tmp_path / "missing.toml"))
    assert Settings(gate_policy="").gate_policy == ""
