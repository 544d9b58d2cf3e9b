"""Who is calling and what they may do: API keys, browser sessions with CSRF tokens, roles, rate limits.

Credentials, in order: `Authorization: Bearer <key>` or `X-API-Key: <key>` (scripts), else the
`fi_session` cookie of a browser that logged in with a key. A cookie is an ambient credential the
browser attaches by itself, so every state-changing request made with one must also carry the session's
CSRF token (header `X-CSRF-Token` or form field `csrf_token`); a key in a header needs none.
"""

from __future__ import annotations

import asyncio
import hmac
from concurrent.futures import ThreadPoolExecutor

from fastapi import Request

from faceindex.errors import AuthError, ForbiddenError
from faceindex.service.errors import CsrfError, RateLimitedError
from faceindex.service.keys import ROLES, ApiKey, KeyStore
from faceindex.service.principal import PERMISSIONS, Principal
from faceindex.service.state import get_state

__all__ = ["PERMISSIONS", "Principal", "Require", "current_principal", "client_address", "presents_credentials"]

SESSION_COOKIE = "fi_session"
LOGIN_CSRF_COOKIE = "fi_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KEY_CHECKS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="faceindex-keys")
"""Threads that check credentials, apart from the request thread pool: when searches fill that pool (and
wait for the engine), a caller is still told at once whether its key is valid, and a page still redirects."""

def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("x-api-key") or None


def presents_credentials(request: Request) -> bool:
    return presented_key(request) is not None or bool(request.cookies.get(SESSION_COOKIE))


def client_address(request: Request) -> str:
    """The peer address that per-address limits count against.

    It is the TCP peer as the ASGI server reports it. `X-Forwarded-For` is honoured only by the server,
    and only from proxies listed in `trusted_proxies` (see service.server.uvicorn_options): any client can
    write that header, so trusting it by default would let one address pose as many.
    """
    return request.client.host if request.client else "unknown"


def _lookup(request: Request) -> Principal | None:
    """Resolve the request's credentials (blocking: reads the key tables on this thread's own connection,
    never waiting for the engine); None when it presents none."""
    state = get_state(request)
    secret = presented_key(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if secret is None and not cookie:
        return None
    keys = KeyStore(state.db.catalog())
    if secret is not None:
        key: ApiKey | None = keys.authenticate(secret)
        if key is None:
            raise AuthError("invalid or revoked API key")
        keys.touch(key)
        return Principal(key.id, key.name, key.role, "key")
    found = keys.session(cookie)
    if found is None:
        raise AuthError("session expired or logged out; log in again")
    key, csrf = found
    keys.touch(key)
    return Principal(key.id, key.name, key.role, "session", csrf)


async def current_principal(request: Request) -> Principal | None:
    """The caller (cached on the request), or None when no credentials were presented.

    Wrong credentials also spend from a per-address budget: guessing a 256-bit key is hopeless, but a
    flood of bad keys should not cost the server a catalog lookup each without limit.
    """
    if not hasattr(request.state, "principal"):
        try:
            request.state.principal = await asyncio.get_running_loop().run_in_executor(KEY_CHECKS, _lookup, request)
        except AuthError:
            wait = get_state(request).failure_limiter.take(f"ip:{client_address(request)}")
            if wait:
                raise RateLimitedError(f"too many failed authentications; retry in {wait:.0f} s", wait) from None
            raise
    return request.state.principal


async def check_csrf(request: Request, principal: Principal) -> None:
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")):
        token = (await request.form()).get("csrf_token")
    if not isinstance(token, str) or not hmac.compare_digest(token, principal.csrf or ""):
        raise CsrfError("missing or wrong CSRF token; reload the page and try again")


class Require:
    """Dependency: an authenticated caller holding `permission` (None = any role), within its rate limit.

    401 without valid credentials, 403 for a role without the permission or a cookie request without its
    CSRF token, 429 over the rate limit. The permission is also published in the OpenAPI document as
    `x-permission` / `x-roles` (see app.annotate_permissions).
    """

    def __init__(self, permission: str | None = None):
        if permission is not None and permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission

    @property
    def roles(self) -> list[str]:
        return sorted(PERMISSIONS[self.permission]) if self.permission else list(ROLES)

    async def __call__(self, request: Request) -> Principal:
        principal = await current_principal(request)
        if principal is None:
            raise AuthError("authentication required: send an API key (Authorization: Bearer …) or log in")
        wait = get_state(request).limiter.take(f"key:{principal.key_id}")
        if wait:
            raise RateLimitedError(f"rate limit exceeded for key {principal.name!r}; retry in {wait:.0f} s", wait)
        if self.permission is not None and not principal.can(self.permission):
            raise ForbiddenError(f"role {principal.role!r} may not do this (needs one of: {', '.join(self.roles)})")
        await check_csrf(request, principal)
        return principal
