"""Ingest jobs kept in the catalog (table `ingest_jobs`), so a restart resumes them and polling still works."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from faceindex.store.catalog import Catalog

UNFINISHED = ("queued", "running")
MAX_ATTEMPTS = 3
"""A job interrupted this many times (the service stopped or crashed while it ran) is failed, not resumed
again: a photo that brings the process down must not bring it down at every start."""

_COLUMNS = ("id", "kind", "collection", "actor", "paths", "status", "total", "done", "counts", "skipped", "error",
            "attempts", "created_at", "started_at", "finished_at", "seconds")
_JSON = {"paths", "counts", "skipped", "error"}


class JobRecords:
    """Reads and writes job rows on a catalog connection of its own (the job thread and request threads
    share it, serialised by a lock; SQLite's WAL lets the service's engine read meanwhile)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._lock = threading.Lock()

    def save(self, job: dict) -> None:
        """Insert or replace one job (a dict with the Job fields). Paths are dropped once it has finished."""
        row = dict(job)
        if row["status"] not in UNFINISHED:
            row["paths"] = []
        values = [json.dumps(row[c]) if c in _JSON else row[c] for c in _COLUMNS]
        with self._lock:
            self.catalog.conn.execute(
                f"INSERT OR REPLACE INTO ingest_jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                values)

    def progress(self, job_id: str, total: int | None, done: int) -> None:
        with self._lock:
            self.catalog.conn.execute("UPDATE ingest_jobs SET total = ?, done = ? WHERE id = ?", (total, done, job_id))

    def load(self, keep_finished: int) -> list[dict]:
        """Every unfinished job and the newest `keep_finished` finished ones, oldest first; older rows are deleted."""
        with self._lock:
            conn = self.catalog.conn
            conn.execute("DELETE FROM ingest_jobs WHERE status NOT IN ('queued', 'running') AND id NOT IN "
                         "(SELECT id FROM ingest_jobs WHERE status NOT IN ('queued', 'running') "
                         " ORDER BY created_at DESC LIMIT ?)", (keep_finished,))
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM ingest_jobs ORDER BY created_at").fetchall()
        return [{c: (json.loads(r[c]) if c in _JSON and r[c] is not None else r[c]) for c in _COLUMNS} for r in rows]

    def forget(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            with self._lock:
                self.catalog.conn.execute(f"DELETE FROM ingest_jobs WHERE id IN ({', '.join('?' * len(ids))})", ids)

    def close(self) -> None:
        with self._lock:
            self.catalog.close()
