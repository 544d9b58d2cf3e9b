"""Background ingest jobs with progress a client can poll.

One worker thread runs the jobs one after another (an ingest already uses every core through its process
pool, so running two at once would only make both slower). Each job opens its own Engine on the same
store: SQLite in WAL mode lets it commit photo by photo while the service's engine keeps answering
searches, and the service's index catches up with the new faces on its next use (watermark). A fresh
Engine per job also re-reads the opt-out templates at open, so an opt-out registered a minute ago
applies to the next ingest. The models are loaded once and shared by the jobs' engines.

Jobs live in memory: a restart forgets finished jobs, and an interrupted job is simply re-run (the
ingest skips every photo it had already committed).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.errors import FaceIndexError
from faceindex.pipeline.analyse import FacePipeline
from faceindex.store.catalog import utcnow

log = logging.getLogger("faceindex.service.jobs")

KEEP_FINISHED = 200
"""Finished jobs remembered for polling; older ones are forgotten first."""


@dataclass
class Job:
    id: str
    kind: str
    collection: str
    paths: list[str]
    actor: str
    status: str = "queued"
    """queued → running → done | failed."""
    total: int | None = None
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str] | None = None
    created_at: str = field(default_factory=utcnow)
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "collection": self.collection, "status": self.status,
                "total": self.total, "done": self.done, "counts": dict(self.counts), "skipped": list(self.skipped),
                "error": self.error, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "seconds": self.seconds, "actor": self.actor}


class JobManager:
    """Queue of ingest jobs run by one daemon thread. `on_finish(job)` runs after each job (e.g. clean-up)."""

    def __init__(self, settings: Settings, *, on_finish: Callable[[Job], None] | None = None):
        self.settings = settings
        self.on_finish = on_finish
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pipeline: FacePipeline | None = None

    def submit(self, kind: str, collection: str, paths: list[str | Path], actor: str) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, collection, [str(p) for p in paths], actor)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
            for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[old.id]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="faceindex-ingest", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def pending_paths(self) -> set[str]:
        """Files of jobs not finished yet (not necessarily in the catalog yet)."""
        with self._lock:
            return {p for j in self._jobs.values() if j.status in ("queued", "running") for p in j.paths}

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """Block until a job finishes or `timeout` seconds pass (for the CLI and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.status in ("done", "failed"):
                return job
            time.sleep(0.05)
        return self.get(job_id)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop after the running job (queued ones are dropped; a re-run resumes where they stopped)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            self._execute(job)

    def _execute(self, job: Job) -> None:
        job.status, job.started_at = "running", utcnow()
        start = time.monotonic()

        def progress(event: str, done: int, total: int | None) -> None:
            if event == "total":
                job.total = total
            job.done = done

        try:
            if self._pipeline is None:
                self._pipeline = FacePipeline(self.settings)
            with Engine(settings=self.settings, actor=job.actor, pipeline=self._pipeline) as engine:
                report = engine.ingest(job.paths, job.collection, progress=progress)
            job.counts = report.counts()
            job.skipped = [{"path": p, "reason": r} for p, r in report.skipped[:100]]
            job.status = "done"
        except FaceIndexError as exc:
            job.error, job.status = exc.to_dict(), "failed"
        except Exception as exc:  # noqa: BLE001 - a job must report failure, not kill the worker thread
            log.exception("ingest job failed", extra={"fields": {"job": job.id}})
            job.error, job.status = {"code": "internal", "message": f"ingest failed: {type(exc).__name__}"}, "failed"
        job.finished_at, job.seconds = utcnow(), round(time.monotonic() - start, 2)
        log.info("ingest job finished", extra={"fields": {"job": job.id, "status": job.status, **job.counts}})
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:  # noqa: BLE001
                log.exception("job clean-up failed", extra={"fields": {"job": job.id}})
