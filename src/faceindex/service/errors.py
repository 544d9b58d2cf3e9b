"""The service's one error shape, `{"error": {"code", "message"}}`, for every failure on every API route.

Errors the engine raises keep their `code` and `http_status` (faceindex.errors); framework errors (unknown
route, wrong method, malformed body, failed validation) are mapped onto the same shape; anything else is
a 500 `internal` whose details go to the log, never to the client. Web pages get the same message as HTML,
and a 401 on a page redirects to the login form.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceindex.errors import FaceIndexError, ForbiddenError

log = logging.getLogger("faceindex.service")


class RateLimitedError(FaceIndexError):
    """Too many requests from one key (or one address, for logins)."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, round(retry_after)))}


class UnsupportedMediaError(FaceIndexError):
    """An upload whose content is not an image format faceindex reads (judged by its bytes, not its name)."""

    code = "unsupported_media_type"
    http_status = 415


class UploadTooLargeError(FaceIndexError):
    """A request body or uploaded file over the configured byte limit."""

    code = "upload_too_large"
    http_status = 413


class PhotoChangedError(FaceIndexError):
    """A catalogued photo file that is no longer the one indexed (replaced, or a symlink put in its place)."""

    code = "photo_changed"
    http_status = 410


class CsrfError(ForbiddenError):
    """A state-changing browser request without the session's CSRF token."""

    code = "csrf"


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 410: "gone", 413: "upload_too_large", 415: "unsupported_media_type",
               422: "invalid_input", 429: "rate_limited"}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/openapi.json"


def _respond(request: Request, status: int, code: str, message: str, headers: dict | None = None) -> Response:
    if is_api(request):
        if status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return JSONResponse(error_body(code, message), status_code=status, headers=headers)
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", {"status": status, "code": code, "message": message,
                                                              "principal": getattr(request.state, "principal", None)},
                                      status_code=status, headers=headers)


def error_response(request: Request, exc: FaceIndexError) -> Response:
    """The response for an error raised outside the routes (e.g. by a middleware), as the handlers give it."""
    return _respond(request, exc.http_status, exc.code, exc.message, getattr(exc, "headers", None))


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FaceIndexError)
    async def faceindex_error(request: Request, exc: FaceIndexError) -> Response:
        if exc.http_status >= 500:
            log.error("engine error", extra={"fields": {"code": exc.code, "detail": exc.message}})
        return _respond(request, exc.http_status, exc.code, exc.message, getattr(exc, "headers", None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return _respond(request, exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), message,
                        getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _respond(request, 422, "invalid_input", _validation_message(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"fields": {"path": request.url.path}})
        return _respond(request, 500, "internal", "internal error; see the server log")
