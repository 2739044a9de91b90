"""Dependencies, named with ``Annotated`` so a route's signature lists what it needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from inspector.api.auth import Forbidden, Principal, authenticate, authorize
from inspector.api.queue import Enqueuer
from inspector.config import Role, Settings
from storage import ObjectStore
from workers.inference_queue import InferenceClient


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


def get_store(request: Request) -> ObjectStore:
    """The object store the app was built with."""
    return request.app.state.store


def get_enqueuer(request: Request) -> Enqueuer:
    """The task queue the app was built with."""
    return request.app.state.enqueuer


def get_inference(request: Request) -> InferenceClient:
    """The client of the inference queue the app was built with."""
    return request.app.state.inference


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
InferenceDep = Annotated[InferenceClient, Depends(get_inference)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]


SESSION_COOKIE = "inspector_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_principal(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller: from its bearer token, or from the console's session cookie."""
    if authorization or SESSION_COOKIE not in request.cookies:
        return authenticate(authorization, settings.token_grants)
    if request.method not in SAFE_METHODS:
        # The cookie is SameSite=Strict; refusing other origins too defends old browsers.
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise Forbidden("a cross-site request with the console's session was refused")
    return authenticate(f"Bearer {request.cookies[SESSION_COOKIE]}", settings.token_grants)


def require(*roles: Role) -> Callable[..., Principal]:
    """A dependency admitting only callers with one of ``roles``."""

    def dependency(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Principal:
        authorize(principal, roles, f"{request.method} {request.url.path}")
        return principal

    return dependency


AnyRole = Annotated[Principal, Depends(require("camera", "operator", "admin"))]
Uploader = AnyRole
Operator = Annotated[Principal, Depends(require("operator", "admin"))]
Admin = Annotated[Principal, Depends(require("admin"))]
