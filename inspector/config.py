"""One typed settings object for every process, read from ``INSPECTOR_*`` variables.

Build it with :func:`get_settings` (cached), never at import time, so tests and
subprocesses can set the environment first.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage import ObjectStore, open_store

Role = Literal["camera", "operator", "admin"]
ROLES: tuple[Role, ...] = ("camera", "operator", "admin")

# Tokens and keys that ship in examples or dev defaults. Outside dev mode they are refused,
# so a deployment cannot go live with a secret everyone knows.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "changethis",
        "secret",
        "password",
        "minioadmin",
        "dev-camera",
        "dev-operator",
        "dev-admin",
    }
)
MIN_SECRET_LENGTH = 16

DEV_TOKENS = (
    "dev-camera:camera:dev-camera,dev-operator:operator:dev-operator,dev-admin:admin:dev-admin"
)

_PRINCIPAL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class TokenGrant:
    """Who a bearer token belongs to and what it may do."""

    principal: str
    role: Role
    secret: str


def parse_tokens(spec: str) -> tuple[TokenGrant, ...]:
    """Parse ``name:role:secret`` entries separated by commas (or newlines)."""
    grants: list[TokenGrant] = []
    for raw in re.split(r"[,\n]", spec):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise ValueError(
                f"token entry {entry.split(':', 1)[0]!r}… must look like name:role:secret"
            )
        name, role, secret = (p.strip() for p in parts)
        if not _PRINCIPAL_RE.match(name):
            raise ValueError(f"token name {name!r} must be 1-64 of A-Z a-z 0-9 . _ @ -")
        if role not in ROLES:
            raise ValueError(f"token {name!r} has role {role!r}; roles are {', '.join(ROLES)}")
        grants.append(TokenGrant(name, role, secret))
    secrets = [g.secret for g in grants]
    if len(set(secrets)) != len(secrets):
        raise ValueError("two token entries share one secret; give each principal its own")
    return tuple(grants)


class Settings(BaseSettings):
    """Everything a process of Inspector can be told, with safe defaults for `make run`."""

    model_config = SettingsConfigDict(env_prefix="INSPECTOR_", extra="ignore")

    env: Literal["dev", "production"] = Field(
        "dev",
        description="dev allows built-in tokens and placeholder secrets; production refuses them",
    )
    data_dir: Path = Field(
        Path("data"), description="where the embedded store and Redis keep files"
    )

    # --- object store -------------------------------------------------------------------
    store_url: str = Field(
        "", description="file:///abs/dir or s3://bucket/prefix; default: <data_dir>/store"
    )
    s3_endpoint: str = Field("", description="http(s)://host:port of MinIO or another S3 server")
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    s3_timeout_seconds: float = Field(5.0, gt=0, description="connect timeout; reads get 6x this")

    # --- broker -------------------------------------------------------------------------
    redis_url: str = Field(
        "", description="redis://host:port/db; `inspector run` starts one when unset"
    )
    embedded_redis_port: int = Field(6399, ge=1, le=65535)
    broker_visibility_timeout: int = Field(
        3600, ge=1, description="seconds before an unacknowledged task is delivered again"
    )
    enqueue_timeout_seconds: float = Field(2.0, gt=0)

    # --- API ----------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    tokens: str = Field("", description="name:role:secret,… (roles: camera, operator, admin)")
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(50_000_000, ge=1)
    max_image_side: int = Field(20_000, ge=1)

    # --- ingest -------------------------------------------------------------------------
    canonical_size: int = Field(
        256, ge=16, le=4096, description="longest side of the canonical copy"
    )
    canonical_color: Literal["gray", "rgb"] = "rgb"
    ingest_max_retries: int = Field(8, ge=0)
    reconcile_interval_seconds: float = Field(60.0, gt=0)
    reconcile_grace_seconds: float = Field(
        30.0, ge=0, description="an image stored this long ago and not ingested is enqueued again"
    )

    # --- training -----------------------------------------------------------------------
    train_schedule: str = Field(
        "0 2 * * *", description="cron fields (UTC) of the nightly training run; see README"
    )
    train_architecture: str = "fcn16"
    train_image_size: int | None = Field(
        None, ge=32, le=1024, description="the model input's longer side; unset: from the data"
    )
    train_channels: Literal[1, 3] | None = Field(
        None, description="unset: 1 if all images are grey"
    )
    train_epochs: int = Field(30, ge=1)
    target_escape_rate: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="the share of defective parts a version may judge ok on its validation "
        "images; each version's threshold on P(defect) is chosen to meet it",
    )

    # --- serving ------------------------------------------------------------------------
    verdict_deadline_ms: float = Field(
        200.0, gt=0, description="how long an upload waits for its verdict before answering pending"
    )
    review_margin: float = Field(
        1.0,
        ge=0,
        description="verdicts whose P(defect) is within this many log-odds of the threshold "
        "are unsure and go to the review queue",
    )
    review_confidence_below: float = Field(
        0.6,
        ge=0,
        le=1,
        description="defective verdicts whose defect type has less than this share of "
        "P(defect) go to the review queue too",
    )
    inference_max_batch: int = Field(16, ge=1, le=1024)
    # 0: a batch is whatever is queued when the worker is free (bench/serving.py: 16:0
    # beat 16:2 on throughput and on p99 at half load).
    inference_max_wait_ms: float = Field(0.0, ge=0, description="how long a batch waits to fill")
    inference_poll_seconds: float = Field(
        5.0, gt=0, description="how often inference workers re-read the production alias"
    )
    shadow_mode: bool = Field(False, description="run the newest candidate beside production")
    inference_recycle_rss_growth: float = Field(
        0.5,
        gt=0,
        description="restart an inference worker whose memory grew by this fraction across swaps",
    )

    # --- drift --------------------------------------------------------------------------
    drift_interval_seconds: float = Field(600.0, gt=0, description="how often each line is checked")
    drift_threshold: float = Field(0.25, gt=0, description="PSI above which a line raises an alert")
    drift_window: int = Field(500, ge=10, description="recent images per line compared")
    drift_min_images: int = Field(
        200, ge=1, description="lines with fewer recent images are not judged (PSI noise ≈ 9/n)"
    )
    drift_starts_training: bool = Field(False, description="an alert starts a training run")

    # --- promotion ----------------------------------------------------------------------
    gate_policy: str = Field(
        "", description="path of the gate policy (TOML); empty: nothing is blessed"
    )
    auto_promote: bool = Field(False, description="promote a blessed candidate without an approval")
    infra_check_timeout_seconds: float = Field(180.0, gt=0)
    model_name: str = Field("inspector", description="the model's name in the TF Serving-style API")

    @field_validator("gate_policy")
    @classmethod
    def _gate_policy_parses(cls, value: str) -> str:
        # A broken policy file must stop the service at start, not leave candidates stuck.
        from inspector.gating import PolicyError, load_policy

        try:
            load_policy(value)
        except PolicyError as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("tokens")
    @classmethod
    def _tokens_parse(cls, value: str) -> str:
        parse_tokens(value)
        return value

    @model_validator(mode="after")
    def _refuse_placeholders_outside_dev(self) -> Settings:
        if self.env == "dev":
            return self
        problems: list[str] = []
        grants = parse_tokens(self.tokens)
        if not grants:
            problems.append("INSPECTOR_TOKENS is empty: set name:role:secret entries")
        for g in grants:
            if g.secret.lower() in PLACEHOLDER_SECRETS or len(g.secret) < MIN_SECRET_LENGTH:
                problems.append(
                    f"token of {g.principal!r} is a placeholder or shorter than "
                    f"{MIN_SECRET_LENGTH} characters"
                )
        if self.store_url.startswith("s3://"):
            secret = self.s3_secret_key.get_secret_value()
            if (
                secret.lower() in PLACEHOLDER_SECRETS
                or self.s3_access_key.lower() in PLACEHOLDER_SECRETS
            ):
                problems.append(
                    "INSPECTOR_S3_ACCESS_KEY / INSPECTOR_S3_SECRET_KEY are placeholders"
                )
        if problems:
            raise ValueError(
                "refusing to start with INSPECTOR_ENV=production: " + "; ".join(problems)
            )
        return self

    # --- derived ------------------------------------------------------------------------
    @property
    def resolved_store_url(self) -> str:
        """The store URL, defaulting to a directory under ``data_dir``."""
        if self.store_url:
            return self.store_url
        return (self.data_dir / "store").resolve().as_uri()

    @property
    def resolved_redis_url(self) -> str:
        """The Redis URL, defaulting to the embedded server `inspector run` starts."""
        return self.redis_url or f"redis://127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def models_dir(self) -> Path:
        """Local copies of the SavedModels an inference worker serves."""
        return self.data_dir.resolve() / "models"

    @property
    def cache_dir(self) -> Path:
        """Local cache of training images (content-addressed, safe to delete)."""
        return self.data_dir.resolve() / "cache" / "images"

    @property
    def token_grants(self) -> tuple[TokenGrant, ...]:
        """Configured tokens; in dev mode with none configured, the well-known dev tokens."""
        spec = self.tokens or (DEV_TOKENS if self.env == "dev" else "")
        return parse_tokens(spec)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()


def open_configured_store(settings: Settings) -> ObjectStore:
    """The object store the settings point at."""
    return open_store(
        settings.resolved_store_url,
        s3_endpoint=settings.s3_endpoint,
        s3_access_key=settings.s3_access_key,
        s3_secret_key=settings.s3_secret_key.get_secret_value(),
        s3_region=settings.s3_region,
        timeout=settings.s3_timeout_seconds,
    )
