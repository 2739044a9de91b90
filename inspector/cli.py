"""The `inspector` command. `inspector --help` lists the commands; each has `--help`.

Service commands (run, api, worker, beat) start processes; the others talk to a
running service over its HTTP API, exactly as any client would, so they need only
its URL and a token.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from inspector.config import DEV_TOKENS, Settings, get_settings, parse_tokens

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
runs_app = typer.Typer(help="Training runs.", no_args_is_help=True)
models_app = typer.Typer(
    help="The model registry: versions, reports, approvals, rollback.", no_args_is_help=True
)
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


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("INSPECTOR_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:
        _fail(str(exc))


def _token(token: str | None, role: str) -> str:
    if token:
        return token
    if _settings().env == "dev":
        return next(g.secret for g in parse_tokens(DEV_TOKENS) if g.role == role)
    _fail(f"set INSPECTOR_TOKEN (or --token) to a token with the {role} role")


def _request(method: str, url: str, token: str, path: str, **kwargs: Any) -> Any:
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            **kwargs,
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the API at {url}: {exc}; is the service running (`make run`)?")
    if response.status_code >= 400:
        try:
            err = response.json()["error"]
            _fail(f"{response.status_code} {err['code']}: {err['message']}")
        except (ValueError, KeyError, TypeError):
            _fail(f"{response.status_code}: {response.text[:200]}")
    return response.json()


def _print_json(doc: Any) -> None:
    import json

    typer.echo(json.dumps(doc, indent=2))


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


@app.command()
def simulate(
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    rate: Annotated[float, typer.Option(help="uploads per second; 0 = as fast as possible")] = 20.0,
    count: Annotated[int, typer.Option(min=1, help="parts to send")] = 500,
    labels: Annotated[bool, typer.Option(help="send each part's ground-truth label")] = True,
    mix: Annotated[
        str | None,
        typer.Option(help="class mix, e.g. ok=0.8,scratch=0.05,pit=0.05,crack=0.05,stain=0.05"),
    ] = None,
    size: Annotated[
        str, typer.Option(help="image side in pixels, or WIDTHxHEIGHT for non-square parts")
    ] = "256",
    defect_size: Annotated[
        str,
        typer.Option(help="normal (a share of the part) or small (a few pixels, any image size)"),
    ] = "normal",
    image_format: Annotated[str, typer.Option("--format", help="jpeg, png, bmp or tiff")] = "jpeg",
    concurrency: Annotated[int, typer.Option(min=1, help="parallel uploads")] = 8,
    line: Annotated[str, typer.Option(help="line id sent with each part")] = "line-1",
    station: Annotated[str, typer.Option(help="station id")] = "station-1",
    camera: Annotated[str, typer.Option(help="camera id")] = "cam-1",
    seed: Annotated[int, typer.Option(help="random seed (same seed, same parts)")] = 0,
) -> None:
    """Play a production line: draw parts with defects and upload them like a camera."""
    from inspector import simulate as sim

    try:
        parsed_mix = sim.parse_mix(mix) if mix else None
        dims = sim.parse_size(size)
    except ValueError as exc:
        _fail(str(exc))
    if defect_size not in sim.DEFECT_SIZES:
        _fail(f"unknown defect size {defect_size!r}; use {' or '.join(sim.DEFECT_SIZES)}")
    if image_format not in ("jpeg", "png", "bmp", "tiff"):
        _fail(f"unknown format {image_format!r}; use jpeg, png, bmp or tiff")
    secret = _token(token, "camera")
    _require_api(url)
    last = [0.0]

    def progress(report: sim.SimulationReport) -> None:
        done = report.accepted + report.duplicates + sum(report.rejected.values()) + report.failed
        if done == count or report.elapsed - last[0] >= 0.5:
            last[0] = report.elapsed
            eta = (count - done) / report.rate if report.rate > 0 else 0.0
            typer.echo(
                f"\r{done}/{count} sent  {report.rate:5.1f}/s  accepted {report.accepted}  "
                f"rejected {sum(report.rejected.values())}  failed {report.failed}  "
                f"ETA {eta:4.0f}s",
                nl=False,
                err=True,
            )

    report = sim.run_simulation(
        url,
        secret,
        count=count,
        rate=rate or None,
        concurrency=concurrency,
        labels=labels,
        mix=parsed_mix,
        size=dims,
        defect_size=defect_size,
        fmt=image_format,
        line=line,
        station=station,
        camera_id=camera,
        seed=seed,
        progress=progress,
    )
    typer.echo("", err=True)
    typer.echo(report.summary())
    if report.failed or report.rejected:
        raise typer.Exit(1)


def _require_api(url: str) -> None:
    """Fail at once, saying what to do, when nothing answers at ``url``: the simulator
    retries each upload, which against a wrong address would look like a hang."""
    import httpx

    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        _fail(
            f"no Inspector API answers at {url} ({exc.__class__.__name__}: {exc}); "
            "start it with `make run`, or pass --url / set INSPECTOR_API_URL"
        )


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


# --- training ------------------------------------------------------------------------------


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


@app.command()
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
    import time

    overrides = _parse_overrides(set_ or [])
    for key, value in (
        ("epochs", epochs),
        ("architecture", architecture),
        ("image_size", image_size),
        ("channels", channels),
    ):
        if value is not None:
            overrides[key] = value
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
    version = (run.get("result") or {}).get("version")
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


# --- the registry ---------------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", envvar="INSPECTOR_MODEL_NAME", help="model name")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")]


@models_app.command("list")
def models_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Every version with its state, aliases and the gate's verdict."""
    doc = _request("GET", url, _token(token, "operator"), "/v1/models")
    for row in doc["versions"]:
        if row["version"] is None:
            typer.echo(f"{'-':>4}  {'training':<18} run {row['run_id']} by {row['requested_by']}")
            continue
        aliases = f"[{', '.join(row['aliases'])}] " if row["aliases"] else ""
        accuracy = (row.get("heldout") or {}).get("accuracy")
        verdict = (row.get("report") or {}).get("sentence", "")
        typer.echo(f"v{row['version']:<3}  {row['state']:<18} {aliases}acc {accuracy}  {verdict}")


@models_app.command("show")
def models_show(
    version: Annotated[int, typer.Argument(help="version number")],
    model: ModelOpt = "inspector",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """A version: state, data, and its report (metrics beside production, every gate check)."""
    from inspector.gating import Check, summarize

    secret = _token(token, "operator")
    view = _request("GET", url, secret, f"/v1/models/{model}/versions/{version}")
    typer.echo(f"version {version}: {view['state']} {' '.join(view['aliases'])}")
    typer.echo(
        f"classes: {', '.join(view['classes'] or [])}; parent: {view['parent_version']}; "
        f"snapshot {view['snapshot_id']}"
    )
    _echo_operating_point(view)
    if "report" not in view:
        typer.echo("not assessed yet")
        return
    report = _request("GET", url, secret, f"/v1/models/{model}/versions/{version}/report")
    if report["candidate"] is None:
        typer.echo(report["sentence"])
        return
    candidate = report["candidate"]["slices"]["heldout"]
    production = (report.get("production") or {}).get("slices", {}).get("heldout")
    typer.echo(f"\n{'held-out':<22}{'candidate':>12}{'production':>12}")
    for key in ("count", "accuracy", "macro_f1", "escape_rate", "false_reject_rate", "ece"):
        theirs = production[key] if production else "-"
        typer.echo(f"{key:<22}{candidate[key]:>12}{theirs:>12}")
    trade = (candidate.get("detection") or {}).get("trade_off") or []
    if trade:
        typer.echo("\nmoving the threshold (held-out):  threshold  escape  false reject")
        for row in trade:
            typer.echo(
                f"{'':34}{row['threshold']:>9.3f}  {_rate(row['escape_rate']):>6}"
                f"  {_rate(row['false_reject_rate']):>12}"
            )
    typer.echo("\n" + summarize([Check(**c) for c in report["decision"]["checks"]]))
    typer.echo(
        "\ninfra check: "
        + ("ok" if report["infra_check"].get("ok") else str(report["infra_check"].get("error")))
    )
    typer.echo(report["sentence"])
    typer.echo(f"report page: {url.rstrip('/')}/v1/models/{model}/versions/{version}/report.html")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _echo_operating_point(view: dict[str, Any]) -> None:
    """The input, the threshold it judges at now, and how that was chosen."""
    spec = view.get("input") or {}
    if "height" in spec:
        typer.echo(f"input: {spec['height']}×{spec['width']}×{spec['channels']} (letterboxed)")
    point = view.get("operating_point")
    if point is None:
        return
    threshold = view.get("threshold")
    moved = threshold != point.get("threshold")
    typer.echo(
        f"threshold on P(defect): {threshold}"
        + (
            f" (moved by an operator; chosen at training: {point.get('threshold')})"
            if moved
            else ""
        )
        + f"; target escape rate {_rate(point.get('target_escape_rate'))}"
    )
    typer.echo(f"  {point.get('note')}")


@models_app.command("approve")
def models_approve(
    version: Annotated[int, typer.Argument(help="version number")],
    reason: ReasonOpt,
    override: Annotated[
        bool, typer.Option(help="admins: promote a version that failed the gate")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="judge parts defective from this P(defect) on (default: the version's own, "
            "chosen at training for INSPECTOR_TARGET_ESCAPE_RATE; see `models show`)",
        ),
    ] = None,
    model: ModelOpt = "inspector",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Approve a candidate: it becomes production (operators; --override needs an admin)."""
    secret = _token(token, "admin" if override else "operator")
    body: dict[str, Any] = {"reason": reason, "override": override}
    if threshold is not None:
        body["threshold"] = threshold
    doc = _request("POST", url, secret, f"/v1/models/{model}/versions/{version}:approve", json=body)
    moved = doc["event"].get("threshold")
    typer.echo(
        f"version {version} is now {doc['version']['state']} (audit #{doc['event']['seq']})"
        + (
            f", judging at threshold {moved} (was {doc['event']['threshold_before']})"
            if moved
            else ""
        )
    )


@models_app.command("reject")
def models_reject(
    version: Annotated[int, typer.Argument(help="version number")],
    reason: ReasonOpt,
    model: ModelOpt = "inspector",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Reject a candidate (operators)."""
    doc = _request(
        "POST",
        url,
        _token(token, "operator"),
        f"/v1/models/{model}/versions/{version}:reject",
        json={"reason": reason},
    )
    typer.echo(f"version {version} is now {doc['version']['state']} (audit #{doc['event']['seq']})")


@models_app.command("evaluate")
def models_evaluate(
    version: Annotated[int, typer.Argument(help="version number")],
    model: ModelOpt = "inspector",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Assess a candidate again, against the current production model."""
    _request(
        "POST", url, _token(token, "operator"), f"/v1/models/{model}/versions/{version}:evaluate"
    )
    typer.echo(
        f"version {version} queued for a new assessment; see `inspector models show {version}`"
    )


@models_app.command("rollback")
def models_rollback(
    reason: ReasonOpt,
    model: ModelOpt = "inspector",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Put the previous production version back, in one step."""
    doc = _request(
        "POST",
        url,
        _token(token, "operator"),
        f"/v1/models/{model}:rollback",
        json={"reason": reason},
    )
    typer.echo(
        f"production is version {doc['aliases'].get('production')} again "
        f"(was {doc['event']['production_before']}; audit #{doc['event']['seq']})"
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
