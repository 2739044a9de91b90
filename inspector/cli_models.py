"""`inspector models`: the registry as an operator sees it — versions, their reports
beside production, approval (with a moved threshold), rejection, evaluation, rollback."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from inspector.cli_client import DEFAULT_URL, TokenOpt, UrlOpt
from inspector.cli_client import request as _request
from inspector.cli_client import token_for as _token

models_app = typer.Typer(
    help="The model registry: versions, reports, approvals, rollback.", no_args_is_help=True
)

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
