"""`inspector train` and `inspector runs`: start a training run on a running service and
follow it (a progress bar with its phase, epoch and ETA), list runs, show one."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from inspector.cli_client import DEFAULT_URL, TokenOpt, UrlOpt
from inspector.cli_client import fail as _fail
from inspector.cli_client import print_json as _print_json
from inspector.cli_client import request as _request
from inspector.cli_client import token_for as _token

runs_app = typer.Typer(help="Training runs.", no_args_is_help=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(run: dict[str, Any], width: int = 24) -> str:
    """One line describing a run's state and progress, for a terminal."""
    state = run.get("state", "?")
    progress = run.get("progress") or {}
    phase = progress.get("phase")
    if state != "running" or not phase:
        return f"{run['run_id']}  {state}"
    if phase != "training" or "batch" not in progress:
        detail = f" ({progress['images']} images)" if "images" in progress else ""
        return f"{run['run_id']}  {phase}{detail}…"
    done = (progress["epoch"] - 1) * progress["batches"] + progress["batch"]
    total = progress["epochs"] * progress["batches"]
    filled = int(width * done / max(total, 1))
    return (
        f"[{'#' * filled}{'-' * (width - filled)}] epoch {progress['epoch']}/{progress['epochs']}  "
        f"batch {progress['batch']}/{progress['batches']}  loss {progress['loss']:.4f}  "
        f"ETA {_duration(progress.get('eta_seconds'))}"
    )


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    import json

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail(f"--set {pair!r}: use key=value, e.g. --set learning_rate=0.0005")
        try:
            overrides[key] = json.loads(raw)
        except ValueError:
            overrides[key] = raw
    return overrides


def _result_lines(run: dict[str, Any]) -> list[str]:
    result = run.get("result") or {}
    if run["state"] == "failed":
        return [f"run {run['run_id']} failed: {result.get('code')}: {result.get('message')}"]
    version = run.get("version") or {}
    heldout = version.get("heldout") or {}
    lines = [
        f"run {run['run_id']} produced model version {result.get('version')} "
        f"in {_duration(result.get('seconds'))}"
    ]
    if heldout:
        lines.append(
            f"held-out accuracy {heldout.get('accuracy')} on {heldout.get('count')} images "
            f"(TFLite {heldout.get('tflite_accuracy')})"
        )
    if version:
        lines.append(
            f"classes: {', '.join(version.get('classes', []))}; "
            f"parent: {version.get('parent_version')}"
        )
    return lines


def train(
    parent: Annotated[
        str, typer.Option(help="warm start from: production, none, or a version number")
    ] = "production",
    epochs: Annotated[int | None, typer.Option(min=1, help="at most this many epochs")] = None,
    architecture: Annotated[
        str | None, typer.Option(help="fcn16 (the default), compact_cnn or mobilenet_v3_small")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="the model input's longer side in pixels (default: chosen from the data)"
        ),
    ] = None,
    channels: Annotated[int | None, typer.Option(help="1 (gray) or 3 (colour)")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="any other setting, key=value (e.g. learning_rate=0.0005)"),
    ] = None,
    reason: Annotated[str, typer.Option(help="why, for the record")] = "",
    wait: Annotated[
        bool, typer.Option(help="follow the run and its assessment until they end")
    ] = True,
    model: Annotated[
        str, typer.Option("--model", envvar="INSPECTOR_MODEL_NAME", help="model name")
    ] = "inspector",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Start a training run now (the train worker runs it), follow its progress, then its
    assessment against production."""
    overrides = _overrides(set_ or [], epochs, architecture, image_size, channels)
    secret = _token(token, "operator")
    run = _request(
        "POST",
        url,
        secret,
        "/v1/training-runs",
        json={"parent": parent, "reason": reason, "config": overrides},
    )
    typer.echo(f"training run {run['run_id']} queued")
    if not wait:
        return
    version = _follow_run(url, secret, run)
    _follow_assessment(url, secret, model, version)


def _overrides(
    pairs: list[str],
    epochs: int | None,
    architecture: str | None,
    image_size: int | None,
    channels: int | None,
) -> dict[str, Any]:
    """The run's config overrides: the ``--set`` pairs, then the options given by name."""
    overrides = _parse_overrides(pairs)
    for key, value in (
        ("epochs", epochs),
        ("architecture", architecture),
        ("image_size", image_size),
        ("channels", channels),
    ):
        if value is not None:
            overrides[key] = value
    return overrides


def _follow_run(url: str, secret: str, run: dict[str, Any]) -> Any:
    """Show the run's progress until it ends, then its result; exit 1 if it failed.

    Returns the model version it produced.
    """
    while True:
        run = _request("GET", url, secret, f"/v1/training-runs/{run['run_id']}")
        if run["state"] in ("succeeded", "failed"):
            break
        typer.echo("\r" + progress_line(run).ljust(100), nl=False, err=True)
        time.sleep(1)
    typer.echo("", err=True)
    for line in _result_lines(run):
        typer.echo(line)
    if run["state"] == "failed":
        raise typer.Exit(1)
    return (run.get("result") or {}).get("version")


def _follow_assessment(url: str, secret: str, model: str, version: Any) -> None:
    """Wait while the new version is assessed against production, then print the verdict."""
    view = _request("GET", url, secret, f"/v1/models/{model}/versions/{version}")
    while view["state"] == "evaluating":
        typer.echo(f"\rassessing version {version} against production…", nl=False, err=True)
        time.sleep(1)
        view = _request("GET", url, secret, f"/v1/models/{model}/versions/{version}")
    typer.echo("", err=True)
    verdict = (view.get("report") or {}).get("sentence", "")
    typer.echo(f"version {version} is {view['state']}: {verdict}")
    if view["state"] == "awaiting_approval":
        typer.echo(
            f"review it: inspector models show {version}; "
            f"then inspector models approve {version} --reason …"
        )


@runs_app.command("list")
def runs_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Training runs, newest first."""
    for run in _request("GET", url, _token(token, "operator"), "/v1/training-runs"):
        result = run.get("result") or {}
        outcome = (
            f"version {result['version']}" if result.get("version") else result.get("code", "")
        )
        typer.echo(f"{run['run_id']}  {run['state']:<10} {run['requested_by']:<12} {outcome}")


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="the id `inspector train` printed")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """One run: state, progress, result."""
    _print_json(_request("GET", url, _token(token, "operator"), f"/v1/training-runs/{run_id}"))
