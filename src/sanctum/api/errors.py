"""One error shape for the API: ``{"error": {"code": ..., "message": ...}}`` with the right status.

Bad input never becomes a 500: validation, malformed JSON, unknown routes and wrong methods all
get a clear 4xx. Unexpected failures are logged and answered with a bare 500 that leaks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sanctum.errors import SanctumError, TooManyRequests

log = logging.getLogger("sanctum.api")

# The web package sets ``app.state.html_error_renderer(request, status, message) -> Response`` so
# that pages (everything outside /api/) get HTML errors and a login redirect instead of JSON.
HTML_RENDERER = "html_error_renderer"
STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def error_json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _html_renderer(request: Request) -> Callable[[Request, int, str], Response] | None:
    if request.url.path.startswith("/api/") or request.url.path == "/healthz":
        return None
    return getattr(request.app.state, HTML_RENDERER, None)


def _wants_html(request: Request) -> bool:
    return _html_renderer(request) is not None


def _respond(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    renderer = _html_renderer(request)
    if renderer is not None:
        response = renderer(request, status, message)
        if headers:
            response.headers.update(headers)
        return response
    return error_json(status, code, message, headers)


def _validation_message(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON"
    if tuple(first.get("loc", ())) == ("body",):
        return "request body must be a JSON object (Content-Type: application/json)"
    loc = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {message}{more}" if loc else f"{message}{more}"


def install(app: FastAPI) -> None:
    async def sanctum_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SanctumError)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
        if exc.status == 401 and not _wants_html(request):
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return _respond(request, exc.status, exc.code, exc.message, headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        code = "malformed_json" if errors and errors[0].get("type") == "json_invalid" else "invalid_input"
        return _respond(request, 422, code, _validation_message(errors))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = "no such resource"
        return _respond(request, exc.status_code, code, message, getattr(exc, "headers", None))

    async def unstorable(request: Request, exc: Exception) -> Response:
        # PostgreSQL refuses values SQLite takes (a NUL byte in text, an invalid escape in a LIKE
        # pattern): bad input, not a server fault. The driver's text (SQL, values) is never echoed.
        log.info("refused a value the database cannot take on %s %s", request.method, request.url.path)
        return _respond(
            request,
            400,
            "invalid_value",
            "a value in the request cannot be stored or compared (a NUL byte?)",
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _respond(
            request, 500, "internal_error", "internal error; the administrator can find it in the log"
        )

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        SanctumError: sanctum_error,
        RequestValidationError: validation_error,
        StarletteHTTPException: http_error,
        DataError: unstorable,
        Exception: unexpected,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
