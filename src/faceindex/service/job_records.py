"""Ingest jobs kept in the catalog (table `ingest_jobs`), so a restart resumes them and polling still works."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from faceindex.service import storage
from faceindex.store.catalog import Catalog

UNFINISHED = ("queued", "running")
MAX_ATTEMPTS = 3
"""A job interrupted this many times (the service stopped or crashed while it ran) is failed, not resumed
again: a photo that brings the process down must not bring it down at every start."""


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
        with self._lock:
            storage.save_job(self.catalog, row)

    def progress(self, job_id: str, total: int | None, done: int) -> None:
        with self._lock:
            storage.job_progress(self.catalog, job_id, total, done)

    def load(self, keep_finished: int) -> list[dict]:
        """Every unfinished job and the newest `keep_finished` finished ones, oldest first; older rows are deleted."""
        with self._lock:
            return storage.load_jobs(self.catalog, keep_finished)

    def forget(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            with self._lock:
                storage.delete_jobs(self.catalog, ids)

    def close(self) -> None:
        with self._lock:
            self.catalog.close()
