"""What one running service holds: the engine behind a lock, rate limiters, search grants and jobs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from faceindex.engine import Engine
from faceindex.service.config import ServiceConfig
from faceindex.service.keys import KeyStore

if TYPE_CHECKING:
    from faceindex.service.auth import Principal
    from faceindex.service.jobs import JobManager


class EngineGate:
    """Serialises every use of the shared Engine.

    The engine's SQLite connection, its in-memory index and its actor attribute belong to one thread at a
    time, so request handlers (run in a thread pool) take this lock for each engine call. The actor is set
    to the calling key for the duration, so the audit log names who did what.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.RLock()

    @contextmanager
    def use(self, principal: Principal | None = None) -> Iterator[Engine]:
        with self._lock:
            previous = self.engine.actor
            if principal is not None:
                self.engine.actor = principal.actor
            try:
                yield self.engine
            finally:
                self.engine.actor = previous

    @contextmanager
    def keys(self) -> Iterator[KeyStore]:
        with self.use() as engine:
            yield KeyStore(engine)


class RateLimiter:
    """Token buckets keyed by API key (or client address): `burst` at once, then `per_minute` sustained."""

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """Spend one token; returns 0 when allowed, else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SearchGrants:
    """Which images a searcher may look at: those their own searches returned, for a limited time.

    A searcher reviews candidates; letting them page through every photo of every collection would turn
    a purpose-bound search tool into a browsing tool. Held in memory: a restart ends the grants.
    """

    def __init__(self, hours: float):
        self.seconds = hours * 3600
        self._grants: dict[int, dict[int, float]] = {}
        self._lock = threading.Lock()

    def grant(self, key_id: int, image_ids: list[int]) -> None:
        until = time.monotonic() + self.seconds
        with self._lock:
            grants = self._grants.setdefault(key_id, {})
            grants.update(dict.fromkeys(image_ids, until))
            if len(grants) > 10_000:  # bound memory: forget the oldest grants first
                for image_id, _ in sorted(grants.items(), key=lambda kv: kv[1])[: len(grants) - 10_000]:
                    del grants[image_id]

    def allows(self, key_id: int, image_id: int) -> bool:
        with self._lock:
            return self._grants.get(key_id, {}).get(image_id, 0.0) > time.monotonic()


@dataclass
class ServiceState:
    gate: EngineGate
    config: ServiceConfig
    jobs: JobManager
    limiter: RateLimiter
    login_limiter: RateLimiter
    failure_limiter: RateLimiter
    grants: SearchGrants
    owns_engine: bool = False
    extra: dict = field(default_factory=dict)


def get_state(request: Request) -> ServiceState:
    return request.app.state.service
