"""Complete erasure: journal the intent, delete, rewrite the index, redact or delete the store's own uploaded
photos, scrub every store file. (Plans are made by privacy.plans.)"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from faceindex.errors import NotFoundError, StoreError
from faceindex.people.store import PeopleStore
from faceindex.privacy.actions import Erased, Purged
from faceindex.privacy.context import PrivacyContext, chunked_query
from faceindex.privacy.deletion import delete_images
from faceindex.privacy.scrub import DERIVED_DIRS, ErasureLock, Scrubber
from faceindex.privacy.uploads import UploadEraser
from faceindex.store.catalog import Catalog, id_chunks, marks, utcnow

log = logging.getLogger(__name__)

FAILPOINT_ENV = "FACEINDEX_FAILPOINT"
"""Crash-test hook: when set to 'erasure:planned' or 'erasure:deleted' the erasure stops there (prints
`failpoint NAME` on stderr and sleeps) so a test can kill -9 it and check that reopening finishes it."""


@dataclass
class Match:
    """A face found for an erasure by selfie, shown to the operator before anything is deleted."""

    face_id: int
    image_id: int
    path: str
    collection: str
    score: float
    same_photo_as: list[int] = field(default_factory=list)
    via: int | None = None
    """With `expand`: the matched face whose faceprint found this one (None: the selfie found it)."""
    fmr: float | None = None
    """False-match rate of `score` (None: the model has no calibration)."""
    state: str | None = None
    """Person route: 'confirmed' or 'auto' (the face's membership), 'search' (added by expand)."""


@dataclass
class ErasurePlan:
    """What one erasure will delete, by id. `params` go to the audit log: ids and route, never a name,
    a path or a faceprint, so an erased person is not re-identifiable from the append-only log."""

    route: str
    face_ids: list[int] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    collection_ids: list[int] = field(default_factory=list)
    subject_ids: list[int] = field(default_factory=list)
    person_ids: list[int] = field(default_factory=list)
    """People (grouping) whose records (and names) go too; journaled as params["person_id"]."""
    purpose: str | None = None
    params: dict = field(default_factory=dict)
    matches: list[Match] = field(default_factory=list)
    also_found_by_search: list[Match] = field(default_factory=list)
    """Selfie route: faces an ordinary search with the same selfie returns (score >= `search_threshold`) that
    this plan will NOT erase, because erasure uses a stricter threshold (a wrong match would delete someone
    else's face). Shown so the officer can look at them and include them by face id (`include_faces`)."""
    search_threshold: float | None = None
    search_threshold_fmr: float | None = None
    included_faces: list[int] = field(default_factory=list)
    """Face ids the officer added to the plan by hand (after looking at `also_found_by_search`)."""
    unrecognised_jurisdictions: list[dict] = field(default_factory=list)
    """Jurisdiction route: collections and subjects whose tags are not ISO 3166 codes (written before tags were
    validated, e.g. "GERMANY"): the plan cannot tell whether they belong to the jurisdiction, so it names them."""

    @property
    def empty(self) -> bool:
        return not (self.face_ids or self.image_ids or self.collection_ids or self.subject_ids or self.person_ids)


@dataclass
class ErasureResult:
    job_id: int
    route: str
    faces: int = 0
    images: int = 0
    collections: int = 0
    subjects: int = 0
    files_deleted: int = 0
    uploads_deleted: int = 0
    uploads_redacted: int = 0
    """Uploaded photos (files the store owns) deleted, or rewritten with the erased faces obscured."""
    complete: bool = True
    """False when another process kept the WAL open: the rest finishes at the next open (journal kept)."""
    verified: bool = False
    """True when the store's files were scanned and none holds an erased faceprint (apart from byte-identical
    faceprints that faces outside the erasure still hold, e.g. the same photo in another collection)."""
    vectors_backend: str = "faiss"
    """Where the faceprints were searched: "faiss" (embedded), "milvus-lite" or "milvus" (store.vectors)."""
    vectors_residue: str = ""
    """Empty when the backend proves erasure byte by byte; otherwise what may still linger there, and until when
    (Milvus: deleted rows in sealed segments until compaction and garbage collection). Never reported verified."""
    catalog_backend: str = "sqlite"
    """Where the catalog's rows were deleted: "sqlite" (the store's own file) or "postgresql"."""
    catalog_residue: str = ""
    """Empty when the catalog's deletion is proven byte by byte (SQLite: secure_delete, checkpoint, scan); on
    PostgreSQL what may still linger (WAL segments until recycled, backups, replicas) and until when."""
    shared_with_copies: int = 0
    """Erased faceprints that faces outside the erasure hold byte for byte (identical photos kept in other
    collections): those copies are not erased by this request; erase them by image or selfie if they must go."""


def _match_dict(match: Match) -> dict:
    """A match as the plan summary lists it; `state` only where the route sets one (the person route)."""
    out = asdict(match)
    if out["state"] is None:
        del out["state"]
    return out


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        sys.stderr.write(f"failpoint {name}\n")
        sys.stderr.flush()
        time.sleep(3600)


def with_copies(catalog: Catalog, face_ids: list[int]) -> list[int]:
    """The faces plus byte-identical copies of their faceprints made when the same photo (same sha256)
    was ingested again elsewhere: erasing one copy of a biometric must erase them all."""
    ids = {int(f) for f in face_ids}
    for chunk in id_chunks(face_ids):
        ids.update(r[0] for r in catalog.conn.execute(
            "SELECT f2.id FROM faces f JOIN images i ON i.id = f.image_id JOIN images i2 ON i2.sha256 = i.sha256"
            f" JOIN faces f2 ON f2.image_id = i2.id AND f2.embedding = f.embedding WHERE f.id IN ({marks(chunk)})",
            chunk))
    return sorted(ids)


class Eraser:
    """Executes erasure plans. Every route ends in `privacy.deletion.delete_images` (one transaction, one
    audit event, index rewritten through `FaceStore.forget_vectors`), wrapped in a journal so a crash
    at any point is finished by `resume()` when the store next opens."""

    def __init__(self, ctx: PrivacyContext):
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.scrubber = Scrubber(ctx)
        self.uploads = UploadEraser(ctx)

    def with_copies(self, face_ids: list[int]) -> list[int]:
        return with_copies(self.catalog, face_ids)

    def summary(self, plan: ErasurePlan) -> dict:
        """What the plan would delete, counted (for the confirmation prompt), with the matches of a selfie and
        the faces an ordinary search finds that the plan leaves (`also_found_by_search`)."""
        images = set(plan.image_ids)
        for cid in plan.collection_ids:
            images.update(r[0] for r in self.catalog.conn.execute("SELECT id FROM images WHERE collection_id = ?",
                                                                  (cid,)))
        faces = set(plan.face_ids) | set(self._faces_of(sorted(images)))
        # The route's params first: the counts of what the plan deletes win over a param of the same name (the
        # person route's params hold "faces", the person's size, which expand and include_faces go beyond).
        return {**plan.params, "route": plan.route, "faces": len(faces), "images": len(images),
                "collections": len(plan.collection_ids), "subjects": len(plan.subject_ids),
                "people": len(plan.person_ids),
                "matches": [_match_dict(m) for m in plan.matches],
                "also_found_by_search": [_match_dict(m) for m in plan.also_found_by_search],
                "search_threshold": plan.search_threshold, "search_threshold_fmr": plan.search_threshold_fmr,
                "included_faces": list(plan.included_faces),
                "unrecognised_jurisdictions": list(plan.unrecognised_jurisdictions)}

    # -- executing ------------------------------------------------------------------------------
    def journal(self, plan: ErasurePlan) -> int:
        """Record the intent (ids only). Joins the caller's transaction, so a consent withdrawal and the
        erasure it triggers commit together; the deletion itself happens in `run`."""
        with self.catalog.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO erasure_jobs (route, face_ids, image_ids, collection_ids, subject_ids, purpose, params,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (plan.route, json.dumps(plan.face_ids), json.dumps(plan.image_ids), json.dumps(plan.collection_ids),
                 json.dumps(plan.subject_ids), plan.purpose, json.dumps(plan.params), utcnow()))
            return int(cur.lastrowid)

    def execute(self, plan: ErasurePlan) -> ErasureResult:
        """Journal the plan, then run it to completion."""
        return self.run(self.journal(plan))

    def run(self, job_id: int, *, resumed: bool = False) -> ErasureResult:
        """Delete what the journal row names, rewrite the index, redact or delete the store's uploaded photos
        that showed the erased faces, delete derived files, scrub the SQLite files."""
        with ErasureLock(self.ctx.store.root, wait=True):
            return self._run(job_id, resumed=resumed)

    def pending(self) -> int:
        """Erasures journaled but not finished (interrupted, or failing to finish)."""
        return self.catalog.count("SELECT count(*) FROM erasure_jobs")

    def pending_scope(self) -> tuple[set[int], set[int], set[int]]:
        """(face ids, image ids, collection ids) that unfinished erasures will delete: searches leave them out."""
        faces: set[int] = set()
        images: set[int] = set()
        collections: set[int] = set()
        for row in self.catalog.conn.execute("SELECT face_ids, image_ids, collection_ids FROM erasure_jobs"):
            faces.update(json.loads(row[0]))
            images.update(json.loads(row[1]))
            collections.update(json.loads(row[2]))
        return faces, images, collections

    def resume(self) -> list[ErasureResult]:
        """Finish every journaled erasure (run when the store opens, e.g. after kill -9 mid-erasure).

        Skipped while another live process holds the erasure lock: its erasure is running, not crashed
        (the lock dies with its process, so after a kill -9 the next open always finishes the job).
        """
        results: list[ErasureResult] = []
        with ErasureLock(self.ctx.store.root, wait=False) as lock:
            if not lock.held:
                return results
            for (job_id,) in self.catalog.conn.execute("SELECT id FROM erasure_jobs ORDER BY id").fetchall():
                log.warning("finishing interrupted erasure %d", job_id)
                results.append(self._run(job_id, resumed=True))
        return results

    def _run(self, job_id: int, *, resumed: bool) -> ErasureResult:
        conn = self.catalog.conn
        job = conn.execute("SELECT * FROM erasure_jobs WHERE id = ?", (job_id,)).fetchone()
        if job is None:
            raise NotFoundError(f"no erasure job {job_id}")
        if conn.in_transaction:
            raise StoreError("an erasure must run outside any open transaction (its WAL scrub needs that)")
        people = PeopleStore(self.catalog)
        has_people = people.ready()  # outside the transaction: a store without the people tables gets them here
        route = job["route"]
        face_ids, image_ids = json.loads(job["face_ids"]), json.loads(job["image_ids"])
        collection_ids, subject_ids = json.loads(job["collection_ids"]), json.loads(job["subject_ids"])
        collection_ids = self._existing("collections", collection_ids)
        image_ids = sorted(set(self._existing("images", image_ids)) | {
            r[0] for c in collection_ids for r in conn.execute("SELECT id FROM images WHERE collection_id = ?", (c,))})
        face_ids = self._existing("faces", face_ids)
        subject_ids = self._existing("subjects", subject_ids)
        uploads = self.uploads.plan(route, face_ids, image_ids)  # an upload left without faces goes with its record
        image_ids = sorted(set(image_ids) | set(uploads.emptied))
        all_faces = sorted(set(face_ids) | set(self._faces_of(image_ids)))
        vectors = self._vectors(all_faces)  # in memory only: to prove afterwards that no file still holds them
        result = ErasureResult(job_id, route, images=len(image_ids), collections=len(collection_ids),
                               subjects=len(subject_ids))
        _failpoint("erasure:planned")
        person = json.loads(job["params"]).get("person_id") if route in ("person", "opt-out") else None
        if image_ids or face_ids or collection_ids or subject_ids or person is not None or not resumed:

            def drop_records() -> dict[str, int]:
                conn.executemany("DELETE FROM subjects WHERE id = ?", [(i,) for i in subject_ids])
                if has_people:
                    # The person erased by the person route (or its opt-out), and any person this erasure left
                    # without faces: a group's name is personal data and must not outlive its faces.
                    if person is not None:
                        people.delete_person(int(person))
                    people.prune_empty()
                self.uploads.journal(job_id, uploads)  # commits with the deletion: a crash after it resumes
                return {"collections": len(collection_ids), "subjects": len(subject_ids)}

            kind = Purged if route == "retention" else Erased
            event = kind(purpose=job["purpose"], route=route, erasure=job_id, details=json.loads(job["params"]),
                         resumed=True if resumed else None)
            result.faces = delete_images(self.ctx, image_ids, event, face_ids=face_ids,
                                         collection_ids=collection_ids, also=drop_records)
        _failpoint("erasure:deleted")
        result.uploads_deleted, result.uploads_redacted = self.uploads.finish()
        result.files_deleted = self.scrubber.delete_derived(all_faces, image_ids)
        result.complete, result.verified, result.shared_with_copies = self.scrubber.scrub(vectors, vacuum=resumed)
        caps = self.ctx.store.vector_capabilities
        result.vectors_backend = caps.backend
        result.vectors_residue = "" if caps.proves_erasure_bytes else caps.residue_note
        catalog = self.catalog.capabilities
        result.catalog_backend, result.catalog_residue = catalog.backend, catalog.residue_note
        if result.complete:
            with self.catalog.transaction():
                conn.execute("DELETE FROM erasure_jobs WHERE id = ?", (job_id,))
            self.scrubber.checkpoint()
        return result

    # -- helpers --------------------------------------------------------------------------------
    def _existing(self, table: str, ids: list[int]) -> list[int]:
        """The ids that still have a row in `table` (a resumed job may have finished part of its work)."""
        found = {r[0] for r in chunked_query(self.catalog, f"SELECT id FROM {table} WHERE id IN ({{marks}})", ids)}
        return [i for i in ids if i in found]

    def _faces_of(self, image_ids: list[int]) -> list[int]:
        return [r[0] for r in chunked_query(self.catalog, "SELECT id FROM faces WHERE image_id IN ({marks})",
                                            image_ids)]

    def _vectors(self, face_ids: list[int]) -> list[bytes]:
        return [v.tobytes() for _, v in self.catalog.face_vectors(face_ids)]


__all__ = ["DERIVED_DIRS", "Eraser", "ErasurePlan", "ErasureResult", "Match", "with_copies"]
