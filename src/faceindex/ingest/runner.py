"""Drives an ingest run: scan → skip unchanged → analyse in a process pool → commit per photo."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from faceindex.config import Settings
from faceindex.ingest.scanner import SourceFile, describe, iter_files
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.parallel import AnalysisOutcome, analyse_stream
from faceindex.store.catalog import Collection
from faceindex.store.face_store import FaceStore

SAVE_EVERY_S = 60.0
"""Persist the index at least this often during long runs, so a crash loses little catch-up work."""


@dataclass
class IngestReport:
    """Counts of one run; `skipped` lists (path, reason) of every file that could not be indexed."""

    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    copied: int = 0
    faces: int = 0
    rejected_faces: int = 0
    opted_out_faces: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {"files": self.files, "indexed": self.indexed, "unchanged": self.unchanged, "copied": self.copied,
                "faces": self.faces, "rejected_faces": self.rejected_faces,
                "opted_out_faces": self.opted_out_faces, "skipped": len(self.skipped)}


ProgressFn = Callable[[str, int, int | None], None]
"""progress(event, done, total): event is 'total' once the scan is known, then 'file' per file."""

FaceFilter = Callable[[np.ndarray], np.ndarray]
"""Given faceprints (n, dim), return a boolean mask of faces to DROP (opt-out)."""


class IngestRunner:
    """Commits each photo in its own transaction: a crash or kill -9 loses at most the photos in flight,
    and a re-run skips what was committed (same path, same sha256) without duplicating anything."""

    def __init__(self, store: FaceStore, pipeline: FacePipeline, settings: Settings,
                 *, face_filter: FaceFilter | None = None, progress: ProgressFn | None = None):
        self.store = store
        self.catalog = store.catalog
        self.pipeline = pipeline
        self.settings = settings
        self.face_filter = face_filter
        self.progress = progress or (lambda event, done, total: None)
        self._last_save = time.monotonic()

    def run(self, paths: Iterable[str], collection: Collection, model_id: str) -> IngestReport:
        start = time.monotonic()
        report = IngestReport()
        files = list(iter_files(paths))
        report.files = len(files)
        self.progress("total", 0, len(files))
        with self.catalog.transaction():
            self.catalog.bind_model(model_id)
        self._done, self._total = 0, len(files)
        copies_in_run: list[SourceFile] = []  # same bytes as a file queued in this run: copy its faces later
        queued: set[str] = set()

        def needing_analysis() -> Iterator[SourceFile]:
            # Lazy, so hashing, skipping and analysis overlap: a huge folder starts indexing at once and
            # each file is read while it is still in the page cache for its worker.
            for path in files:
                source = describe(path)
                if source.sha256 in queued and self.catalog.find_image(collection.id, source.uri) is None:
                    copies_in_run.append(source)
                elif self._settle_without_analysis(source, collection, model_id, report):
                    self._tick()
                else:
                    queued.add(source.sha256)
                    yield source

        for outcome in self._analyse_all(needing_analysis(), len(files)):
            self._commit(outcome, collection, model_id, report)
            self._tick()
        # A copy whose original failed to index has no twin and is analysed on its own (and skipped alike).
        leftovers = [s for s in copies_in_run if not self._settle_without_analysis(s, collection, model_id, report)]
        for outcome in self._analyse_all(leftovers, len(leftovers)):
            self._commit(outcome, collection, model_id, report)
        self._done += len(copies_in_run)
        self.progress("file", self._done, self._total)
        self.store.save_index()
        report.seconds = time.monotonic() - start
        return report

    # -- before analysis ----------------------------------------------------------------------
    def _settle_without_analysis(self, source: SourceFile, collection: Collection, model_id: str,
                                 report: IngestReport) -> bool:
        """Handle unchanged files, unreadable files and exact copies of indexed photos. True = handled."""
        existing = self.catalog.find_image(collection.id, source.uri)
        if existing is not None and existing["sha256"] == source.sha256 and source.sha256 is not None:
            report.unchanged += 1
            return True
        with self.catalog.transaction():
            if not self._make_room(collection, source, report):
                return True
            if source.error:
                self.catalog.insert_image(collection.id, source.uri, sha256=None, size_bytes=None,
                                          status="skipped", error=source.error)
                report.skipped.append((source.uri, source.error))
                return True
            twin = self.catalog.indexed_twin(source.sha256, model_id) if self.face_filter is None else None
            if twin is None:
                return False
            image_id = self.catalog.insert_image(
                collection.id, source.uri, sha256=source.sha256, size_bytes=source.size, width=twin["width"],
                height=twin["height"], fmt=twin["format"], captured_at=twin["captured_at"], n_faces=twin["n_faces"])
            copied = self.catalog.copy_faces(twin["id"], image_id)
            report.copied += 1
            report.faces += twin["n_faces"]
            report.rejected_faces += copied - twin["n_faces"]
        return True

    def _make_room(self, collection: Collection, source: SourceFile, report: IngestReport) -> bool:
        """Inside the write transaction: drop an older version of this file (it changed since it was indexed).
        False when another writer (a concurrent `add` of the same folder) has just indexed this very content:
        it counts as unchanged here, instead of a UNIQUE constraint error."""
        current = self.catalog.find_image(collection.id, source.uri)
        if current is None:
            return True
        if current["sha256"] == source.sha256 and source.sha256 is not None:
            report.unchanged += 1
            return False
        self._drop_image(current["id"])
        return True

    def _drop_image(self, image_id: int) -> None:
        # Deleting bumps the catalog epoch, so the next index access rebuilds without the old faces.
        self.catalog.delete_images([image_id])

    # -- analysis -----------------------------------------------------------------------------
    def _tick(self) -> None:
        self._done += 1
        self.progress("file", self._done, self._total)

    def _analyse_all(self, todo: Iterable[SourceFile], at_most: int) -> Iterator[tuple[AnalysisOutcome, SourceFile]]:
        """Analyse sources (a lazy iterable of at most `at_most`), yielding results as they complete."""
        workers = min(self.settings.resolved_workers(), at_most)
        yield from analyse_stream(((str(s.path), s.uri, s) for s in todo), self.pipeline, workers)

    # -- commit -------------------------------------------------------------------------------
    def _commit(self, item: tuple[AnalysisOutcome, SourceFile], collection: Collection, model_id: str,
                report: IngestReport) -> None:
        outcome, source = item
        with self.catalog.transaction():
            if not self._make_room(collection, source, report):
                return
            if outcome.error is not None or outcome.analysis is None:
                reason = outcome.error or "no analysis"
                self.catalog.insert_image(collection.id, source.uri, sha256=source.sha256, size_bytes=source.size,
                                          status="skipped", error=reason)
                report.skipped.append((source.uri, reason))
                return
            analysis = outcome.analysis
            faces = analysis.faces
            accepted = [f for f in faces if f.ok]
            dropped = set()
            if accepted and self.face_filter is not None:
                drop = self.face_filter(np.stack([f.embedding for f in accepted]))
                dropped = {id(f) for f, d in zip(accepted, drop, strict=True) if d}
                report.opted_out_faces += len(dropped)
                faces = [f for f in faces if id(f) not in dropped]  # opted-out faces are never stored
                accepted = [f for f in faces if f.ok]
            image_id = self.catalog.insert_image(
                collection.id, source.uri, sha256=source.sha256, size_bytes=source.size, width=analysis.width,
                height=analysis.height, fmt=analysis.format,
                captured_at=analysis.captured_at.isoformat() if analysis.captured_at else None,
                n_faces=len(accepted), faces_withheld=len(dropped))
            self.catalog.insert_faces(image_id, faces, model_id)
        report.indexed += 1
        report.faces += len(accepted)
        report.rejected_faces += len(faces) - len(accepted)
        if time.monotonic() - self._last_save > SAVE_EVERY_S:
            self.store.index()  # catch up in memory, then persist
            self.store.save_index()
            self._last_save = time.monotonic()
