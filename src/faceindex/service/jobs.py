"""Background jobs with progress a client can poll: ingests, and grouping faces into people.

One worker thread runs the jobs one after another (an ingest already uses every core through its process
pool, so running two at once would only make both slower). Each job opens its own Engine on the same
store: SQLite in WAL mode lets it commit photo by photo while the service's engine keeps answering
searches, and the service's index catches up with the new faces on its next use (watermark). A fresh
Engine per job also re-reads the opt-out templates at open, so an opt-out registered a minute ago
applies to the next ingest. The models are loaded once and shared by the jobs' engines.

Jobs are also kept in the catalog (job_records.py): after a restart, finished jobs can still be polled and
a job that was queued or running is run again (the ingest skips every photo it had already committed),
up to MAX_ATTEMPTS times.
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
from faceindex.service.job_records import MAX_ATTEMPTS, UNFINISHED, JobRecords
from faceindex.service.uploads import display_name
from faceindex.store.catalog import utcnow
from faceindex.video.timecode import timecode

log = logging.getLogger("faceindex.service.jobs")

CLUSTER = "people.cluster"
"""The job kind that groups faces into people (people.operations.PeopleOps.cluster, incremental); every kind not
in CLUSTER_KINDS ingests."""
CLUSTER_FULL = "people.cluster.full"
"""Grouping that also looks again at every face earlier runs left alone (`incremental=False`: reads every
faceprint; minutes at a million faces) — `people cluster --full` in the CLI."""
CLUSTER_KINDS = (CLUSTER, CLUSTER_FULL)
KEEP_FINISHED = 200
"""Finished jobs remembered for polling; older ones are forgotten first."""
PROGRESS_SAVE_S = 2.0
"""Seconds between progress writes to the catalog (polling reads memory; the row only matters after a crash)."""


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
    attempts: int = 0
    """Times a worker started it (more than 1 after a restart interrupted it)."""
    video: dict | None = None
    """The video being analysed now: its file name, seconds (and HH:MM:SS.mmm) processed and its duration."""

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "collection": self.collection, "status": self.status,
                "total": self.total, "done": self.done, "counts": dict(self.counts), "skipped": list(self.skipped),
                "error": self.error, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "seconds": self.seconds, "actor": self.actor,
                "attempts": self.attempts, "video": self.video}

    def record(self) -> dict:
        """What the catalog keeps (to_dict plus the paths a resume needs)."""
        return {**self.to_dict(), "paths": list(self.paths)}


class JobManager:
    """Queue of ingest jobs run by one daemon thread. `on_finish(job)` runs after each job (e.g. clean-up)."""

    def __init__(self, settings: Settings, *, records: JobRecords | None = None,
                 on_finish: Callable[[Job], None] | None = None):
        self.settings = settings
        self.records = records
        self.on_finish = on_finish
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pipeline: FacePipeline | None = None
        if records is not None:
            self._restore(records.load(KEEP_FINISHED))

    def _restore(self, rows: list[dict]) -> None:
        """Jobs of an earlier run: finished ones for polling; unfinished ones resumed, or failed after MAX_ATTEMPTS."""
        for row in rows:
            job = Job(**{k: v for k, v in row.items() if k in Job.__dataclass_fields__})
            self._jobs[job.id] = job
            if job.status not in UNFINISHED:
                continue
            if job.attempts >= MAX_ATTEMPTS:
                job.status, job.finished_at = "failed", utcnow()
                job.error = {"code": "interrupted", "message": f"the service stopped while this job ran, "
                             f"{job.attempts} times: not resumed again (see the service log)"}
                self._save(job)
            else:
                job.status = "queued"
                self._enqueue(job)

    def submit(self, kind: str, collection: str, paths: list[str | Path], actor: str) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, collection, [str(p) for p in paths], actor)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
            forgotten = finished[: max(0, len(finished) - KEEP_FINISHED)]
            for old in forgotten:
                del self._jobs[old.id]
        if self.records is not None:
            self.records.forget(old.id for old in forgotten)
        self._save(job)
        self._enqueue(job)
        return job

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="faceindex-ingest", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def _save(self, job: Job) -> None:
        if self.records is not None:
            self.records.save(job.record())

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
        if self.records is not None and (self._thread is None or not self._thread.is_alive()):
            self.records.close()

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            self._execute(job)

    def _execute(self, job: Job) -> None:
        job.status, job.started_at, job.done = "running", utcnow(), 0
        job.attempts += 1
        self._save(job)
        start = saved = time.monotonic()

        def progress(event: str, done: int, total: int | None) -> None:
            nonlocal saved
            if event == "total":
                job.total = total
            job.done = done
            if self.records is not None and time.monotonic() - saved > PROGRESS_SAVE_S:
                self.records.progress(job.id, job.total, job.done)
                saved = time.monotonic()

        def video_progress(uri: str, done_s: float, duration_s: float | None) -> None:
            job.video = {"name": display_name(uri), "done_s": round(done_s, 3), "done": timecode(done_s),
                         "duration_s": duration_s, "duration": None if duration_s is None else timecode(duration_s)}

        try:
            if job.kind in CLUSTER_KINDS:
                job.counts = self._cluster(job)
            else:
                if self._pipeline is None:
                    self._pipeline = FacePipeline(self.settings)
                with Engine(settings=self.settings, actor=job.actor, pipeline=self._pipeline) as engine:
                    report = engine.ingest(job.paths, job.collection, progress=progress,
                                           video_progress=video_progress)
                job.counts = report.counts()
                job.video = None  # no video is being analysed any more
                job.skipped = [{"path": p, "reason": r} for p, r in report.skipped[:100]]
            job.status = "done"
        except FaceIndexError as exc:
            job.error, job.status = exc.to_dict(), "failed"
        except Exception as exc:  # noqa: BLE001 - a job must report failure, not kill the worker thread
            log.exception("job failed", extra={"fields": {"job": job.id, "kind": job.kind}})
            job.status = "failed"
            job.error = {"code": "internal", "message": f"{job.kind} failed: {type(exc).__name__}"}
        job.finished_at, job.seconds = utcnow(), round(time.monotonic() - start, 2)
        self._save(job)
        log.info("job finished",
                 extra={"fields": {"job": job.id, "kind": job.kind, "status": job.status, **job.counts}})
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:  # noqa: BLE001
                log.exception("job clean-up failed", extra={"fields": {"job": job.id}})

    def _cluster(self, job: Job) -> dict[str, int]:
        """Group faces into people (`job.collection`, or every collection allowing it when empty): on a big store
        this runs minutes, so it is a job. Opens its own Engine as an ingest does; needs no face models."""
        with Engine(settings=self.settings, actor=job.actor) as engine:
            return engine.people.cluster(job.collection or None, incremental=job.kind != CLUSTER_FULL).to_dict()
