"""Bearer tokens with roles. Who may do what is declared on each route."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from inspector.config import Role, TokenGrant

log = logging.getLogger("inspector.api.auth")


class Unauthorized(Exception):
    """No token, or a token we do not know."""


class Forbidden(Exception):
    """A known token whose role may not do this."""


@dataclass(frozen=True)
class Principal:
    """The caller: a named camera, operator or admin."""

    name: str
    role: Role


def authenticate(authorization: str | None, grants: tuple[TokenGrant, ...]) -> Principal:
    """The principal a ``Bearer`` header belongs to, or :class:`Unauthorized`."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send an Authorization: Bearer <token> header")
    match: TokenGrant | None = None
    # Compare against every grant in constant time, so timing does not reveal a prefix.
    for grant in grants:
        if hmac.compare_digest(grant.secret.encode(), token.encode()):
            match = grant
    if match is None:
        raise Unauthorized("the bearer token is not valid")
    return Principal(match.principal, match.role)


def authorize(principal: Principal, allowed: tuple[Role, ...], action: str) -> None:
    """Raise :class:`Forbidden` (and log it) unless the principal's role is allowed."""
    if principal.role not in allowed:
        log.warning(
            "denied: %s (role %s) tried to %s; allowed roles: %s",
            principal.name,
            principal.role,
            action,
            ", ".join(allowed),
        )
        raise Forbidden(f"role {principal.role!r} may not {action}; needs {' or '.join(allowed)}")
