"""The FastAPI application: REST API under /api/v1, web pages, local API docs, one Engine behind a read/write gate.

`create_app(engine_or_settings)` is the one factory: `faceindex serve` and the tests both call it.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceindex import __version__
from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.service import (
    routes_admin,
    routes_collections,
    routes_images,
    routes_people,
    routes_people_search,
    routes_privacy,
    routes_search,
    routes_ui,
    routes_ui_pages,
    routes_ui_people,
    routes_video,
)
from faceindex.service.auth import Require
from faceindex.service.config import ServiceConfig
from faceindex.service.errors import error_body, install_error_handlers
from faceindex.service.guard import AuthFirstMiddleware
from faceindex.service.job_records import JobRecords
from faceindex.service.jobs import JobManager
from faceindex.service.logs import AccessLogMiddleware
from faceindex.service.schema import ensure_service_schema
from faceindex.service.shared import sweep
from faceindex.service.state import EngineGate, RateLimiter, SearchGrants, ServiceState
from faceindex.service.storage import ServiceDB

PACKAGE_DIR = Path(str(resources.files("faceindex.service")))

CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # a login link's token must not leak through Referer
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Adds the headers above to every response, and `Cache-Control: no-store` to everything but static
    assets: API answers and pages hold personal data that no shared cache should keep."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(("/static/", "/docs-static/"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in names]
                if not static and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


UPLOAD_ROUTE = re.compile(r"/api/v1/collections/[^/]+/uploads")


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413 in the API's error shape.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body is counted
    as it streams and cut off once over the limit, so a client cannot fill the disk with a huge upload.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        # The ingest upload route takes videos, streamed to disk (never into memory): it gets the larger limit.
        self.upload_bytes = max(max_bytes, upload_bytes or 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if scope["method"] == "POST" and UPLOAD_ROUTE.fullmatch(scope["path"]):
            limit = self.upload_bytes
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body over the {limit:,}-byte limit")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(error_body("upload_too_large", f"request body over the {limit:,}-byte limit"))
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})


def annotate_permissions(router: APIRouter) -> None:
    """Publish each route's permission and roles in the OpenAPI document (`x-permission`, `x-roles`).

    Derived from the `Require` dependency the route really uses, so the document cannot drift from the code;
    the test that walks /openapi.json uses these to pick a key too weak for each route. Applied to each router
    before it is included, as FastAPI builds the included routes from the router's own.
    """

    def find(dependant) -> Require | None:
        for dep in dependant.dependencies:
            if isinstance(dep.call, Require):
                return dep.call
            if (found := find(dep)) is not None:
                return found
        return None

    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            requirement = find(route.dependant)
            extra = dict(route.openapi_extra or {})
            if requirement is None:
                extra["x-public"] = True
            else:
                extra.update({"x-permission": requirement.permission or "any", "x-roles": requirement.roles,
                              "security": [{"apiKey": []}, {"session": []}]})
            route.openapi_extra = extra


def _openapi_with_security(app: FastAPI):
    original = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "`faceindex keys create` prints one"},
                "session": {"type": "apiKey", "in": "cookie", "name": "fi_session",
                            "description": "Browser session from /login; state changes also need X-CSRF-Token"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def _build_engine(engine_or_settings) -> tuple[Engine, bool]:
    if isinstance(engine_or_settings, Engine):
        return engine_or_settings, False
    if isinstance(engine_or_settings, Settings):
        return Engine(settings=engine_or_settings, actor="service"), True
    if engine_or_settings is None:
        return Engine(actor="service"), True
    return Engine(Path(engine_or_settings), actor="service"), True


def create_app(engine_or_settings: Engine | Settings | str | Path | None = None,
               config: ServiceConfig | None = None) -> FastAPI:
    """Build the service over an existing Engine (the caller keeps ownership and closes it), or over
    Settings / a store path (the app opens the Engine and closes it at shutdown)."""
    engine, owns = _build_engine(engine_or_settings)
    engine.start_writes()  # the service's start-up: resume erasures, retention purge (idempotent)
    ensure_service_schema(engine)  # the service's own tables (keys, sessions, jobs)
    config = config or ServiceConfig()
    jobs = JobManager(engine.settings, records=JobRecords(engine.catalog.twin()))  # resumes unfinished jobs
    state = ServiceState(gate=EngineGate(engine), config=config, jobs=jobs, db=ServiceDB(engine.catalog),
                         decodes=threading.BoundedSemaphore(config.max_concurrent_decodes),
                         anon_limiter=RateLimiter(config.anonymous_per_minute,
                                                  max(10, int(2 * config.anonymous_per_minute))),
                         limiter=RateLimiter(config.rate_per_minute, config.rate_burst),
                         login_limiter=RateLimiter(config.login_per_minute, max(3, int(config.login_per_minute))),
                         failure_limiter=RateLimiter(config.auth_failures_per_minute,
                                                     max(10, int(2 * config.auth_failures_per_minute))),
                         grants=SearchGrants(config.search_grant_hours), owns_engine=owns)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.jobs.shutdown()
        state.db.close()
        if state.owns_engine:
            with state.gate.write() as held:
                held.close()

    app = FastAPI(title="faceindex", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Self-hosted face search over photo collections you lawfully hold. Every route but "
                  "health needs an API key (`Authorization: Bearer fik_…`); each route's `x-roles` lists the "
                  "roles allowed. Search results are candidates for human review, never identifications.")
    app.state.service = state
    app.state.templates = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")
    docs_assets = routes_ui.swagger_assets()
    if docs_assets is not None:
        app.mount("/docs-static", StaticFiles(directory=str(docs_assets)), name="docs-static")
    for module in (routes_admin, routes_collections, routes_search, routes_images, routes_privacy, routes_ui,
                   routes_ui_pages, routes_people, routes_ui_people, routes_people_search, routes_video):
        annotate_permissions(module.router)
        app.include_router(module.router)
    install_error_handlers(app)
    app.openapi = _openapi_with_security(app)
    # Photos the service kept for images erased while it was down (e.g. `faceindex forget`) go now.
    sweep(state)
    # Added innermost first: the access log sees the final status; credentials and limits are checked before
    # any route touches the body.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_request_bytes,
                       upload_bytes=config.max_video_upload_bytes)
    app.add_middleware(AuthFirstMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(AccessLogMiddleware)
    return app
