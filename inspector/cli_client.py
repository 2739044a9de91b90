"""What every client command of `inspector` shares: the API's URL and a token as options,
the HTTP call that turns an API error into one line saying what to do, and JSON output.
The client commands talk to a running service over its HTTP API, as any client would."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import httpx
import typer

from inspector.config import DEV_TOKENS, Settings, get_settings, parse_tokens

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="INSPECTOR_API_URL", help="base URL of the Inspector API")
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="INSPECTOR_TOKEN", help="bearer token (dev mode: a built-in one)"
    ),
]
DEFAULT_URL = "http://127.0.0.1:8000"


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error and exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def settings() -> Settings:
    """The service's settings, or a clear error where the environment is invalid."""
    try:
        return get_settings()
    except ValueError as exc:
        fail(str(exc))


def token_for(given: str | None, role: str) -> str:
    """``given``, else in dev mode the built-in token of ``role``, else a clear error."""
    if given:
        return given
    if settings().env == "dev":
        return next(g.secret for g in parse_tokens(DEV_TOKENS) if g.role == role)
    fail(f"set INSPECTOR_TOKEN (or --token) to a token with the {role} role")


def request(method: str, url: str, token: str, path: str, **kwargs: Any) -> Any:
    """The API's JSON answer to one call, or its error as one line, and exit."""
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the API at {url}: {exc}; is the service running (`make run`)?")
    if response.status_code >= 400:
        try:
            err = response.json()["error"]
            fail(f"{response.status_code} {err['code']}: {err['message']}")
        except (ValueError, KeyError, TypeError):
            fail(f"{response.status_code}: {response.text[:200]}")
    return response.json()


def print_json(doc: Any) -> None:
    """``doc`` as indented JSON on standard output."""
    import json

    typer.echo(json.dumps(doc, indent=2))


def require_api(url: str) -> None:
    """Fail at once, saying what to do, when nothing answers at ``url``: the simulator
    retries each upload, which against a wrong address would look like a hang."""
    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        fail(
            f"no Inspector API answers at {url} ({exc.__class__.__name__}: {exc}); "
            "start it with `make run`, or pass --url / set INSPECTOR_API_URL"
        )
