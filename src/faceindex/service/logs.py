"""Structured JSON logs: one object per line, and one access record per request.

Access records carry the path without its query string (a one-time login token travels in one) and the
key's name, never a key, a cookie, a body, a photo or a faceprint.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from datetime import UTC, datetime

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("faceindex.access")


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; fields passed as `extra={"fields": {...}}` are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send faceindex's and uvicorn's logs to stderr as JSON lines (the `serve` command calls this)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("faceindex", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class AccessLogMiddleware:
    """Logs method, path, status, duration and caller of each HTTP request, and tags it with a request id."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            request = Request(scope)
            principal = getattr(request.state, "principal", None) if "state" in scope else None
            access_log.info("request", extra={"fields": {
                "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "status": status["code"], "ms": round((time.perf_counter() - start) * 1000, 1),
                "key": principal.name if principal else None, "role": principal.role if principal else None,
                "client": scope["client"][0] if scope.get("client") else None}})
