"""The operator console: server-rendered pages, a little JavaScript, nothing from the
network. Sign in with an operator (or admin) token; camera tokens cannot open it. Every
action goes through the same domain functions as the API and carries the operator's
identity into the audit log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from inspector import drift, promotion, records, registry, report_html, training
from inspector.api.auth import Forbidden, Principal, Unauthorized, authenticate
from inspector.api.deps import SESSION_COOKIE, InferenceDep, SettingsDep, StoreDep, get_principal
from inspector.errors import InspectorError

log = logging.getLogger("inspector.api.console")
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "templates"))
CONSOLE_ROLES = ("operator", "admin")


def _operator(request: Request, settings: SettingsDep) -> Principal | Response:
    """The signed-in operator, or the response that sends the browser to sign in."""
    try:
        principal = get_principal(request, settings, request.headers.get("authorization"))
    except Unauthorized:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    if principal.role not in CONSOLE_ROLES:
        log.warning(
            "denied: %s (role %s) tried to open the console", principal.name, principal.role
        )
        return _page(request, "denied.html", None, status_code=403)
    return principal


def _page(
    request: Request, name: str, principal: Principal | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {"principal": principal, "path": request.url.path, **context},
        status_code=status_code,
    )


# --- signing in -------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in page."""
    return _page(request, "login.html", None, next=next if next.startswith("/") else "/")


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the token; an operator's gets a session cookie."""
    try:
        principal = authenticate(f"Bearer {token.strip()}", settings.token_grants)
    except Unauthorized:
        log.warning(
            "denied: console sign-in with an unknown token from %s",
            request.client.host if request.client else "?",
        )
        return _page(
            request,
            "login.html",
            None,
            status_code=401,
            error="That token is not valid.",
            next=next,
        )
    if principal.role not in CONSOLE_ROLES:
        log.warning(
            "denied: %s (role %s) tried to sign in to the console", principal.name, principal.role
        )
        return _page(
            request,
            "login.html",
            None,
            status_code=403,
            error="Camera tokens cannot open the console.",
            next=next,
        )
    response = RedirectResponse(next if next.startswith("/") else "/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    log.info("%s signed in to the console", principal.name)
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the session."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- pages ------------------------------------------------------------------------------


def _production_change(store: StoreDep) -> dict[str, Any] | None:
    for event in reversed(registry.audit_log(store)):
        if event["action"] in ("approve", "override", "rollback", "load_failed"):
            return event
    return None


def _lines(store: StoreDep, inference: InferenceDep) -> list[dict[str, Any]]:
    defects = {c.name for c in records.list_classes(store) if c.defect}
    counts = inference.verdict_counts()
    now = datetime.now(UTC)
    hours = [(now - timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in range(23, -1, -1)]
    lines = []
    for line in sorted({line for line, _ in counts}):
        parts = sum(n for (ln, _), n in counts.items() if ln == line)
        bad = sum(n for (ln, label), n in counts.items() if ln == line and label in defects)
        series = inference.hourly(line)
        lines.append(
            {
                "line": line,
                "parts": parts,
                "defects": bad,
                "rate": bad / parts if parts else 0.0,
                "by_label": {label: n for (ln, label), n in sorted(counts.items()) if ln == line},
                "hours": [(h[-2:], series.get(h, {"parts": 0, "defects": 0})) for h in hours],
            }
        )
    return lines


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request, store: StoreDep, settings: SettingsDep, inference: InferenceDep
) -> Response:
    """Each line: parts inspected, defect rate over the last day, drift; the model serving."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    return _page(
        request,
        "overview.html",
        principal,
        lines=_lines(store, inference),
        production=registry.alias(store, "production"),
        changed=_production_change(store),
        workers=inference.workers(),
        drift_checks={d["line"]: d for d in drift.latest(store)},
        alerts=drift.alerts(store, limit=5),
    )


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """The review queue: one click (or one key) per label."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    from inspector import verdicts

    return _page(
        request,
        "review.html",
        principal,
        items=verdicts.review_queue(store, 60),
        classes=records.list_classes(store),
    )


@router.get("/images/{image_id}", response_class=HTMLResponse)
def image_page(request: Request, image_id: str, store: StoreDep, settings: SettingsDep) -> Response:
    """One part: the image with its defect map, every version's verdict, and its labels."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    from inspector import verdicts

    record = records.read_record(store, image_id)
    history = verdicts.history(store, image_id)
    return _page(
        request,
        "image.html",
        principal,
        record=record,
        verdicts=list(reversed(history)),
        mapped=any("defect_map" in v for v in history),
        labels=records.label_history(store, image_id),
    )


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Every version and its state."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    running = [r for r in training.list_runs(store) if r["state"] == "queued"]
    return _page(
        request, "models.html", principal, versions=promotion.list_views(store), running=running
    )


def _errors(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Held-out images the candidate judges wrong (escapes, false rejects, wrong type),
    with whether the report kept its defect map."""
    mine = report["candidate"]["slices"]["heldout"]
    maps = report["candidate"].get("defect_maps") or {}
    truths = mine.get("labels") or ["?"] * len(mine["image_ids"])
    return [
        {
            "image_id": image_id,
            "candidate": mine["predicted"][i],
            "truth": truths[i],
            "has_map": image_id in maps,
        }
        for i, image_id in enumerate(mine["image_ids"])
        if not mine["correct"][i]
    ][:12]


def _examples(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The candidate's held-out errors; held-out images the candidate gets wrong that
    production gets right, and the reverse."""
    if not report.get("candidate"):
        return {"errors": [], "candidate_worse": [], "candidate_better": []}
    if not report.get("production"):
        return {"errors": _errors(report), "candidate_worse": [], "candidate_better": []}
    mine = report["candidate"]["slices"]["heldout"]
    theirs = report["production"]["slices"]["heldout"]
    worse, better = [], []
    for i, image_id in enumerate(mine["image_ids"]):
        row = {
            "image_id": image_id,
            "candidate": mine["predicted"][i],
            "production": theirs["predicted"][i],
        }
        if theirs["correct"][i] and not mine["correct"][i]:
            worse.append(row)
        elif mine["correct"][i] and not theirs["correct"][i]:
            better.append(row)
    return {
        "errors": _errors(report),
        "candidate_worse": worse[:12],
        "candidate_better": better[:12],
    }


@router.get("/models/{version}", response_class=HTMLResponse)
def model_page(
    request: Request, version: int, store: StoreDep, settings: SettingsDep, message: str = ""
) -> Response:
    """A version's report beside production's, examples, and the approve / reject forms."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    view = promotion.version_view(store, version)
    try:
        report = promotion.read_report(store, version)
    except InspectorError:
        report = None
    return _page(
        request,
        "model.html",
        principal,
        view=view,
        report_body=report_html.render_body(report, model_name=settings.model_name)
        if report
        else None,
        report=report,
        examples=_examples(report) if report else None,
        model_name=settings.model_name,
        message=message,
    )


def _act(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    version: int,
    action: Any,
) -> Response:
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    try:
        action(principal)
    except (InspectorError, Forbidden) as exc:
        text = exc.message if isinstance(exc, InspectorError) else str(exc)
        return RedirectResponse(f"/models/{version}?message={quote(text)}", status_code=303)
    inference.notify_registry_change()
    return RedirectResponse(f"/models/{version}?message=done", status_code=303)


@router.post("/models/{version}/approve")
def approve(
    request: Request,
    version: int,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    reason: Annotated[str, Form()],
    override: Annotated[bool, Form()] = False,
    threshold: Annotated[str, Form()] = "",
) -> Response:
    """Approve (an admin may override a failed gate), with a reason and optionally a moved
    threshold."""

    def action(principal: Principal) -> None:
        if override and principal.role != "admin":
            log.warning(
                "denied: %s (role %s) tried to override the gate", principal.name, principal.role
            )
            raise Forbidden("only an admin may override a failed gate")
        promotion.approve(
            store,
            version,
            actor=principal.name,
            role=principal.role,
            reason=reason,
            override=override,
            threshold=_threshold(threshold),
        )

    return _act(request, store, settings, inference, version, action)


def _threshold(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise promotion.ApprovalRefused(
            f"the threshold {text!r} is not a number between 0 and 1", code="invalid_threshold"
        ) from None


@router.post("/models/{version}/reject")
def reject(
    request: Request,
    version: int,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    reason: Annotated[str, Form()],
) -> Response:
    """Reject, with a reason."""
    return _act(
        request,
        store,
        settings,
        inference,
        version,
        lambda principal: promotion.reject(
            store, version, actor=principal.name, role=principal.role, reason=reason
        ),
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Every registry change, newest first."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    return _page(request, "audit.html", principal, events=list(reversed(registry.audit_log(store))))


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Training runs; running ones update live."""
    principal = _operator(request, settings)
    if isinstance(principal, Response):
        return principal
    return _page(request, "runs.html", principal, runs=training.list_runs(store)[:50])
