"""Drives an ingest run: scan → skip unchanged → analyse in a process pool → commit in audited batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from faceindex.config import Settings
from faceindex.ingest import detail as levels
from faceindex.ingest.scanner import SourceFile, describe, scan
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.parallel import AnalysisOutcome, VideoProgress, analyse_stream
from faceindex.pipeline.types import iou
from faceindex.pipeline.video_analyse import AnalysedVideo
from faceindex.store.catalog import Collection
from faceindex.store.face_store import FaceStore
from faceindex.video.ingest import commit_video
from faceindex.video.store import VideoStore

SAVE_EVERY_S = 60.0
"""Persist the index at least this often during long runs, so a crash loses little catch-up work."""

BATCH_FILES = 32
LOOKUP_FILES = 256
"""Scanned files whose catalog rows are looked up in one query before they are hashed and settled."""
BATCH_SECONDS = 5.0
"""A batch of results is committed (one transaction, one audit event) once it holds BATCH_FILES files or
its first result is BATCH_SECONDS old. Smaller batches lose less analysis to a kill -9 (it is redone by
the next run); larger ones write fewer audit events (~720 an hour of a slow ingest, one per 32 files of a fast one)."""

@dataclass
class IngestReport:
    """Counts of one run; `skipped` lists (path, reason) of every file recorded as not indexable, `failed`
    the files that could not be analysed this time for a reason that is not theirs (not recorded: a later
    run tries them again)."""

    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    copied: int = 0
    replaced: int = 0  # indexed photos whose content changed since: their old version was dropped
    reanalysed: int = 0  # unchanged photos analysed again at a higher detail: their new faces added
    kept_level: int = 0  # unchanged photos not re-analysed at the higher detail: faces of theirs were withheld
    faces: int = 0
    rejected_faces: int = 0
    opted_out_faces: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    videos: int = 0  # of `indexed` and `copied`, how many were videos; their faces are their tracks' faceprints
    tracks: int = 0
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        counts = {"files": self.files, "indexed": self.indexed, "unchanged": self.unchanged, "copied": self.copied,
                  "replaced": self.replaced, "reanalysed": self.reanalysed, "kept_level": self.kept_level,
                  "faces": self.faces, "rejected_faces": self.rejected_faces,
                  "opted_out_faces": self.opted_out_faces, "skipped": len(self.skipped), "failed": len(self.failed)}
        if self.videos:  # only when there were any: the keys of a photo-only run stay as they always were
            counts.update(videos=self.videos, tracks=self.tracks)
        return counts

    def add(self, other: IngestReport) -> None:
        """Add the counts and lists of `other` (a committed batch) to this report."""
        for f in fields(self):
            if f.name not in ("files", "seconds"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


ProgressFn = Callable[[str, int, int | None], None]
"""progress(event, done, total): event is 'total' once the scan is known, then 'file' per file."""

FaceFilter = Callable[[np.ndarray], np.ndarray]
"""Given faceprints (n, dim), return a boolean mask of faces to DROP (opt-out)."""

Analyse = Callable[[Iterable[SourceFile], FacePipeline, int], Iterator[tuple[AnalysisOutcome, SourceFile]]]
"""analyse(sources, pipeline, at_most): where new files are analysed. The default is this machine's process pool
(pipeline.parallel); ingest.ray_ingest runs them on a Ray cluster. It yields (outcome, source) in completion order,
each source once; a source not analysed for a reason that is not the file's own comes back with retry=True."""

BatchAudit = Callable[[dict[str, int]], None]
"""Called inside the transaction of each committed batch with its counts: writes the batch's audit event, so
every face in the catalog is covered by an event even when the run is killed before its end."""

_Op = Callable[[IngestReport], None]


class IngestRunner:
    """Commits results in batches, each in one transaction with its audit event: a crash or kill -9 loses at
    most the batch in hand (its files are analysed again by the next run, never half-recorded), and a re-run
    skips what was committed (same path, same sha256) without duplicating anything."""

    def __init__(self, store: FaceStore, pipeline: FacePipeline, settings: Settings,
                 *, face_filter: FaceFilter | None = None, progress: ProgressFn | None = None,
                 audit: BatchAudit | None = None, analyse: Analyse | None = None,
                 video_progress: VideoProgress | None = None):
        self.store = store
        self.catalog = store.catalog
        self.pipeline = pipeline
        self.settings = settings
        self.face_filter = face_filter
        self.progress = progress or (lambda event, done, total: None)
        self.audit = audit
        self.analyse = analyse
        self.video_progress = video_progress  # (uri, seconds processed, duration) while a video is analysed
        self._last_save = time.monotonic()
        self.videos = VideoStore(self.catalog, store.root)
        self._ops: list[_Op] = []
        self._images: dict[tuple[int, str], list] = {}  # (collection, model) → [(image row, faces)] (_flush)
        self._batch_started = 0.0
        self.detail = pipeline.settings.detail  # recorded per image; a higher one re-analyses (ingest.detail)

    def run(self, paths: Iterable[str], collection: Collection, model_id: str) -> IngestReport:
        start = time.monotonic()
        report = IngestReport()
        files = list(scan(paths))
        report.files = len(files)
        self.progress("total", 0, len(files))
        with self.catalog.transaction():
            self.catalog.bind_model(model_id)
        self._done, self._total = 0, len(files)
        copies_in_run: list[SourceFile] = []  # same bytes as a file queued in this run: copy its faces later
        queued: set[str] = set()

        def needing_analysis() -> Iterator[SourceFile]:
            # Lazy, so hashing, skipping and analysis overlap: a huge folder starts indexing at once and
            # each file is read while it is still in the page cache for its worker. The catalog rows of the
            # files are looked up per LOOKUP_FILES (one query, not one per file: a round trip each on a server).
            known: dict = {}
            for n, found in enumerate(files):
                if n % LOOKUP_FILES == 0:
                    known = self.catalog.find_images(collection.id, [f.uri for f in files[n:n + LOOKUP_FILES]])
                source = describe(found)
                if source.sha256 in queued and known.get(source.uri) is None:
                    copies_in_run.append(source)
                elif self._settle_without_analysis(source, collection, model_id, report, known):
                    self._tick()
                else:
                    queued.add(source.sha256)
                    yield source

        try:
            for outcome in self._analyse_all(needing_analysis(), len(files)):
                self._stage(self._commit_op(outcome, collection, model_id), report)
                self._tick()
            self._flush(report)  # copies below look for their twin among the committed images
            # A copy whose original failed to index has no twin and is analysed on its own (and skipped alike).
            leftovers = [s for s in copies_in_run if not self._settle_without_analysis(s, collection, model_id, report)]
            for outcome in self._analyse_all(leftovers, len(leftovers)):
                self._stage(self._commit_op(outcome, collection, model_id), report)
        finally:
            self._flush(report)  # what was analysed is kept even when the run stops on an error
        self._done += len(copies_in_run)
        self.progress("file", self._done, self._total)
        if self.videos.thumbs.is_dir():  # thumbnails of videos replaced in this run (their rows cascaded away)
            with self.catalog.transaction():
                self.videos.sweep()
        self.store.save_index()
        report.seconds = time.monotonic() - start
        return report

    # -- batches ------------------------------------------------------------------------------
    def _stage(self, op: _Op, report: IngestReport) -> None:
        """Queue a catalog change for the current batch; commit the batch when it is full or old enough."""
        if not self._ops:
            self._batch_started = time.monotonic()
        self._ops.append(op)
        if len(self._ops) >= BATCH_FILES or time.monotonic() - self._batch_started >= BATCH_SECONDS:
            self._flush(report)

    def _flush(self, report: IngestReport) -> None:
        """Commit the queued changes and their audit event in one transaction, then count them in `report`."""
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        batch = IngestReport()
        self._images = {}
        with self.catalog.transaction():
            for op in ops:
                op(batch)
            self._write_images()
            if self.audit is not None:
                self.audit({k: v for k, v in batch.counts().items() if k != "files"})
        report.add(batch)
        if time.monotonic() - self._last_save > SAVE_EVERY_S:
            self.store.index()  # catch up in memory, then persist
            self.store.save_index()
            self._last_save = time.monotonic()

    def _write_images(self) -> None:
        """Insert the analysed images the batch's ops deferred, with their level and faces: per collection and
        model, one insert_images, one UPDATE of their level and one insert_faces_of (a few round trips for the
        whole batch on PostgreSQL, instead of four per file)."""
        deferred, self._images = self._images, {}
        for (collection_id, model_id), items in deferred.items():
            image_ids = self.catalog.insert_images(collection_id, [row for row, _ in items])
            levels.record_images_detail(self.catalog, image_ids, self.detail)
            self.catalog.insert_faces_of([(image_id, faces) for image_id, (_, faces) in zip(image_ids, items,
                                                                                              strict=True)], model_id)

    # -- before analysis ----------------------------------------------------------------------
    def _settle_without_analysis(self, source: SourceFile, collection: Collection, model_id: str,
                                 report: IngestReport, known: dict | None = None) -> bool:
        """Handle unchanged files, unreadable files and exact copies of indexed photos. True = handled.
        `known`: the catalog rows (or None) of a chunk of uris looked up at once (Catalog.find_images)."""
        existing = (known[source.uri] if known is not None and source.uri in known
                    else self.catalog.find_image(collection.id, source.uri))
        if (existing is not None and existing["sha256"] == source.sha256 and source.sha256 is not None
                and not _to_retry(existing)):
            if not self._wants_more_detail(existing):
                report.unchanged += 1
                return True
            if existing["faces_withheld"]:
                # Erased or opted-out faces leave no box behind: a new analysis would find them again.
                report.kept_level += 1
                return True
            return False  # analysed again, its new faces added (_add_detail)
        if source.error:
            self._stage(lambda batch: self._record_skip(batch, collection, source, source.error), report)
            return True
        twin = self.catalog.indexed_twin(source.sha256, model_id) if self.face_filter is None else None
        if twin is None or levels.higher(self.detail, levels.image_detail(twin)):
            return False

        def copy(batch: IngestReport) -> None:
            if not self._make_room(self.catalog.find_image(collection.id, source.uri), source, batch):
                return
            image_id = self.catalog.insert_image(
                collection.id, source.uri, sha256=source.sha256, size_bytes=source.size, width=twin["width"],
                height=twin["height"], fmt=twin["format"], captured_at=twin["captured_at"], n_faces=twin["n_faces"])
            copied = self.catalog.copy_faces(twin["id"], image_id)
            if tracks := self.videos.copy_video(twin["id"], image_id):
                levels.record_image_detail(self.catalog, image_id, levels.LEVELS[-1])  # as a video's own row
                batch.videos += 1
                batch.tracks += tracks
            batch.copied += 1
            batch.faces += twin["n_faces"]
            batch.rejected_faces += copied - twin["n_faces"]

        self._stage(copy, report)
        return True

    def _make_room(self, current, source: SourceFile, batch: IngestReport) -> bool:
        """Inside the batch transaction, before a file is recorded: drop the row of an earlier version of it
        (changed content, or a skip to try again). `current`: the file's catalog row (or None) as the caller
        read it in this transaction (the store's write lock is held: it cannot change before the write). False
        when the current row already holds this very content (another writer, a concurrent `add` of the same
        folder, has just indexed it): it counts as unchanged here, instead of a UNIQUE constraint error."""
        if current is None:
            return True
        if current["sha256"] == source.sha256 and source.sha256 is not None and not _to_retry(current):
            batch.unchanged += 1  # (a row still below the requested detail is handled before: _add_detail)
            return False
        # Deleting bumps the catalog epoch, so the next index access rebuilds without the old faces.
        self.catalog.delete_images([current["id"]])
        batch.replaced += current["status"] == "indexed"  # a skip recorded again is not news
        return True

    def _record_skip(self, batch: IngestReport, collection: Collection, source: SourceFile, reason: str) -> None:
        current = self.catalog.find_image(collection.id, source.uri)
        if (current is not None and current["status"] == "skipped" and current["sha256"] == source.sha256
                and current["error"] == reason):
            batch.skipped.append((source.uri, reason))  # skipped again, as recorded: reported, the row kept
            return
        if not self._make_room(current, source, batch):
            return
        self.catalog.insert_image(collection.id, source.uri, sha256=source.sha256,
                                  size_bytes=source.size if source.sha256 else None, status="skipped", error=reason)
        batch.skipped.append((source.uri, reason))

    # -- analysis -----------------------------------------------------------------------------
    def _tick(self) -> None:
        self._done += 1
        self.progress("file", self._done, self._total)

    def _analyse_all(self, todo: Iterable[SourceFile], at_most: int) -> Iterator[tuple[AnalysisOutcome, SourceFile]]:
        """Analyse sources (a lazy iterable of at most `at_most`), yielding results as they complete."""
        if self.analyse is not None:
            yield from self.analyse(todo, self.pipeline, at_most)
            return
        workers = min(self.settings.resolved_workers(), at_most)
        yield from analyse_stream(((str(s.path), s.uri, s) for s in todo), self.pipeline, workers,
                                  video_progress=self.video_progress)

    # -- commit -------------------------------------------------------------------------------
    def _commit_op(self, item: tuple[AnalysisOutcome, SourceFile], collection: Collection, model_id: str) -> _Op:
        """The catalog change that records one analysed file (run inside the batch transaction)."""
        outcome, source = item

        def commit(batch: IngestReport) -> None:
            if outcome.retry:  # not the file's fault: leave it unrecorded so the next run tries it again
                batch.failed.append((source.uri, outcome.error or "not analysed"))
                return
            if outcome.error is not None or outcome.analysis is None:
                self._record_skip(batch, collection, source, outcome.error or "no analysis")
                return
            current = self.catalog.find_image(collection.id, source.uri)
            if (current is not None and current["sha256"] == source.sha256 and source.sha256 is not None
                    and not _to_retry(current) and self._wants_more_detail(current)):
                self._add_detail(batch, current, outcome.analysis, model_id)
                return
            if not self._make_room(current, source, batch):
                return
            analysis = outcome.analysis
            if isinstance(analysis, AnalysedVideo):
                counts = commit_video(self.catalog, self.videos, collection_id=collection.id, uri=source.uri,
                                      sha256=source.sha256, size_bytes=source.size, analysis=analysis,
                                      model_id=model_id, face_filter=self.face_filter)
                # Video frames get their own fixed analysis whatever the collection's detail level: recorded as
                # the highest, so re-adding at a higher level never analyses a video again for nothing.
                levels.record_image_detail(self.catalog, counts["image_id"], levels.LEVELS[-1])
                batch.indexed += 1
                batch.videos += 1
                batch.faces += counts["faces"]
                batch.tracks += counts["tracks"]
                batch.opted_out_faces += counts["opted_out_faces"]
                return
            faces = analysis.faces
            accepted = [f for f in faces if f.ok]
            dropped = set()
            if accepted and self.face_filter is not None:
                drop = self.face_filter(np.stack([f.embedding for f in accepted]))
                dropped = {id(f) for f, d in zip(accepted, drop, strict=True) if d}
                batch.opted_out_faces += len(dropped)
                faces = [f for f in faces if id(f) not in dropped]  # opted-out faces are never stored
                accepted = [f for f in faces if f.ok]
            # Written with the batch's other images and faces at its end (_write_images: COPY on PostgreSQL). No
            # op of a batch reads the rows another op deferred: the scan yields each uri once.
            self._images.setdefault((collection.id, model_id), []).append((dict(
                uri=source.uri, sha256=source.sha256, size_bytes=source.size, width=analysis.width,
                height=analysis.height, fmt=analysis.format,
                captured_at=analysis.captured_at.isoformat() if analysis.captured_at else None,
                n_faces=len(accepted), faces_withheld=len(dropped)), faces))
            batch.indexed += 1
            batch.faces += len(accepted)
            batch.rejected_faces += len(faces) - len(accepted)

        return commit

    def _wants_more_detail(self, row) -> bool:
        """Whether an indexed row was analysed at a lower detail than this run's (ingest.detail.higher)."""
        return row["status"] == "indexed" and levels.higher(self.detail, levels.image_detail(row))

    def _add_detail(self, batch: IngestReport, row, analysis, model_id: str) -> None:
        """Record a higher-detail analysis of an unchanged, indexed photo (inside the batch transaction).

        Its stored faces stay as they are (ids, people, decisions): a higher level finds every face a lower
        one finds, with the same box. Only the faces that overlap no stored face are added (the opt-out
        filter applied to them), with the image's face count and level, so the photo is never seen half
        re-analysed. A photo with withheld faces keeps its level (they would be found again): the scan
        leaves it out, and this checks again inside the transaction (an erasure may have run meanwhile).
        """
        if row["faces_withheld"]:
            batch.kept_level += 1
            return
        stored = levels.face_boxes(self.catalog, row["id"])
        new = [f for f in analysis.faces if all(iou(f.box, box) < NEW_FACE_IOU for box in stored)]
        accepted = [f for f in new if f.ok]
        dropped: set[int] = set()
        if accepted and self.face_filter is not None:  # opted-out faces are never stored, as in a first ingest
            drop = self.face_filter(np.stack([f.embedding for f in accepted]))
            dropped = {id(f) for f, d in zip(accepted, drop, strict=True) if d}
            batch.opted_out_faces += len(dropped)
            new = [f for f in new if id(f) not in dropped]
            accepted = [f for f in new if f.ok]
        self.catalog.insert_faces(row["id"], new, model_id)
        levels.add_to_image(self.catalog, row["id"], faces=len(accepted), withheld=len(dropped), level=self.detail)
        batch.reanalysed += 1
        batch.faces += len(accepted)
        batch.rejected_faces += len(new) - len(accepted)


NEW_FACE_IOU = 0.3
"""A face of the higher-detail analysis overlapping a stored face at least this much is that face (the CNN
frames a face differently from HOG: crowd_detect.SAME_FACE_IOU)."""


def _to_retry(row) -> bool:
    """Whether a catalog row is a recorded skip: those files are analysed again on every run.

    Why every skip and not only the reasons that are not the file's own: a re-run that counted a skipped file as
    "unchanged" exited 0 and told the operator everything was indexed. Trying again costs little (a file that
    cannot be decoded fails in milliseconds; one over the size limits is refused before decoding) and picks up a
    newer faceindex that can read the file. A file failing again for the same reason keeps its row (`_record_skip`).
    """
    return row["status"] == "skipped"
