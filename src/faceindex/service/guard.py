"""The front door: credentials are checked before a request body is read, and callers without credentials
are rate-limited per client address.

FastAPI parses a form body and validates parameters before it resolves a route's dependencies, so a
`Require` dependency alone would let anyone make the server receive (and spool to disk) a 90 MiB upload,
or learn which parameters a route takes, before answering 401. This middleware runs first: every API
request (but /api/v1/health) and every page request that may carry a body (every method but GET, HEAD,
OPTIONS) must present valid credentials, or get 401 without a byte of its body read. `/login` is the one
public form; pages a browser GETs keep redirecting to it (their own dependency does that).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from faceindex.errors import AuthError, FaceIndexError
from faceindex.service.auth import SAFE_METHODS, client_address, current_principal, presents_credentials
from faceindex.service.errors import RateLimitedError, error_response
from faceindex.service.state import get_state

PUBLIC_FORMS = frozenset({"/login"})
UNLIMITED = ("/static/", "/docs-static/", "/api/v1/health")
"""Paths no limit applies to: static assets, and the liveness check that monitoring must always get."""


class AuthFirstMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNLIMITED):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: nothing here can read the body
        try:
            await self._check(request)
        except FaceIndexError as exc:
            response = error_response(request, exc)
            if scope["method"] not in SAFE_METHODS:
                response.headers["Connection"] = "close"  # do not wait to drain an unread upload
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, request: Request) -> None:
        state = get_state(request)
        api = request.url.path.startswith("/api/")  # /openapi.json and /docs stay public
        if not presents_credentials(request):
            wait = state.anon_limiter.take(f"ip:{client_address(request)}")
            if wait:
                raise RateLimitedError(f"too many requests without credentials; retry in {wait:.0f} s", wait)
            if api or (request.method not in SAFE_METHODS and request.url.path not in PUBLIC_FORMS):
                raise AuthError("authentication required: send an API key (Authorization: Bearer …) or log in")
        elif api or request.method not in SAFE_METHODS:
            await current_principal(request)  # raises AuthError (401) or RateLimitedError for bad credentials
