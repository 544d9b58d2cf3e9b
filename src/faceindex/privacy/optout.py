"""Opt-out ("do not index me"): keyed sign-projection templates that drop matching faces at ingest.

What is stored, and what that protects (the trade-off, stated plainly):

- A plain hash of a faceprint cannot support matching (two photos of one person never give the same
  bytes), so the template must keep similarity. We store a *keyed sign random projection*: 4096 bits,
  bit i = sign(r_i . x), with the rows r_i drawn from a Gaussian stream derived from a secret 32-byte key
  (SHAKE-256). For two faceprints at angle t the expected fraction of differing bits is t / pi, so the
  Hamming distance estimates the cosine: cos(pi * h / 4096). Measured on 465 real faces the estimate's
  error has std 0.006 near the operating threshold (0.01 overall), i.e. the template matches almost as
  well as the faceprint.
- Without the key the bits are uniformly random with respect to any faceprint: a copy of the catalog
  alone does not reveal the face, cannot be matched against another system's faceprints, and two stores
  with different keys hold unlinkable templates. Deleting the key revokes every template at once.
- With the key, 4096 sign bits of a 128-d vector can be inverted to an approximation close enough to
  match the person. We chose matching accuracy over irreversibility (fewer bits would resist inversion
  better but miss opted-out people); so the key is kept outside the catalog, in `optout.key` beside it
  (0600) or at the path in FACEINDEX_OPTOUT_KEY_FILE, e.g. on another volume. A lost key voids all
  opt-outs; ingest then refuses to run rather than silently index opted-out people.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceindex.errors import NoFaceError, NotFoundError, PolicyError, StoreError
from faceindex.fusion import fuse
from faceindex.ingest.runner import FaceFilter
from faceindex.matching import fusion_policy, load_fusion_calibration
from faceindex.people.operations import PeopleOps
from faceindex.privacy.actions import OptedOut, OptOutWithdrawn
from faceindex.privacy.context import ImageSource, PrivacyContext
from faceindex.privacy.erasure import Eraser, ErasurePlan, ErasureResult
from faceindex.privacy.probe import selfie_faceprint, strict_threshold
from faceindex.store.catalog import utcnow

log = logging.getLogger(__name__)

BITS = 4096
SCHEME = f"srp{BITS}-shake256-v1"
KEY_ENV = "FACEINDEX_OPTOUT_KEY_FILE"
KEY_FILE = "optout.key"
DIM = 128


class TemplateKey:
    """The secret that turns faceprints into protected templates; deterministic across library versions
    (the projection comes from SHAKE-256 and Box-Muller, not from a numpy generator that may change)."""

    def __init__(self, key: bytes):
        if len(key) < 32:
            raise StoreError("opt-out key is shorter than 32 bytes")
        self.key_id = hmac.new(key, b"faceindex-optout-key-id", hashlib.sha256).hexdigest()[:16]
        stream = hashlib.shake_256(hmac.new(key, b"faceindex-optout-projection-v1", hashlib.sha256).digest())
        words = np.frombuffer(stream.digest(BITS * DIM * 4), dtype="<u4").astype(np.float64)
        u1, u2 = (words[0::2] + 1.0) / 2.0**32, words[1::2] / 2.0**32  # u1 in (0, 1]: log(u1) is finite
        radius = np.sqrt(-2.0 * np.log(u1))
        normals = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
        self.projection = normals.reshape(BITS, DIM).astype(np.float32)

    def protect(self, vectors: np.ndarray) -> np.ndarray:
        """Templates (n, BITS/8) uint8 of faceprints (n, 128)."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        return np.packbits(vectors @ self.projection.T > 0, axis=1)


def estimate_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated cosine (n, t) between the faceprints behind templates a (n, B) and b (t, B)."""
    wa, wb = np.ascontiguousarray(a).view(np.uint64), np.ascontiguousarray(b).view(np.uint64)
    out = np.empty((len(wa), len(wb)), dtype=np.float32)
    for start in range(0, len(wb), 4096):  # bounded memory: n x 4096 x 64 words per step
        block = wb[start:start + 4096]
        differing = np.bitwise_count(wa[:, None, :] ^ block[None, :, :]).sum(axis=2)
        out[:, start:start + len(block)] = np.cos(np.pi * differing / (wa.shape[1] * 64))
    return out


def key_path(store_root: Path) -> Path:
    return Path(os.environ.get(KEY_ENV) or Path(store_root) / KEY_FILE)


def load_key(store_root: Path, *, create: bool) -> TemplateKey | None:
    """The store's template key; created (0600) on the first opt-out, None if absent and not created."""
    path = key_path(store_root)
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
            handle.flush()
            os.fsync(handle.fileno())
    return TemplateKey(path.read_bytes())


@dataclass(frozen=True)
class OptOutRecord:
    """What may be shown of an opt-out: no template bytes, no photo (none is kept)."""

    id: int
    reference: str | None
    created_at: str
    scheme: str
    templates: int = 1
    """Templates this opt-out holds: one per face of the person for an opt-out by person."""

    def to_dict(self) -> dict:
        return {"id": self.id, "reference": self.reference, "created_at": self.created_at, "scheme": self.scheme,
                "templates": self.templates}


@dataclass
class OptOutResult:
    optout_id: int
    threshold: float
    erasure: ErasureResult
    templates: int = 1
    person: int | None = None


class TemplateCache:
    """The loaded key and templates, shared by the OptOuts of every actor view of one store."""

    def __init__(self):
        self.key: TemplateKey | None = None
        self.templates: tuple[tuple, np.ndarray] | None = None


class OptOuts:
    """Adds opt-outs and provides the ingest filter built from their templates (`ingest_filter()`, asked for
    at each ingest: an opt-out recorded by another process since this one opened is honoured)."""

    def __init__(self, ctx: PrivacyContext, eraser: Eraser, cache: TemplateCache | None = None):
        self.ctx = ctx
        self.catalog = ctx.catalog
        self.eraser = eraser
        self.cache = cache or TemplateCache()

    def count(self) -> int:
        return self.catalog.count("SELECT count(*) FROM optout_templates")

    def ingest_filter(self) -> FaceFilter | None:
        """The filter an ingest must apply now: drops faces matching a template; None when there is none."""
        return self.face_filter if self.count() else None

    def list(self) -> list[OptOutRecord]:
        rows = self.catalog.conn.execute(
            "SELECT id, reference, created_at, scheme, length(template) FROM optout_templates ORDER BY id").fetchall()
        return [OptOutRecord(int(r[0]), r[1], r[2], r[3], int(r[4]) // (BITS // 8)) for r in rows]

    def withdraw(self, optout_id: int, reason: str | None = None) -> None:
        """The person withdraws their opt-out: delete the template so later ingests index them again.

        Faces erased when they opted out stay erased (nothing is kept to restore them); re-ingesting
        the photos indexes them again. The template row is deleted under `secure_delete` and the WAL
        is checkpointed, so its bytes leave the store's files.
        """
        with self.catalog.transaction() as conn:
            if conn.execute("DELETE FROM optout_templates WHERE id = ?", (optout_id,)).rowcount == 0:
                raise NotFoundError(f"no opt-out {optout_id}")
            self.ctx.record(OptOutWithdrawn(purpose=reason, optout_id=optout_id))
        self.catalog.checkpoint()

    def add(self, selfie: ImageSource, reference: str | None = None) -> OptOutResult:
        """Keep a protected template of the selfie's largest face and erase matching faces already indexed.

        The photo is read, never copied; the faceprint lives only in memory during this call.
        """
        vector = selfie_faceprint(self.ctx, selfie)
        key = self._template_key(create=True)
        template = key.protect(vector)[0].tobytes()
        gallery = len(self.ctx.store.index())
        threshold = strict_threshold(self.ctx.policy(), gallery)
        hits = [fid for fid, _ in self.ctx.store.search_above(vector, threshold, limit=1_000_000)]
        del vector
        eraser = self.eraser
        with self.catalog.transaction() as conn:
            cur = conn.execute("INSERT INTO optout_templates (scheme, key_id, template, reference, created_at)"
                               " VALUES (?, ?, ?, ?, ?)", (SCHEME, key.key_id, template, reference, utcnow()))
            optout_id = int(cur.lastrowid)
            plan = ErasurePlan("opt-out", face_ids=eraser.with_copies(hits), purpose=reference,
                               params={"optout_id": optout_id, "threshold": round(threshold, 4), "gallery": gallery})
            self.ctx.record(OptedOut(purpose=reference, optout_id=optout_id, scheme=SCHEME,
                                     threshold=round(threshold, 4), faces_matched=len(plan.face_ids)))
            job = eraser.journal(plan)  # the template and the sweep it promises commit together
        erasure = eraser.run(job)
        return OptOutResult(optout_id, threshold, erasure)

    def add_person(self, person: int | str, reference: str | None = None) -> OptOutResult:
        """Opt a person of the people grouping out: keep a protected template of each of its faces (so a new
        photo of them is dropped at ingest if it matches any, at the strict threshold for that many templates),
        and erase its faces, the person record (its name) and the faces its fused probe finds at the strict
        threshold calibrated for that many probes, unless they belong to another person or were rejected from
        this one. One opt-out (one id, all templates) in `opt-outs`; withdrawn as one.
        """
        ops = PeopleOps(self.catalog)
        person_id = ops.resolve(person)
        states = ops.store.faces_of(person_id)
        rows = self.catalog.face_vectors(sorted(states))
        if not rows:
            raise NoFaceError(f"person {person_id} has no faces to make opt-out templates from (all were split "
                              "off, rejected or erased): opt out with a photo of them instead")
        vectors = np.stack([v for _, v in rows])
        key = self._template_key(create=True)
        templates = key.protect(vectors)
        gallery = len(self.ctx.store.index())
        model_id = self.ctx.store.model_id or self.ctx.model_id()
        policy = fusion_policy(self.ctx.policy(), load_fusion_calibration(model_id), len(rows))
        threshold = strict_threshold(policy, gallery)
        found = [f for f, _ in self.ctx.store.search_above(fuse(vectors), threshold, limit=1_000_000)
                 if f not in states]
        del vectors
        others = ops.store.persons_of(found)
        rejected = ops.store.rejected_from(person_id)
        hits = sorted(set(states) | {f for f in found if f not in others and f not in rejected})
        eraser = self.eraser
        now = utcnow()
        with self.catalog.transaction() as conn:
            # One row, one opt-out: its templates side by side in one blob (n x BITS/8 bytes), so it is listed,
            # audited and withdrawn as one request (no schema change: a selfie's opt-out is the n = 1 case).
            cur = conn.execute("INSERT INTO optout_templates (scheme, key_id, template, reference, created_at)"
                               " VALUES (?, ?, ?, ?, ?)", (SCHEME, key.key_id, templates.tobytes(), reference, now))
            first = int(cur.lastrowid)
            plan = ErasurePlan("opt-out", face_ids=eraser.with_copies(hits), person_ids=[person_id], purpose=reference,
                               params={"optout_id": first, "threshold": round(threshold, 4), "gallery": gallery,
                                       "person_id": person_id, "templates": len(templates)})
            self.ctx.record(OptedOut(purpose=reference, optout_id=first, scheme=SCHEME,
                                     threshold=round(threshold, 4), faces_matched=len(plan.face_ids)))
            job = eraser.journal(plan)  # the templates and the sweep they promise commit together
        erasure = eraser.run(job)
        return OptOutResult(first, threshold, erasure, len(templates), person_id)

    def face_filter(self, vectors: np.ndarray) -> np.ndarray:
        """Ingest filter: True for each faceprint (n, 128) that matches an opt-out template (drop it)."""
        templates = self._templates()
        if len(templates) == 0 or len(vectors) == 0:
            return np.zeros(len(vectors), dtype=bool)
        threshold = strict_threshold(self.ctx.policy(), len(templates))
        scores = estimate_cosine(self._template_key(create=False).protect(vectors), templates)
        return scores.max(axis=1) >= threshold

    def _template_key(self, *, create: bool) -> TemplateKey:
        if self.cache.key is None:
            self.cache.key = load_key(self.ctx.store.root, create=create)
        if self.cache.key is None:
            raise PolicyError(f"opt-out templates exist but their key {key_path(self.ctx.store.root)} is "
                              "missing: restore it (or set FACEINDEX_OPTOUT_KEY_FILE) before ingesting")
        return self.cache.key

    def _templates(self) -> np.ndarray:
        """All templates, re-read when another process added one (checked per call: one cheap query)."""
        state = tuple(self.catalog.conn.execute("SELECT count(*), coalesce(max(id), 0) FROM optout_templates")
                      .fetchone())
        if self.cache.templates is None or self.cache.templates[0] != state:
            rows = self.catalog.conn.execute("SELECT key_id, template FROM optout_templates ORDER BY id").fetchall()
            key = self._template_key(create=False) if rows else None
            if key is not None and any(r[0] != key.key_id for r in rows):
                raise PolicyError("some opt-out templates were made with another key than "
                                  f"{key_path(self.ctx.store.root)}: restore that key before ingesting")
            data = np.frombuffer(b"".join(bytes(r[1]) for r in rows), dtype=np.uint8)
            self.cache.templates = (state, data.reshape(-1, BITS // 8))  # an opt-out by person holds several
        return self.cache.templates[1]
