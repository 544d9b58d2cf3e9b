"""Named subjects: enrolment from photos or face ids, consent records, and which faces are whose."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceindex.errors import ConflictError, InvalidInputError, NoFaceError, NotFoundError, PolicyError
from faceindex.ingest.scanner import iter_files
from faceindex.privacy.actions import ConsentGiven, ConsentWithdrawn, SubjectEnrolled
from faceindex.privacy.context import PrivacyContext, chunked_query
from faceindex.privacy.erasure import Eraser, ErasurePlan, ErasureResult
from faceindex.privacy.jurisdictions import jurisdiction_codes
from faceindex.store.uris import path_to_uri

CONSENT_STATES = ("given", "withdrawn")


@dataclass(frozen=True)
class Subject:
    """A named person. `consent` is the latest consent status (None: never recorded)."""

    id: int
    name: str
    jurisdictions: tuple[str, ...]
    created_at: str
    last_interaction_at: str
    faces: int = 0
    consent: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Subject:
        return cls(row["id"], row["name"], tuple(j for j in row["jurisdictions"].split(",") if j), row["created_at"],
                   row["last_interaction_at"], row["faces"], row["consent"])

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "jurisdictions": list(self.jurisdictions),
                "created_at": self.created_at, "last_interaction_at": self.last_interaction_at,
                "faces": self.faces, "consent": self.consent}


@dataclass
class EnrolResult:
    subject: Subject | None
    linked: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(photo, reason) of each photo that gave no face to enrol."""


@dataclass
class ConsentResult:
    subject: Subject
    status: str
    erasure: ErasureResult | None = None


_SELECT = ("SELECT s.*, (SELECT count(*) FROM subject_faces sf WHERE sf.subject_id = s.id) AS faces,"
           " (SELECT status FROM consents c WHERE c.subject_id = s.id ORDER BY c.id DESC LIMIT 1) AS consent"
           " FROM subjects s")


class Subjects:
    """Enrolment links existing faces (or the single face of each enrolment photo) to a named subject.

    The audit log names subjects by id only: erasing a subject then leaves no name in the append-only log.
    """

    def __init__(self, ctx: PrivacyContext, eraser: Eraser):
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.eraser = eraser

    # -- queries --------------------------------------------------------------------------------
    def find(self, name: str) -> Subject | None:
        row = self.catalog.conn.execute(_SELECT + " WHERE s.name = ?", (name,)).fetchone()
        return None if row is None else Subject.from_row(row)

    def get(self, name: str) -> Subject:
        subject = self.find(name)
        if subject is None:
            raise NotFoundError(f"no subject named {name!r}")
        return subject

    def list(self) -> list[Subject]:
        return [Subject.from_row(r) for r in self.catalog.conn.execute(_SELECT + " ORDER BY s.name")]

    def face_ids(self, subject_id: int) -> list[int]:
        return [r[0] for r in self.catalog.conn.execute(
            "SELECT face_id FROM subject_faces WHERE subject_id = ? ORDER BY face_id", (subject_id,))]

    def names_for_faces(self, face_ids: Sequence[int]) -> dict[int, str]:
        return {r[0]: r[1] for r in chunked_query(
            self.catalog, "SELECT sf.face_id, s.name FROM subject_faces sf JOIN subjects s ON s.id = sf.subject_id"
            " WHERE sf.face_id IN ({marks})", [int(f) for f in face_ids])}

    def faceprints(self, face_ids: Sequence[int]) -> np.ndarray:
        """Stored faceprints (n, 128) float32 of the given faces that have one, in face id order (in memory only)."""
        rows = self.catalog.face_vectors(list(face_ids))
        return np.stack([v for _, v in rows]) if rows else np.zeros((0, 128), np.float32)

    def consents(self, subject_id: int) -> list[dict]:
        return [dict(r) for r in self.catalog.conn.execute(
            "SELECT id, status, at, evidence, scope FROM consents WHERE subject_id = ? ORDER BY id", (subject_id,))]

    def touch(self, subject_ids: Sequence[int]) -> None:
        """Record an interaction with the subjects now (BIPA retention counts 3 years from the last one)."""
        now = self.ctx.clock().isoformat(timespec="seconds")
        self.catalog.conn.executemany("UPDATE subjects SET last_interaction_at = ? WHERE id = ?",
                                      [(now, int(s)) for s in subject_ids])

    # -- changes --------------------------------------------------------------------------------
    def enrol(self, name: str, photos: Sequence[str | os.PathLike] = (), *, collection: str | None = None,
              basis: str | None = None, purpose: str | None = None, collection_jurisdictions: Sequence[str] = (),
              jurisdictions: Sequence[str] = (), face_ids: Sequence[int] = (), consent_evidence: str | None = None,
              consent_scope: str | None = None, case: str | None = None) -> EnrolResult:
        """Enrol (or add faces to) subject `name` from photos ingested into `collection`, or from face ids.

        Each enrolment photo must show exactly one usable face: with several, which one is the subject
        is a guess, so the photo is skipped (link the right face by id instead). In a collection whose
        legal basis is consent, a given consent must be on record or come with this call.
        """
        name = name.strip()
        if not name:
            raise InvalidInputError("a subject needs a name")
        if not photos and not face_ids:
            raise InvalidInputError("enrol needs photos or face ids")
        codes = list(jurisdiction_codes(jurisdictions))
        existing = self.find(name)
        result = EnrolResult(existing)
        target = None
        if photos:
            if not collection:
                raise InvalidInputError("enrolling from photos needs a collection")
            target = self.ctx.collection(collection, basis, purpose, jurisdictions=tuple(collection_jurisdictions))
            consented = existing is not None and existing.consent == "given"
            if target.legal_basis == "consent" and not consented and not consent_evidence:
                raise PolicyError(f"collection {target.name!r} is consent-based: record {name!r}'s consent first "
                                  "(consent evidence reference)")
            self.ctx.ingest(photos, target.name)
        candidates = self._photo_faces(photos, target.id, result) if target is not None else []
        candidates += self._checked_face_ids(face_ids)
        taken = self.names_for_faces(candidates)
        for fid in list(candidates):
            if fid in taken and taken[fid] != name:
                result.skipped.append((f"face {fid}", "already enrolled as another subject"))
                candidates.remove(fid)
        if not candidates and existing is None:
            reasons = "; ".join(f"{p}: {r}" for p, r in result.skipped) or "no face"
            raise NoFaceError(f"nothing to enrol for {name!r}: {reasons}")
        now = self.ctx.clock().isoformat(timespec="seconds")
        with self.catalog.transaction() as conn:
            if existing is None:
                cur = conn.execute("INSERT INTO subjects (name, jurisdictions, created_at, last_interaction_at)"
                                   " VALUES (?, ?, ?, ?)", (name, ",".join(codes), now, now))
                subject_id = int(cur.lastrowid)
            else:
                subject_id = existing.id
                merged = sorted(set(existing.jurisdictions) | set(codes))
                conn.execute("UPDATE subjects SET jurisdictions = ?, last_interaction_at = ? WHERE id = ?",
                             (",".join(merged), now, subject_id))
            if consent_evidence:
                self._add_consent(subject_id, "given", consent_evidence, consent_scope, case)
            conn.executemany("INSERT OR IGNORE INTO subject_faces (face_id, subject_id, linked_at) VALUES (?, ?, ?)",
                             [(fid, subject_id, now) for fid in candidates])
            self.ctx.record(SubjectEnrolled(purpose=case, subject_id=subject_id, new=existing is None,
                                            collection_id=target.id if target else None, faces=len(candidates),
                                            photos_skipped=len(result.skipped)))
        result.subject = self.get(name)
        result.linked = candidates
        return result

    def consent(self, name: str, status: str, *, evidence: str | None = None, scope: str | None = None,
                case: str | None = None) -> ConsentResult:
        """Record consent given or withdrawn. Withdrawal erases the subject's faceprints (enrolled faces and
        byte-identical copies); the subject and its consent history stay as evidence of the withdrawal."""
        if status not in CONSENT_STATES:
            raise InvalidInputError(f"consent status must be one of {', '.join(CONSENT_STATES)}; got {status!r}")
        subject = self.get(name)
        eraser = self.eraser
        job = None
        with self.catalog.transaction():
            self._add_consent(subject.id, status, evidence, scope, case)
            if status == "given":
                self.touch([subject.id])
            else:
                plan = ErasurePlan("consent-withdrawal", face_ids=eraser.with_copies(self.face_ids(subject.id)),
                                   purpose=case, params={"subject_id": subject.id})
                job = eraser.journal(plan)  # same transaction: the withdrawal never commits without its erasure
        erasure = eraser.run(job) if job is not None else None
        return ConsentResult(self.get(name), status, erasure)

    # -- helpers --------------------------------------------------------------------------------
    def _add_consent(self, subject_id: int, status: str, evidence: str | None, scope: str | None,
                     case: str | None) -> None:
        at = self.ctx.clock().isoformat(timespec="seconds")
        cur = self.catalog.conn.execute(
            "INSERT INTO consents (subject_id, status, at, evidence, scope) VALUES (?, ?, ?, ?, ?)",
            (subject_id, status, at, evidence, scope))
        # The evidence reference stays in the consents table (erasable); the log keeps ids and scope only.
        kind = ConsentGiven if status == "given" else ConsentWithdrawn
        self.ctx.record(kind(purpose=case, subject_id=subject_id, consent_id=int(cur.lastrowid), scope=scope))

    def _photo_faces(self, photos: Sequence[str | os.PathLike], collection_id: int, result: EnrolResult) -> list[int]:
        chosen = []
        for path in iter_files(photos):
            row = self.catalog.find_image(collection_id, path_to_uri(path))
            if row is None or row["status"] != "indexed":
                result.skipped.append((path_to_uri(path), row["error"] if row is not None else "not indexed"))
                continue
            faces = [r[0] for r in self.catalog.conn.execute(
                "SELECT id FROM faces WHERE image_id = ? AND embedding IS NOT NULL", (row["id"],))]
            if len(faces) != 1:
                result.skipped.append((str(path), "no usable face" if not faces else
                                       f"{len(faces)} faces: enrol from a photo of this person alone, or by face id"))
                continue
            chosen.append(faces[0])
        return chosen

    def _checked_face_ids(self, face_ids: Sequence[int]) -> list[int]:
        ids = [int(f) for f in face_ids]
        for fid in ids:
            row = self.catalog.conn.execute("SELECT embedding IS NOT NULL FROM faces WHERE id = ?", (fid,)).fetchone()
            if row is None:
                raise NotFoundError(f"no face with id {fid}")
            if not row[0]:
                raise ConflictError(f"face {fid} was rejected for quality and has no faceprint to enrol")
        return ids
