"""The `inspector` command. `inspector --help` lists the commands; each has `--help`.

Service commands (run, api, worker, beat) start processes; the others talk to a
running service over its HTTP API, exactly as any client would, so they need only
its URL and a token (inspector.cli_client). `inspector train` and `runs` live in
inspector.cli_training, `inspector models` in inspector.cli_models, `inspector simulate` in
inspector.cli_simulate.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from inspector.cli_client import DEFAULT_URL, TokenOpt, UrlOpt
from inspector.cli_client import fail as _fail
from inspector.cli_client import print_json as _print_json
from inspector.cli_client import request as _request
from inspector.cli_client import settings as _settings
from inspector.cli_client import token_for as _token
from inspector.cli_models import models_app
from inspector.cli_simulate import simulate
from inspector.cli_training import runs_app, train

app = typer.Typer(
    help="Inspector: industrial quality inspection that keeps learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
classes_app = typer.Typer(
    help="The class vocabulary (labels a part may get).", no_args_is_help=True
)
images_app = typer.Typer(help="Accepted images.", no_args_is_help=True)
golden_app = typer.Typer(
    help="Golden sets: images always held out and scored on their own.", no_args_is_help=True
)
app.add_typer(classes_app, name="classes")
app.add_typer(images_app, name="images")
app.add_typer(runs_app, name="runs")
app.add_typer(golden_app, name="golden")
app.add_typer(models_app, name="models")

WORKER_QUEUES = ("ingest", "inference", "train", "registry")
# TensorFlow is not fork-safe: the queues that run models use one process, no fork.
SOLO_QUEUES = {"train"}


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("INSPECTOR_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


# --- service processes ----------------------------------------------------------------


@app.command()
def run(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="where the store and Redis keep data [env INSPECTOR_DATA_DIR]"),
    ] = None,
    host: Annotated[str | None, typer.Option(help="API address [env INSPECTOR_API_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="API port [env INSPECTOR_API_PORT]")] = None,
    beat: Annotated[bool, typer.Option(help="run the periodic scheduler")] = True,
) -> None:
    """Start the whole service: Redis (embedded), API, workers and beat. Ctrl-C stops all."""
    _setup_logging()
    from inspector.supervisor import run_service

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if host is not None:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    settings = _settings().model_copy(update=overrides)
    raise typer.Exit(run_service(settings, beat=beat))


@app.command()
def api(
    host: Annotated[
        str | None, typer.Option(help="address to bind [env INSPECTOR_API_HOST]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port [env INSPECTOR_API_PORT]")] = None,
    workers: Annotated[int, typer.Option(help="HTTP worker processes")] = 1,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    _setup_logging()
    import uvicorn

    settings = _settings()
    uvicorn.run(
        "inspector.api.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _exec_celery(args: list[str]) -> NoReturn:
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", *args]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


@app.command()
def worker(
    queue: Annotated[str, typer.Argument(help=f"one of: {', '.join(WORKER_QUEUES)}")],
    concurrency: Annotated[
        int | None, typer.Option(help="worker processes (ingest; default: CPU count)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Run a Celery worker consuming one queue (inference and train run without forking)."""
    if queue not in WORKER_QUEUES:
        _fail(f"unknown queue {queue!r}; queues: {', '.join(WORKER_QUEUES)}")
    _settings()  # refuse bad settings before handing over to Celery
    if queue == "inference":  # a micro-batching consumer of its own (workers/inference.py)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "workers.inference"])
    args = [
        "worker",
        "-Q",
        queue,
        "-n",
        f"{queue}@%h",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    if queue in SOLO_QUEUES:
        args += ["--pool", "solo"]
    else:
        args += ["--pool", "prefork", "--concurrency", str(concurrency or os.cpu_count() or 2)]
    _exec_celery(args)


@app.command()
def beat(loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO") -> None:
    """Run the periodic scheduler (the ingest reconciler; nightly training later)."""
    settings = _settings()
    schedule = settings.data_dir.resolve() / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    _exec_celery(["beat", "-s", str(schedule), "--loglevel", loglevel])


# --- the production-line simulator --------------------------------------------------------


app.command()(simulate)  # inspector.cli_simulate: listed here, after beat


# --- clients of a running service ---------------------------------------------------------


@classes_app.command("list")
def classes_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """List the classes a label may name."""
    for cls in _request("GET", url, _token(token, "operator"), "/v1/classes"):
        kind = "defect" if cls["defect"] else "ok"
        typer.echo(f"{cls['name']:<16} {kind:<7} {cls['description']}")


@classes_app.command("add")
def classes_add(
    name: Annotated[str, typer.Argument(help="a-z 0-9 _, starting with a letter")],
    description: Annotated[str, typer.Option(help="what this defect looks like")] = "",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Add a defect class to the vocabulary (operators)."""
    cls = _request(
        "POST",
        url,
        _token(token, "operator"),
        "/v1/classes",
        json={"name": name, "description": description},
    )
    typer.echo(f"class {cls['name']!r} is in the vocabulary (added by {cls['added_by']})")


@app.command()
def label(
    image_id: Annotated[str, typer.Argument(help="the image id an upload returned")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="a class name")],
    reason: Annotated[str | None, typer.Option(help="why, for the history")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Give an image its ground-truth label (appends to its label history)."""
    body = _request(
        "PUT",
        url,
        _token(token, "operator"),
        f"/v1/images/{image_id}/label",
        json={"label": label_name, "reason": reason},
    )
    typer.echo(f"{image_id} is now {body['label']} ({len(body['history'])} label events)")


@images_app.command("show")
def images_show(
    image_id: Annotated[str, typer.Argument(help="the image id an upload returned")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Show an image's record, ingest state and labels."""
    _print_json(_request("GET", url, _token(token, "operator"), f"/v1/images/{image_id}"))


app.command()(train)  # inspector.cli_training: listed here, after label


@app.command()
def review(
    limit: Annotated[int, typer.Option(min=1, help="at most this many images")] = 20,
    list_only: Annotated[bool, typer.Option("--list", help="only list the queue")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Work through the review queue: label each image the model was unsure of.

    For each image it shows the verdict and where to see the image; type a class name
    to label it (it feeds the next training run), Enter to skip, q to stop.
    """
    secret = _token(token, "operator")
    queue = _request("GET", url, secret, f"/v1/review?limit={limit}")
    if not queue:
        typer.echo("the review queue is empty")
        return
    names = [c["name"] for c in _request("GET", url, secret, "/v1/classes")]
    labelled = 0
    for n, item in enumerate(queue, 1):
        top = sorted(item["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        odds = (
            f"P(defect) {item['p_defect']:.0%} at threshold {item['threshold']:.0%}"
            if item.get("threshold") is not None and "p_defect" in item
            else f"{item['confidence']:.0%}"
        )
        typer.echo(
            f"\n[{n}/{len(queue)}] {item['image_id']}\n  verdict {item['label']} "
            f"({odds}, version {item['model_version']}); "
            + ", ".join(f"{label} {p:.0%}" for label, p in top)
            + f"\n  image: {url.rstrip('/')}{item['image_url']}"
            + (
                f"\n  defect map: {url.rstrip('/')}/v1/images/{item['image_id']}/defect-map.png"
                if item.get("defect_map")
                else ""
            )
        )
        if list_only:
            continue
        while True:
            answer = typer.prompt(
                f"  label ({'/'.join(names)}; Enter skips, q quits)", default="", show_default=False
            )
            answer = answer.strip()
            if answer in ("", "q") or answer in names:
                break
            typer.echo(f"  {answer!r} is not a class; classes: {', '.join(names)}")
        if answer == "q":
            break
        if answer:
            _request(
                "PUT",
                url,
                secret,
                f"/v1/images/{item['image_id']}/label",
                json={"label": answer, "reason": "review queue"},
            )
            labelled += 1
    if not list_only:
        typer.echo(f"\n{labelled} labelled; they train with the next run")


@app.command()
def snapshot(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Freeze the labelled data now and show its counts per class and split."""
    doc = _request("POST", url, _token(token, "operator"), "/v1/snapshots")
    typer.echo(f"snapshot {doc['snapshot_id']}: {doc['total']} labelled images")
    typer.echo(doc["table"])


@golden_app.command("pin")
def golden_pin(
    name: Annotated[str, typer.Argument(help="a-z 0-9 _, starting with a letter")],
    image_ids: Annotated[list[str], typer.Argument(help="image ids to pin")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Pin a golden set (immutable; pin a new name to change it)."""
    doc = _request(
        "PUT",
        url,
        _token(token, "operator"),
        f"/v1/golden-sets/{name}",
        json={"image_ids": image_ids},
    )
    typer.echo(
        f"golden set {doc['name']!r}: {len(doc['image_ids'])} images, pinned by {doc['pinned_by']}"
    )


@app.command()
def audit(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Every registry change: who, when, from → to, reason, report."""
    for event in _request("GET", url, _token(token, "operator"), "/v1/audit"):
        typer.echo(
            f"#{event['seq']:<4} {event['at'][:19]}  {event['actor']:<14} {event['action']:<12} "
            f"v{event['version']} {event['from_state']} → {event['to_state']}"
            f"{'  (override)' if event.get('override') else ''}"
            + (
                f"  threshold {event['threshold_before']} → {event['threshold']}"
                if event.get("threshold") is not None
                else ""
            )
            + f"  report {event.get('report_id') or '-'}"
            f"  reason: {event['reason']}"
        )


@app.command()
def tensorboard(
    version: Annotated[int, typer.Argument(help="model version number")],
    logdir: Annotated[
        Path | None, typer.Option(help="where to put the logs [default: <data>/tensorboard/v<N>]")
    ] = None,
    port: Annotated[int, typer.Option(help="TensorBoard's port")] = 6006,
    launch: Annotated[bool, typer.Option(help="start TensorBoard on the logs")] = True,
) -> None:
    """Download a version's TensorBoard logs from the store and open TensorBoard on them."""
    from inspector import registry
    from inspector.config import open_configured_store

    settings = _settings()
    store = open_configured_store(settings)
    registry.get_version(store, version)
    target = logdir or settings.data_dir.resolve() / "tensorboard" / f"v{version}"
    registry.download_directory(store, version, "tensorboard", target)
    typer.echo(f"TensorBoard logs of version {version} are in {target}")
    if launch:
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(target),
                "--port",
                str(port),
            ],
        )


def main() -> None:
    """Console-script entry point."""
    app()
