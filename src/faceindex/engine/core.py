"""The Engine itself: construction (no work), the store's read/write lifecycle, collections, ingest, maintenance."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from faceindex.config import Settings
from faceindex.engine.search import Searching
from faceindex.errors import (
    FaceIndexError,
    InvalidInputError,
    PolicyError,
    StoreBusyError,
    StoreError,
    WorkerPoolError,
)
from faceindex.events import Event
from faceindex.ingest import detail as levels
from faceindex.ingest.events import CollectionDetailSet, IngestBatchCommitted
from faceindex.ingest.runner import Analyse, IngestReport, IngestRunner, ProgressFn
from faceindex.matching import ThresholdPolicy, load_calibration
from faceindex.people.schema import PEOPLE_MIGRATIONS
from faceindex.pipeline.analyse import FacePipeline
from faceindex.pipeline.parallel import POOL_FAILED_HINT, VideoProgress
from faceindex.privacy.actions import (
    CollectionCreated,
    CollectionDeleted,
    ImageRemoved,
    Ingested,
    Reindexed,
)
from faceindex.privacy.audit import AuditLog
from faceindex.privacy.context import PrivacyContext
from faceindex.privacy.deletion import delete_images
from faceindex.privacy.jurisdictions import jurisdiction_codes
from faceindex.privacy.operations import PrivacyOps
from faceindex.privacy.schema import PRIVACY_MIGRATIONS
from faceindex.store.catalog import Collection
from faceindex.store.face_store import FaceStore
from faceindex.store.index_factory import IndexParams
from faceindex.store.uris import uri_candidates
from faceindex.video.schema import VIDEO_MIGRATIONS

log = logging.getLogger(__name__)


class Engine(Searching):
    """Wires the pipeline (models, loaded lazily), the store and the privacy layer together.

    Building one does no work: no file is read, created or written. Then, either

    - `Engine.open(store, mode="read")`: reads only. The store must exist (StoreNotFoundError names the
      path); nothing is resumed or purged, the index is caught up in memory only, so a search works on a
      read-only copy of a store. A read writes only its own audit event (search, verify) and, on a store
      written by an older faceindex, the schema upgrade; both only when the store is writable (a read-only
      store is searched unaudited, with a warning, and an older read-only one is a StoreError saying why).
    - `Engine.open(store, mode="write")`, or `start_writes()` on an open Engine: creates the store if needed
      (directory 0700, files 0600), applies migrations, repairs an index rewrite a crash interrupted,
      finishes interrupted erasures and purges what retention says has expired (`PrivacyOps.on_open`).
      A write method (ingest, create a collection, remove, reindex, any privacy operation) calls it itself on
      first use, so `with Engine(store) as engine: engine.ingest(...)` works as it always did.

    If finishing an interrupted erasure fails, writes are refused (StoreError, retried by the next write) and
    reads go on: `stats()` shows `pending_erasures`, and searches leave out what those erasures cover.

    Use as a context manager, or call `close()`: the index is persisted on close (once opened for writing).
    """

    def __init__(self, store: str | os.PathLike | None = None, settings: Settings | None = None, *,
                 actor: str = "cli", pipeline: FacePipeline | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.settings = settings or Settings()
        if store is not None:
            self.settings = self.settings.model_copy(update={"store": Path(store)})
        self.actor = actor
        self.store = FaceStore(self.settings.store, approximate_above=self.settings.approximate_above,
                               params=IndexParams(layout=self.settings.index_layout),
                               ef_search=self.settings.index_ef_search, lazy=True,
                               vectors_url=self.settings.vectors_url,
                               vectors_collection=self.settings.vectors_collection,
                               catalog_url=self.settings.catalog_url)
        self.catalog = self.store.catalog
        self.catalog.use_migrations(PRIVACY_MIGRATIONS, PEOPLE_MIGRATIONS, levels.INGEST_MIGRATIONS, VIDEO_MIGRATIONS)
        self.catalog.on_first_write = self.start_writes
        self.audit = AuditLog(self.catalog)
        self._pipeline = pipeline
        self._policy: ThresholdPolicy | None = None
        # Time source of retention decisions (timezone-aware UTC); injectable so tests control expiry.
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.privacy = PrivacyOps(self._privacy_context())
        self._startup = threading.RLock()
        self._lazy = threading.RLock()  # first use of the models and calibration (never held while writing)
        self._writes = "closed"  # "closed" -> "starting" -> "open"

    @classmethod
    def open(cls, store: str | os.PathLike | None = None, settings: Settings | None = None, *,
             mode: Literal["read", "write"] = "read", **kwargs) -> Engine:
        """Build an Engine and open its store for `mode` ("read": must exist, nothing written; "write":
        create if missing and run the start-up work). Errors close it again."""
        if mode not in ("read", "write"):
            raise InvalidInputError(f"mode must be 'read' or 'write', not {mode!r}")
        engine = cls(store, settings, **kwargs)
        try:
            if mode == "write":
                engine.start_writes()
            else:
                engine.check_store()
        except BaseException:
            engine.close()
            raise
        return engine

    def check_store(self) -> None:
        """Raise StoreNotFoundError unless the store exists (a read never creates one); reads nothing else."""
        self.catalog.conn.execute("SELECT 1")  # the reader raises StoreNotFoundError with the path and the fix

    @property
    def writes_open(self) -> bool:
        return self._writes == "open"

    def start_writes(self) -> None:
        """Open the store for writing and run the start-up work (see the class docstring); idempotent.

        Re-entrant: the start-up work itself writes (its transactions call back here and return at once).
        Raises StoreError when an interrupted erasure cannot be finished: no write may go ahead of it.
        """
        if self._writes == "open":
            return
        with self._startup:
            if self._writes != "closed":
                return
            self._writes = "starting"
            try:
                self.store.open_for_writing()
                try:
                    self.privacy.on_open()
                except StoreBusyError:
                    raise
                except Exception as exc:
                    log.debug("start-up work failed", exc_info=True)
                    cause = exc.message if isinstance(exc, FaceIndexError) else f"{type(exc).__name__}: {exc}"
                    raise StoreError(
                        f"the store at {self.store.root} has an interrupted erasure or retention purge that "
                        f"could not be finished ({cause}); nothing else is written until it is (reads still "
                        "work, `faceindex stats` shows it). Fix the cause and run the command again: every "
                        "write retries it.") from exc
            except BaseException:
                self._writes = "closed"
                raise
            self._writes = "open"

    def pending_erasures(self) -> int:
        """Erasures journaled but not finished (interrupted, or failing to finish); 0 on a store without any."""
        if not self.catalog.exists:
            return 0
        return self.privacy.eraser.pending()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            with self._lazy:  # concurrent first searches load the models once
                if self._pipeline is None:
                    self._pipeline = FacePipeline(self.settings)
        return self._pipeline

    @property
    def policy(self) -> ThresholdPolicy:
        if self._policy is None:
            with self._lazy:
                if self._policy is None:
                    calibration = load_calibration(self.pipeline.model_id, self.settings.calibration)
                    self._policy = ThresholdPolicy(calibration, fixed=self.settings.threshold,
                                                   max_expected_false=self.settings.max_expected_false)
        return self._policy

    # -- who acts, and the privacy layer's view of this engine ----------------------------------
    @property
    def actor(self) -> str:
        """Who acts: named in every audit event this engine writes. Prefer `acting_as(actor)` per caller to
        setting this on an engine that several callers share."""
        return self._actor

    @actor.setter
    def actor(self, value: str) -> None:
        self._actor = value
        if "privacy" in self.__dict__:  # the privacy layer records as the same actor
            self.privacy = self.privacy.acting_as(self._privacy_context())

    def acting_as(self, actor: str) -> Engine:
        """A view of this engine whose audit events name `actor`: it shares the store, pipeline, policy and
        privacy state (cheap: no model or file is opened), so a server can act per request for each caller
        without swapping a shared `actor` under a lock. Closing the view does not close the store."""
        return _ActingAs(self, actor)

    def _privacy_context(self) -> PrivacyContext:
        """What the privacy layer may use of this engine (it never sees the Engine itself)."""
        return PrivacyContext(store=self.store, audit=self.audit, settings=self.settings, actor=self.actor,
                              clock=lambda: self.clock(), pipeline=lambda: self.pipeline, policy=lambda: self.policy,
                              ingest=lambda paths, collection: self.ingest(paths, collection),
                              collection=self.collection)

    def _record(self, event: Event) -> None:
        """Audit one typed `privacy.actions` event as this engine's actor (in the caller's transaction, if any)."""
        self.audit.record(event, actor=self.actor)

    # -- collections ------------------------------------------------------------------------
    def create_collection(self, name: str, basis: str, purpose: str, *, jurisdictions: Sequence[str] = (),
                          retention_days: int | None = None, owner: str | None = None,
                          grouping: bool | None = None, detail: str | None = None) -> Collection:
        """Create a collection. `grouping`: whether its faces may be grouped into people (a processing purpose
        of its own; None = on, the default, unrecorded; given, it is recorded and audited as people.grouping).
        `detail`: the level its ingests use (ingest.detail; None = the store's setting)."""
        codes = jurisdiction_codes(jurisdictions)  # ISO 3166 or an InvalidInputError naming the format
        detail = None if detail is None else levels.check_level(detail)
        self.start_writes()
        with self.catalog.transaction():
            collection = self.catalog.create_collection(name, basis, purpose, jurisdictions=codes,
                                                        retention_days=retention_days, owner=owner)
            levels.set_collection_detail(self.catalog, collection.id, detail)
            self._record(CollectionCreated(purpose=purpose, collection=name, basis=basis,
                                           jurisdictions=list(collection.jurisdictions), retention_days=retention_days))
            if grouping is not None:
                self.people.set_grouping(name, grouping)
        return collection

    def collection(self, name: str, basis: str | None = None, purpose: str | None = None, *,
                   detail: str | None = None, **policy) -> Collection:
        """Get a collection, creating it when basis and purpose are given and it does not exist yet (with
        `detail` as the level it keeps, see ingest.detail; an existing one keeps its own).

        Get-or-create is one write transaction: two processes adding to the same new collection at once
        both use it (one creates it), neither fails with "already exists".
        """
        grouping = policy.pop("grouping", None)
        existing = self.catalog.find_collection(name) if self.catalog.exists else None
        created = False
        if existing is None:
            if not basis or not purpose:
                raise PolicyError(f"collection {name!r} does not exist; creating it needs a legal basis and a purpose")
            codes = jurisdiction_codes(policy.pop("jurisdictions", ()))
            self.start_writes()
            with self.catalog.transaction():
                existing, created = self.catalog.get_or_create_collection(name, basis, purpose, jurisdictions=codes,
                                                                          **policy)
                if created:
                    levels.set_collection_detail(self.catalog, existing.id, detail)
                    self._record(CollectionCreated(
                        purpose=purpose, collection=name, basis=basis, jurisdictions=list(existing.jurisdictions),
                        retention_days=existing.retention_days))
                    if grouping is not None:
                        self.people.set_grouping(name, grouping)
        if basis and basis != existing.legal_basis:
            raise InvalidInputError(f"collection {name!r} exists with basis {existing.legal_basis!r}, not {basis!r}")
        if grouping is not None and not created and self.people.store.collection_grouping(name)[1] != grouping:
            now = "on" if not grouping else "off"
            raise InvalidInputError(f"collection {name!r} exists with grouping {now}: change it with `faceindex "
                                    f"people grouping {name} {'on' if grouping else 'off'}`")
        return existing

    # -- ingest -----------------------------------------------------------------------------
    def ingest(self, paths: Iterable[str | os.PathLike], collection: str, *, basis: str | None = None,
               purpose: str | None = None, progress: ProgressFn | None = None, analyse: Analyse | None = None,
               detail: str | None = None, video_progress: VideoProgress | None = None,
               **policy) -> IngestReport:
        """Index every photo under `paths` into `collection` (created if basis and purpose are given).

        `analyse` runs the analysis elsewhere (`ingest.ray_ingest.RayAnalysis` for a Ray cluster); scanning,
        skipping and committing stay here, so the result is the same as with the default local process pool.

        Detail (ingest.detail): `detail` for this run, else the collection's own level, else the setting. A
        new collection keeps `detail` as its level. Unchanged photos analysed at a lower level than this
        run's are analysed again and their new faces added (`report.reanalysed`).

        Results are committed in batches, each with an "ingest.batch" audit event in its transaction (so a
        killed run leaves no face without an event; the batches of one call share a run id), and the run
        ends with an "ingest" event of its totals. Files that could not be analysed for a reason not their
        own are listed in `report.failed` and left for the next run. `video_progress(uri, seconds processed,
        duration)` is called while each video is analysed (about twice a second).
        """
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # We are a worker process importing the caller's script again (no `__main__` guard): ingesting
            # here would start a second ingest on the same store from every worker. Stop this process only,
            # before it opens the store; the parent sees its pool fail and analyses in its own process.
            raise WorkerPoolError(f"Engine.ingest was called while a worker process was starting. {POOL_FAILED_HINT}")
        detail = None if detail is None else levels.check_level(detail)
        self.start_writes()
        target = self.collection(collection, basis, purpose, detail=detail, **policy)
        pipeline = self.pipeline.with_detail(detail or self.collection_detail(target.name))
        model_id = pipeline.model_id
        # Folder names can be personal data and the audit log can never be erased: keep a digest, not the names.
        paths = [os.fsencode(p) for p in paths]
        run = uuid.uuid4().hex[:16]

        def audit_batch(counts: dict[str, int]) -> None:
            self._record(IngestBatchCommitted(purpose=target.purpose, collection=target.name, run=run, report=counts))

        runner = IngestRunner(self.store, pipeline, self.settings, face_filter=self.privacy.ingest_filter(),
                              progress=progress, audit=audit_batch, analyse=analyse, video_progress=video_progress)
        report = runner.run([os.fsdecode(p) for p in paths], target, model_id)
        paths_digest = hashlib.sha256(b"\n".join(sorted(paths))).hexdigest()
        self.store.index()  # catch the index up and persist it before reporting success
        self.store.save_index()
        # The run's totals keep the keys this event has always had; the counts added since (failed, replaced)
        # appear when not zero. Each batch's event has them all.
        counts = {k: v for k, v in report.counts().items()
                  if v or k not in ("failed", "replaced", "reanalysed", "kept_level")}
        self._record(Ingested(purpose=target.purpose, collection=target.name, paths=len(paths),
                              paths_sha256=paths_digest, report=counts))
        return report

    def collection_detail(self, name: str) -> str:
        """The detail level ingests into collection `name` use: its own, else the store's setting."""
        return levels.collection_detail(self.catalog, self.catalog.get_collection(name).id) or self.settings.detail

    def set_collection_detail(self, name: str, detail: str | None) -> str:
        """Give a collection its detail level (None: follow the store's setting again); audited. Returns the
        level its ingests now use. Photos already indexed keep theirs until an ingest at a higher one."""
        detail = None if detail is None else levels.check_level(detail)
        self.start_writes()
        with self.catalog.transaction():
            target = self.catalog.get_collection(name)
            levels.set_collection_detail(self.catalog, target.id, detail)
            self._record(CollectionDetailSet(purpose=target.purpose, collection=name, detail=detail or "default"))
        return self.collection_detail(name)

    # -- people -----------------------------------------------------------------------------
    @property
    def people(self):
        """Faces grouped into persons (people.operations.PeopleOps), its decisions audited as this engine's actor."""
        from faceindex.people.operations import PeopleOps

        return PeopleOps(self.catalog, actor=self.actor, audit=self._record, face_search=self.store.search)

    # -- maintenance ------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts of the store (a read: StoreNotFoundError when it does not exist), with `pending_erasures`."""
        self.check_store()
        stats = self.catalog.stats()
        stats["model_id"] = self.store.model_id
        stats["index"] = self.store.index().kind if stats["faces"] else "empty"
        stats["pending_erasures"] = self.pending_erasures()
        return stats

    def remove_image(self, ref: str | int | os.PathLike | bytes) -> int:
        """Remove an image (by id, path or stored provenance) from every collection; returns faces removed.

        A path whose name is not valid UTF-8 matches its lossless `fsbytes:` provenance (store.uris)."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            rows = [self.catalog.image_by_id(int(ref))]
        else:
            rows = next((found for uri in uri_candidates(ref) if (found := self.catalog.images_by_uri(uri))), [])
        if not rows:
            raise InvalidInputError(f"no image {ref!r} in this store")
        return delete_images(self.privacy.ctx, [r["id"] for r in rows], ImageRemoved(named=len(rows)))

    def remove_collection(self, name: str) -> int:
        """Delete a collection with all its images and faces (any size: ids go in chunks); returns faces removed."""
        collection = self.catalog.get_collection(name)
        ids = self.catalog.image_ids_of_collection(collection.id)
        return delete_images(self.privacy.ctx, ids, CollectionDeleted(collection=name),
                             collection_ids=[collection.id])

    def reindex(self) -> int:
        self.start_writes()
        index = self.store.rebuild_index()
        self._record(Reindexed(faces=len(index)))
        return len(index)


class _ActingAs(Engine):
    """`Engine.acting_as(actor)`: shares every part of `root` (store, catalog, audit log, settings, clock, the
    lazily loaded pipeline and policy, opt-out cache) and differs only in `actor`."""

    def __init__(self, root: Engine, actor: str):  # no super().__init__: nothing is opened or loaded
        self.__dict__.update(root.__dict__)
        self._root = root.__dict__.get("_root", root)
        self.actor = actor  # also gives the view its own privacy operations, acting as `actor`

    @property
    def pipeline(self) -> FacePipeline:
        return self._root.pipeline

    @property
    def policy(self) -> ThresholdPolicy:
        return self._root.policy

    def start_writes(self) -> None:
        self._root.start_writes()  # one start-up per store, whichever view writes first

    @property
    def writes_open(self) -> bool:
        return self._root.writes_open

    def close(self) -> None:
        """The root engine owns the store: closing a view closes nothing."""
