"""Every error becomes ``{"error": {"code", "message"}}`` with the right status, here."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inspector import errors as domain
from inspector.api.auth import Forbidden, Unauthorized
from inspector.api.middleware import BodyTooLarge
from inspector.datasets import DatasetError
from storage import StoreError, Unavailable

log = logging.getLogger("inspector.api")

IMAGE_REJECTION_STATUS = {
    "empty_body": 400,
    "unsupported_format": 415,
    "corrupt_image": 422,
    "image_too_large": 413,
}
DOMAIN_STATUS: dict[type[domain.InspectorError], int] = {
    domain.InvalidMetadata: 422,
    domain.UnknownLabel: 422,
    domain.InvalidClassName: 422,
    domain.ImageNotFound: 404,
    domain.IngestFailed: 409,
    DatasetError: 422,
}
# Codes whose status is not the default of their error type.
CODE_STATUS = {
    "run_not_found": 404,
    "version_not_found": 404,
    "snapshot_not_found": 404,
    "invalid_parent": 422,
    "golden_set_exists": 409,
    "report_not_found": 404,
    "illegal_transition": 409,
    "registry_busy": 409,
    "gate_failed": 409,
    "stale_report": 409,
    "nothing_to_roll_back": 409,
    "no_override_needed": 409,
    "override_needs_admin": 403,
    "reason_required": 422,
    "empty_snapshot": 409,
}
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


class TFServingError(Exception):
    """An error on a TF Serving route, answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ApiError(Exception):
    """An error raised by a route itself, with its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(
    request: Request | None,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error (TF Serving's ``{"error": message}`` on its routes)."""
    if (
        request is not None
        and request.method == "POST"
        and request.url.path == "/v1/images"
        and status < 500
    ):
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.rejected.labels(code).inc()
    if request is not None and getattr(request.state, "tf_serving", False):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that map error types to statuses."""

    @app.exception_handler(domain.InspectorError)
    async def _domain(request: Request, exc: domain.InspectorError) -> JSONResponse:
        if isinstance(exc, domain.ImageRejected):
            status = IMAGE_REJECTION_STATUS.get(exc.code, 422)
        elif exc.code in CODE_STATUS:
            status = CODE_STATUS[exc.code]
        else:
            status = next((s for t, s in DOMAIN_STATUS.items() if isinstance(exc, t)), 400)
        log.info(
            "%s %s → %s %s: %s", request.method, request.url.path, status, exc.code, exc.message
        )
        return error_response(request, status, exc.code, exc.message)

    @app.exception_handler(TFServingError)
    async def _tf_serving(request: Request, exc: TFServingError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        log.info("%s %s → %s %s", request.method, request.url.path, exc.status, exc.code)
        return error_response(request, exc.status, exc.code, exc.message)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        log.warning(
            "denied: %s %s from %s: %s",
            request.method,
            request.url.path,
            request.client.host if request.client else "?",
            exc,
        )
        return error_response(
            request, 401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return error_response(request, 403, "forbidden", str(exc))

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        log.error("object store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            request,
            503,
            "store_unavailable",
            "the object store is unreachable; nothing was accepted, retry shortly",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.error("object store error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            request,
            503,
            "store_error",
            "the object store refused the request; an admin should check its logs",
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ())[1:]),
                "problem": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{d['field'] or 'body'}: {d['problem']}" for d in details)
        return error_response(
            request, 422, "invalid_request", message or "invalid request", details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):
            return error_response(
                request,
                413,
                "payload_too_large",
                "the request body is larger than this endpoint accepts",
            )
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(
            request, exc.status_code, code, message, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            request, 500, "internal_error", "unexpected error; it has been logged"
        )
