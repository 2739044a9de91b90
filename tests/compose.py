"""Reading docker-compose.yml the way `docker compose` would, for tests on a machine
without a Docker engine: YAML anchors and merge keys, then ${VAR} interpolation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


class MissingVariable(ValueError):
    """A ${VAR:?message} whose variable is not set."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Substitute ${VAR}, ${VAR:-default} and ${VAR:?error} everywhere in ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def load(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file with anchors merged and, if ``env`` is given, variables substituted."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(doc, env) if env is not None else doc


SAMPLE_ENV = {
    "MINIO_ROOT_USER": "inspector-admin",
    "MINIO_ROOT_PASSWORD": "a-long-random-minio-secret",
    "INSPECTOR_BUCKET": "inspector",
    "INSPECTOR_TOKENS": (
        "cam:camera:0123456789abcdef01,ops:operator:0123456789abcdef02,adm:admin:0123456789abcdef03"
    ),
}
