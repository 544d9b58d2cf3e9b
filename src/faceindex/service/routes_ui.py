"""Web UI plumbing: login with a key or a one-time link, logout, the home redirect, local API docs, rendering.

Sessions: the cookie `fi_session` is HttpOnly (scripts cannot read it), SameSite=Strict (other sites'
pages cannot make the browser send it) and Secure when served over HTTPS. The login form itself is
protected by a double-submit token, so another site cannot log a browser in under the attacker's key.
"""

from __future__ import annotations

import hmac
import importlib.util
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from faceindex.service.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    Require,
    client_address,
    current_principal,
)
from faceindex.service.errors import RateLimitedError
from faceindex.service.events import LoggedIn
from faceindex.service.keys import KeyStore
from faceindex.service.shared import HOME, render
from faceindex.service.state import get_state

router = APIRouter(include_in_schema=False)


def swagger_assets() -> Path | None:
    """Swagger UI files shipped by the `fastapi-offline` package, served locally (no CDN); None if absent."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: `//evil.example` or `https://…` would make login an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, token: str | None = None):
    csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, next=safe_next(next), token=token or "", csrf=csrf, error=None)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=3600, path="/login", httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


@router.post("/login")
def login(request: Request, csrf_token: Annotated[str, Form()] = "", key: Annotated[str, Form()] = "",
          token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"):
    state = get_state(request)
    wait = state.login_limiter.take(f"ip:{client_address(request)}")
    if wait:
        raise RateLimitedError(f"too many login attempts; retry in {wait:.0f} s", wait)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, csrf_token):
        return _login_error(request, next, token, "The login form expired. Please try again.", 403)
    keys = KeyStore(state.db.catalog())
    via = "link" if token.strip() else "key"
    found = keys.redeem_login_token(token.strip()) if token.strip() else keys.authenticate(key.strip())
    if found is None:
        message = "This login link was already used or has expired." if token.strip() else "Unknown or revoked key."
        return _login_error(request, next, token, message, 401)
    keys.touch(found)
    session, _csrf = keys.open_session(found, state.config.session_hours)
    with state.gate.write() as engine:  # who opened a session on a face search tool, and how, is audited
        engine.audit.record(LoggedIn(via=via, role=found.role), actor=f"key:{found.name}")
    response = RedirectResponse(safe_next(next) if next != "/" else HOME[found.role], status_code=303)
    response.set_cookie(SESSION_COOKIE, session, max_age=int(state.config.session_hours * 3600), path="/",
                        httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


def _login_error(request: Request, next: str, token: str, message: str, status: int) -> HTMLResponse:
    csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, status, next=safe_next(next), token="", csrf=csrf, error=message)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=3600, path="/login", httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


@router.post("/logout")
async def logout(request: Request, principal: Annotated[Principal, Depends(Require())]):
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        def close():
            KeyStore(get_state(request).db.catalog()).close_session(cookie)

        await run_in_threadpool(close)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
async def home(request: Request):
    principal = await current_principal(request)
    return RedirectResponse(HOME[principal.role] if principal else "/login", status_code=303)


@router.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> Response:
    """Swagger UI over /openapi.json, from local files (the strict CSP forbids CDNs and inline scripts)."""
    principal = None
    try:
        principal = await current_principal(request)
    except Exception:  # noqa: BLE001 - a stale cookie must not break the public docs page
        principal = None
    return render(request, "docs.html", principal, available=swagger_assets() is not None)
