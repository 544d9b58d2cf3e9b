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
from faceindex.service.principal import Principal
from faceindex.service.storage import ServiceDB

if TYPE_CHECKING:
    from faceindex.service.jobs import JobManager


class EngineGate:
    """How request threads use the one shared Engine: `read()` for queries, `write()` for changes.

    Writes are serialised (one writer, as SQLite allows). Reads take no lock of ours once the store says
    it is safe for concurrent reader threads (`engine.store.concurrent_reads`, set by the store when each
    thread reads on its own connection and the index may be searched from many threads) and the Engine
    offers `acting_as(actor)` (a view with its own actor, sharing everything else); until both hold, a
    read is serialised with everything else, as the single shared connection needs.

    The actor is never swapped on the shared object when `acting_as` exists: the view carries the caller,
    so the audit log names who did what even with reads running side by side.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.RLock()

    @property
    def concurrent_reads(self) -> bool:
        return bool(getattr(self.engine.store, "concurrent_reads", False)) and hasattr(self.engine, "acting_as")

    @contextmanager
    def read(self, principal: Principal | None = None) -> Iterator[Engine]:
        if self.concurrent_reads:
            yield self._view(principal)
            return
        with self.write(principal) as engine:
            yield engine

    @contextmanager
    def write(self, principal: Principal | None = None) -> Iterator[Engine]:
        with self._lock:
            if principal is None or hasattr(self.engine, "acting_as"):
                yield self._view(principal)
                return
            # Engines without acting_as: the actor is swapped for the duration, under the lock.
            previous = self.engine.actor
            self.engine.actor = principal.actor
            try:
                yield self.engine
            finally:
                self.engine.actor = previous

    def _view(self, principal: Principal | None) -> Engine:
        return self.engine if principal is None else self.engine.acting_as(principal.actor)


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
    db: ServiceDB
    anon_limiter: RateLimiter
    decodes: threading.BoundedSemaphore
    """Photos decoded at once (uploads checked, thumbnails and crops made): bounds the memory they take."""
    owns_engine: bool = False
    extra: dict = field(default_factory=dict)


def get_state(request: Request) -> ServiceState:
    return request.app.state.service
