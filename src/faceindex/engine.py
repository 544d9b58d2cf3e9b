"""The Engine: the one object the CLI, the REST service and the tests build to use faceindex."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from faceindex.config import Settings
from faceindex.errors import FaceIndexError, InvalidInputError, NoFaceError, PolicyError
from faceindex.ingest.runner import IngestReport, IngestRunner, ProgressFn
from faceindex.matching import Candidate, ProbeFace, ProbeResult, ThresholdPolicy, load_calibration
from faceindex.pipeline.analyse import AnalysedImage, FacePipeline
from faceindex.pipeline.face_choice import choose_face
from faceindex.privacy.actions import CollectionCreated, CollectionDeleted, ImageRemoved
from faceindex.privacy.audit import AuditEvent, AuditLog
from faceindex.privacy.context import PrivacyContext
from faceindex.privacy.deletion import delete_images
from faceindex.privacy.events import Event
from faceindex.privacy.jurisdictions import jurisdiction_codes
from faceindex.privacy.operations import PrivacyOps
from faceindex.store.catalog import Collection
from faceindex.store.face_store import FaceStore
from faceindex.store.index_factory import IndexParams

ImageSource = str | os.PathLike | bytes


@dataclass
class VerifyResult:
    same_person: bool
    score: float
    threshold: float
    fmr: float | None


class Engine:
    """Wires the pipeline (models, loaded lazily), the store and the privacy layer together.

    Use as a context manager, or call `close()`: the index is persisted on close.
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
                               ef_search=self.settings.index_ef_search)
        self.catalog = self.store.catalog
        self.audit = AuditLog(self.catalog)
        self._pipeline = pipeline
        self._policy: ThresholdPolicy | None = None
        # Time source of retention decisions (timezone-aware UTC); injectable so tests control expiry.
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.privacy = PrivacyOps(self._privacy_context())
        self.privacy.on_open()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            self._pipeline = FacePipeline(self.settings)
        return self._pipeline

    @property
    def policy(self) -> ThresholdPolicy:
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

    def _record(self, event: Event | str, *, purpose: str | None = None, params: dict | None = None,
                counts: dict | None = None) -> None:
        """Audit one event as this engine's actor: a typed `privacy.events` event, or (older call sites) an
        action name with params and counts, which the audit log checks value by value all the same."""
        if isinstance(event, Event):
            self.audit.record(event, actor=self.actor)
            return
        self.audit.record(AuditEvent(event, actor=self.actor, purpose=purpose, params=params or {},
                                     counts=counts or {}))

    # -- collections ------------------------------------------------------------------------
    def create_collection(self, name: str, basis: str, purpose: str, *, jurisdictions: Sequence[str] = (),
                          retention_days: int | None = None, owner: str | None = None) -> Collection:
        codes = jurisdiction_codes(jurisdictions)  # ISO 3166 or an InvalidInputError naming the format
        with self.catalog.transaction():
            collection = self.catalog.create_collection(name, basis, purpose, jurisdictions=codes,
                                                        retention_days=retention_days, owner=owner)
            self._record(CollectionCreated(purpose=purpose, collection=name, basis=basis,
                                           jurisdictions=list(collection.jurisdictions), retention_days=retention_days))
        return collection

    def collection(self, name: str, basis: str | None = None, purpose: str | None = None, **policy) -> Collection:
        """Get a collection, creating it when basis and purpose are given and it does not exist yet."""
        existing = self.catalog.find_collection(name)
        if existing is None:
            if not basis or not purpose:
                raise PolicyError(f"collection {name!r} does not exist; creating it needs a legal basis and a purpose")
            return self.create_collection(name, basis, purpose, **policy)
        if basis and basis != existing.legal_basis:
            raise InvalidInputError(f"collection {name!r} exists with basis {existing.legal_basis!r}, not {basis!r}")
        return existing

    # -- ingest -----------------------------------------------------------------------------
    def ingest(self, paths: Iterable[str | os.PathLike], collection: str, *, basis: str | None = None,
               purpose: str | None = None, progress: ProgressFn | None = None, **policy) -> IngestReport:
        """Index every photo under `paths` into `collection` (created if basis and purpose are given)."""
        target = self.collection(collection, basis, purpose, **policy)
        model_id = self.pipeline.model_id
        runner = IngestRunner(self.store, self.pipeline, self.settings, face_filter=self.privacy.ingest_filter(),
                              progress=progress)
        paths = [str(p) for p in paths]
        report = runner.run(paths, target, model_id)
        # Folder names can be personal data and the audit log can never be erased: keep a digest, not the names.
        paths_digest = hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()
        self.store.index()  # catch the index up and persist it before reporting success
        self.store.save_index()
        self._record("ingest", purpose=target.purpose, params={"collection": target.name,
                     "paths": len(paths), "paths_sha256": paths_digest}, counts=report.counts())
        return report

    # -- analysis and search ----------------------------------------------------------------
    def analyse(self, source: ImageSource) -> AnalysedImage:
        return self.pipeline.analyse(source)

    def search(self, sources: Sequence[ImageSource], purpose: str, *, top_k: int | None = None,
               threshold: float | None = None, face: int | None = None,
               probe_names: Sequence[str] | None = None) -> list[ProbeResult]:
        """Search every face of each probe photo (or only face number `face`, 0-based, largest first)."""
        if not purpose or not purpose.strip():
            raise PolicyError("a search needs a purpose or case reference")
        top_k = min(top_k or self.settings.top_k, self.settings.max_candidates)
        self.store.check_model(self.pipeline.model_id)
        gallery = len(self.store.index())
        limit = self.policy.threshold(gallery, threshold)
        results = []
        for n, source in enumerate(sources):
            name = probe_names[n] if probe_names else (str(source) if not isinstance(source, bytes) else f"upload-{n}")
            try:
                analysis = self.pipeline.analyse(source)
            except FaceIndexError as exc:
                results.append(ProbeResult(name, error=exc.message))
                continue
            faces = sorted(analysis.faces, key=lambda f: -f.size_px)
            if face is not None:
                faces = faces[face:face + 1]
            results.append(ProbeResult(name, [self._search_face(f, top_k, limit, gallery) for f in faces], None,
                                       gallery))
        self._record("search", purpose=purpose.strip(),
                     params={"probes": len(results), "top_k": top_k, "threshold": round(limit, 4)},
                     counts={"faces": sum(len(r.faces or []) for r in results),
                             "candidates": sum(len(f.candidates) for r in results for f in r.faces or [])})
        return results

    def _search_face(self, face, top_k: int, limit: float, gallery: int) -> ProbeFace:
        fmr = self.policy.fmr(limit)
        result = ProbeFace(box=face.box, threshold=round(limit, 4), threshold_fmr=fmr,
                           expected_false_candidates=None if fmr is None else round(fmr * gallery, 6))
        if not face.ok:
            result.status, result.reason = "refused", face.rejected
            return result
        hits = [(fid, s) for fid, s in self.store.search(face.embedding[None, :], top_k)[0] if s >= limit]
        details = self.catalog.face_details([fid for fid, _ in hits])
        subjects = self.privacy.subject_names([fid for fid, _ in hits])
        for fid, score in hits:
            row = details.get(fid)
            if row is None:
                continue
            result.candidates.append(Candidate(
                face_id=fid, image_id=row["image_id"], path=row["uri"],
                box=(row["box_left"], row["box_top"], row["box_right"], row["box_bottom"]),
                collection=row["collection"], score=round(score, 4), fmr=self.policy.fmr(score),
                subject=subjects.get(fid)))
        by_image: dict[int, list[int]] = {}
        for cand in result.candidates:
            by_image.setdefault(cand.image_id, []).append(cand.face_id)
        for cand in result.candidates:
            cand.same_photo_as = [f for f in by_image[cand.image_id] if f != cand.face_id]
        return result

    def verify(self, a: ImageSource, b: ImageSource, *, threshold: float | None = None) -> VerifyResult:
        """Are the main faces of two photos the same person? 1:1, so the gallery size is 1.

        The main face is `choose_face` 'prominent' (a large face near the centre), the rule `faceindex
        eval` measures on labelled folders.
        """
        vectors = []
        for source in (a, b):
            analysed = self.pipeline.analyse(source)
            face = choose_face(analysed.accepted, analysed.width, analysed.height)
            if face is None:
                raise NoFaceError(f"no usable face in {source if not isinstance(source, bytes) else 'upload'}")
            vectors.append(face.embedding)
        score = float(np.dot(vectors[0], vectors[1]))
        limit = self.policy.threshold(1, threshold)
        self._record("verify", purpose=None, params={"threshold": round(limit, 4)}, counts={"pairs": 1})
        return VerifyResult(score >= limit, round(score, 4), round(limit, 4), self.policy.fmr(score))

    # -- maintenance ------------------------------------------------------------------------
    def stats(self) -> dict:
        stats = self.catalog.stats()
        stats["model_id"] = self.store.model_id
        stats["index"] = self.store.index().kind if stats["faces"] else "empty"
        return stats

    def remove_image(self, ref: str | int) -> int:
        """Remove an image (by id or path) from every collection; returns faces removed."""
        if isinstance(ref, int) or str(ref).isdigit():
            rows = [self.catalog.image_by_id(int(ref))]
        else:
            rows = self.catalog.images_by_uri(str(Path(ref).resolve())) or self.catalog.images_by_uri(str(ref))
        if not rows:
            raise InvalidInputError(f"no image {ref!r} in this store")
        return delete_images(self.privacy.ctx, [r["id"] for r in rows], ImageRemoved(named=len(rows)))

    def remove_collection(self, name: str) -> int:
        """Delete a collection with all its images and faces (any size: ids go in chunks); returns faces removed."""
        collection = self.catalog.get_collection(name)
        ids = [r[0] for r in self.catalog.conn.execute("SELECT id FROM images WHERE collection_id = ?",
                                                         (collection.id,))]
        return delete_images(self.privacy.ctx, ids, CollectionDeleted(collection=name),
                             collection_ids=[collection.id])

    def reindex(self) -> int:
        index = self.store.rebuild_index()
        self._record("reindex", counts={"faces": len(index)})
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

    def close(self) -> None:
        """The root engine owns the store: closing a view closes nothing."""
