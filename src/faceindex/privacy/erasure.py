"""Complete erasure: plan by route, journal the intent, delete, rewrite the index, redact or delete the store's
own uploaded photos, scrub every store file."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from faceindex.errors import InvalidInputError, NotFoundError, StoreError
from faceindex.privacy.probe import selfie_faceprint, strict_threshold
from faceindex.privacy.scrub import DERIVED_DIRS, ErasureLock, Scrubber
from faceindex.privacy.uploads import UploadEraser
from faceindex.store.catalog import id_chunks, marks, utcnow

if TYPE_CHECKING:
    from faceindex.engine import Engine, ImageSource

log = logging.getLogger(__name__)

FAILPOINT_ENV = "FACEINDEX_FAILPOINT"
"""Crash-test hook: when set to 'erasure:planned' or 'erasure:deleted' the erasure stops there (prints
`failpoint NAME` on stderr and sleeps) so a test can kill -9 it and check that reopening finishes it."""

JURISDICTION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
"""ISO 3166-1 alpha-2 country, optionally with an ISO 3166-2 subdivision: CA, DE, US-IL."""


@dataclass
class Match:
    """A face an erasure by selfie would delete, shown to the operator before anything is deleted."""

    face_id: int
    image_id: int
    path: str
    collection: str
    score: float
    same_photo_as: list[int] = field(default_factory=list)
    via: int | None = None
    """With `expand`: the matched face whose faceprint found this one (None: the selfie found it)."""


@dataclass
class ErasurePlan:
    """What one erasure will delete, by id. `params` go to the audit log: ids and route, never a name,
    a path or a faceprint, so an erased person is not re-identifiable from the append-only log."""

    route: str
    face_ids: list[int] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    collection_ids: list[int] = field(default_factory=list)
    subject_ids: list[int] = field(default_factory=list)
    purpose: str | None = None
    params: dict = field(default_factory=dict)
    matches: list[Match] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.face_ids or self.image_ids or self.collection_ids or self.subject_ids)


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
    shared_with_copies: int = 0
    """Erased faceprints that faces outside the erasure hold byte for byte (identical photos kept in other
    collections): those copies are not erased by this request; erase them by image or selfie if they must go."""


def jurisdiction_code(code: str) -> str:
    value = code.strip().upper()
    if not JURISDICTION.match(value):
        raise InvalidInputError(f"not an ISO 3166 code: {code!r} (expected e.g. CA, DE, US-IL)")
    return value


def jurisdiction_covers(query: str, tag: str) -> bool:
    """A country code covers its subdivisions (US covers US-IL); a subdivision covers only itself."""
    return tag == query or tag.startswith(query + "-")


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        sys.stderr.write(f"failpoint {name}\n")
        sys.stderr.flush()
        time.sleep(3600)


class Eraser:
    """Plans and executes erasures. Every route ends in `Engine._delete_images` (one transaction, one
    audit event, index rewritten through `FaceStore.forget_vectors`), wrapped in a journal so a crash
    at any point is finished by `resume()` when the store next opens."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.catalog = engine.catalog
        self.scrubber = Scrubber(engine)
        self.uploads = UploadEraser(engine)

    # -- planning -------------------------------------------------------------------------------
    def plan_subject(self, name: str, purpose: str | None = None) -> ErasurePlan:
        """The subject's enrolled faces (and byte-identical copies of them), plus the subject record."""
        subject = self.engine.privacy.subjects.get(name)
        faces = self.engine.privacy.subjects.face_ids(subject.id)
        return ErasurePlan("subject", face_ids=self.with_copies(faces), subject_ids=[subject.id], purpose=purpose,
                           params={"subject_id": subject.id})

    def plan_selfie(self, source: ImageSource | list[ImageSource], purpose: str | None = None,
                    threshold: float | None = None, expand: bool = False) -> ErasurePlan:
        """Every face scoring >= the strict threshold against the largest face of the selfie (or of any of
        several selfies: more photos of the person recover faces one photo scores below the threshold).

        `expand`: also every face scoring >= a stricter threshold against one of those matches (one hop:
        the person's other photos find the faces the selfie alone misses). The threshold is the strict
        one for gallery x (1 + matches) comparisons, so the expected false matches stay within the same
        bound. Measured on ../shared/faces/people with 1 500 LFW faces as bystanders (one photo per person
        as the selfie): 90.2 % of the person's faces found without, 97.4 % with, no false match in either.
        """
        sources = list(source) if isinstance(source, list | tuple) else [source]
        gallery = len(self.engine.store.index())
        limit = threshold if threshold is not None else strict_threshold(self.engine.policy, gallery)
        hits: dict[int, float] = {}
        for item in sources:
            vector = selfie_faceprint(self.engine, item)
            self._collect(hits, vector, limit)
            del vector  # only ids and scores leave this function
        via: dict[int, int] = {}
        params = {"threshold": round(limit, 4), "gallery": gallery, "selfies": len(sources)}
        if expand and hits:
            second = max(limit, strict_threshold(self.engine.policy, gallery * (1 + len(hits))))
            for fid, vector in self.catalog.face_vectors(sorted(hits)):
                for found in self._collect(hits, vector, second):
                    via[found] = fid
            params.update(expanded=True, expand_threshold=round(second, 4), found_via_matches=len(via))
        details = self.catalog.face_details(list(hits))
        by_image: dict[int, list[int]] = {}
        for fid in details:
            by_image.setdefault(details[fid]["image_id"], []).append(fid)
        matches = [Match(fid, row["image_id"], row["uri"], row["collection"], round(hits[fid], 4),
                         [f for f in by_image[row["image_id"]] if f != fid], via.get(fid))
                   for fid, row in sorted(details.items(), key=lambda kv: -hits[kv[0]])]
        return ErasurePlan("selfie", face_ids=self.with_copies([m.face_id for m in matches]), purpose=purpose,
                           params=params, matches=matches)

    def _collect(self, hits: dict[int, float], vector, limit: float) -> list[int]:
        """Add the faces scoring >= limit against `vector` to `hits` (best score kept); return the new ids."""
        new = []
        for fid, score in self.engine.store.search_above(vector, limit, limit=1_000_000):
            if fid not in hits:
                new.append(fid)
            hits[fid] = max(score, hits.get(fid, -1.0))
        return new

    def plan_collection(self, name: str, purpose: str | None = None) -> ErasurePlan:
        collection = self.catalog.get_collection(name)
        return ErasurePlan("collection", collection_ids=[collection.id], purpose=purpose,
                           params={"collection_id": collection.id, "collection": collection.name})

    def plan_jurisdiction(self, code: str, purpose: str | None = None) -> ErasurePlan:
        """Every collection tagged with the code, and every face of subjects tagged with it (and the subjects)."""
        code = jurisdiction_code(code)
        collections = [c.id for c in self.catalog.list_collections()
                       if any(jurisdiction_covers(code, j) for j in c.jurisdictions)]
        subjects = [s.id for s in self.engine.privacy.subjects.list()
                    if any(jurisdiction_covers(code, j) for j in s.jurisdictions)]
        faces = [f for sid in subjects for f in self.engine.privacy.subjects.face_ids(sid)]
        return ErasurePlan("jurisdiction", face_ids=self.with_copies(faces), collection_ids=collections,
                           subject_ids=subjects, purpose=purpose, params={"jurisdiction": code})

    def plan_image(self, ref: str | int, purpose: str | None = None) -> ErasurePlan:
        """An image by id or path, in every collection, and every other copy with the same content (sha256)."""
        rows = []
        if isinstance(ref, int) or str(ref).isdigit():
            rows = [self.catalog.image_by_id(int(ref))]
        else:
            path = Path(ref)
            rows = self.catalog.images_by_uri(str(path.resolve())) or self.catalog.images_by_uri(str(ref))
            if path.is_file():
                from faceindex.ingest.scanner import hash_file

                digest = hash_file(path)[1]
                rows += list(self.catalog.conn.execute("SELECT * FROM images WHERE sha256 = ?", (digest,)))
        if not rows:
            raise NotFoundError(f"no image {ref!r} in this store")
        hashes = sorted({r["sha256"] for r in rows if r["sha256"]})
        ids = {r["id"] for r in rows}
        for digest in hashes:
            ids.update(r[0] for r in self.catalog.conn.execute("SELECT id FROM images WHERE sha256 = ?", (digest,)))
        return ErasurePlan("image", image_ids=sorted(ids), purpose=purpose, params={"image_ids": sorted(ids)})

    def with_copies(self, face_ids: list[int]) -> list[int]:
        """The faces plus byte-identical copies of their faceprints made when the same photo (same sha256)
        was ingested again elsewhere: erasing one copy of a biometric must erase them all."""
        ids = {int(f) for f in face_ids}
        for chunk in id_chunks(face_ids):
            ids.update(r[0] for r in self.catalog.conn.execute(
                "SELECT f2.id FROM faces f JOIN images i ON i.id = f.image_id JOIN images i2 ON i2.sha256 = i.sha256"
                f" JOIN faces f2 ON f2.image_id = i2.id AND f2.embedding = f.embedding WHERE f.id IN ({marks(chunk)})",
                chunk))
        return sorted(ids)

    def summary(self, plan: ErasurePlan) -> dict:
        """What the plan would delete, counted (for the confirmation prompt); plus the matches of a selfie."""
        images = set(plan.image_ids)
        for cid in plan.collection_ids:
            images.update(r[0] for r in self.catalog.conn.execute("SELECT id FROM images WHERE collection_id = ?",
                                                                  (cid,)))
        faces = set(plan.face_ids) | set(self._faces_of(sorted(images)))
        return {"route": plan.route, "faces": len(faces), "images": len(images),
                "collections": len(plan.collection_ids), "subjects": len(plan.subject_ids), **plan.params,
                "matches": [m.__dict__ for m in plan.matches]}

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
        with ErasureLock(self.engine.store.root, wait=True):
            return self._run(job_id, resumed=resumed)

    def resume(self) -> list[ErasureResult]:
        """Finish every journaled erasure (run when the store opens, e.g. after kill -9 mid-erasure).

        Skipped while another live process holds the erasure lock: its erasure is running, not crashed
        (the lock dies with its process, so after a kill -9 the next open always finishes the job).
        """
        results: list[ErasureResult] = []
        with ErasureLock(self.engine.store.root, wait=False) as lock:
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
        if self.catalog._depth:
            raise StoreError("an erasure must run outside any open transaction (its WAL scrub needs that)")
        route = job["route"]
        face_ids, image_ids = json.loads(job["face_ids"]), json.loads(job["image_ids"])
        collection_ids, subject_ids = json.loads(job["collection_ids"]), json.loads(job["subject_ids"])
        collection_ids = [c for c in collection_ids if self._exists("collections", c)]
        image_ids = sorted({i for i in image_ids if self._exists("images", i)} | {
            r[0] for c in collection_ids for r in conn.execute("SELECT id FROM images WHERE collection_id = ?", (c,))})
        face_ids = [f for f in face_ids if self._exists("faces", f)]
        subject_ids = [s for s in subject_ids if self._exists("subjects", s)]
        uploads = self.uploads.plan(route, face_ids, image_ids)  # an upload left without faces goes with its record
        image_ids = sorted(set(image_ids) | set(uploads.emptied))
        all_faces = sorted(set(face_ids) | set(self._faces_of(image_ids)))
        vectors = self._vectors(all_faces)  # in memory only: to prove afterwards that no file still holds them
        result = ErasureResult(job_id, route, images=len(image_ids), collections=len(collection_ids),
                               subjects=len(subject_ids))
        _failpoint("erasure:planned")
        if image_ids or face_ids or collection_ids or subject_ids or not resumed:

            def drop_records() -> dict[str, int]:
                for table, ids in (("collections", collection_ids), ("subjects", subject_ids)):
                    conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in ids])
                self.uploads.journal(job_id, uploads)  # commits with the deletion: a crash after it resumes
                return {"collections": len(collection_ids), "subjects": len(subject_ids)}

            audit = {"route": route, "erasure": job_id, **json.loads(job["params"])}
            if resumed:
                audit["resumed"] = True
            action = "purge" if route == "retention" else "erase"
            result.faces = self.engine._delete_images(image_ids, action, audit, purpose=job["purpose"],
                                                      face_ids=face_ids, also=drop_records)
        _failpoint("erasure:deleted")
        result.uploads_deleted, result.uploads_redacted = self.uploads.finish()
        result.files_deleted = self.scrubber.delete_derived(all_faces, image_ids)
        result.complete, result.verified, result.shared_with_copies = self.scrubber.scrub(vectors, vacuum=resumed)
        if result.complete:
            with self.catalog.transaction():
                conn.execute("DELETE FROM erasure_jobs WHERE id = ?", (job_id,))
            self.scrubber.checkpoint()
        return result

    # -- helpers --------------------------------------------------------------------------------
    def _exists(self, table: str, row_id: int) -> bool:
        return self.catalog.conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is not None

    def _faces_of(self, image_ids: list[int]) -> list[int]:
        return [r[0] for chunk in id_chunks(image_ids) for r in self.catalog.conn.execute(
            f"SELECT id FROM faces WHERE image_id IN ({marks(chunk)})", chunk)]

    def _vectors(self, face_ids: list[int]) -> list[bytes]:
        return [v.tobytes() for _, v in self.catalog.face_vectors(face_ids)]


__all__ = ["DERIVED_DIRS", "Eraser", "ErasurePlan", "ErasureResult", "Match"]
