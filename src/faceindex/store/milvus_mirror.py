"""Keeps a Milvus collection in step with the catalog: catch-up, crash repair, erasure, exact threshold scans."""

from __future__ import annotations

import json
import logging
import uuid

import numpy as np

from faceindex.errors import StoreError
from faceindex.store.catalog import Catalog
from faceindex.store.milvus_vectors import COLLECTION, MilvusVectors

log = logging.getLogger(__name__)

WATERMARK_KEY = "milvus_watermark"
"""Catalog meta: JSON {"max_face_id", "epoch", "collection"} of the last state flushed to Milvus."""
STORE_ID_KEY = "store_id"


class MilvusMirror:
    """The Milvus side of a FaceStore: the same watermark scheme as the FAISS file, kept in the catalog.

    Writes go catalog first, then Milvus (upsert, flush), then the watermark `{max_face_id, epoch}` into the
    catalog's meta. So after a crash Milvus can lag the catalog (faces missing: their ids lie above the
    watermark) or hold faces the catalog deleted (the epoch moved past the watermark's), never the reverse
    unnoticed. `open_for_writing` checks watermark and row counts and, when they disagree, diffs the id sets:
    missing faces are re-added from the catalog, orphans deleted.

    Construction does no work; the server is contacted on first use. Callers (FaceStore) hold their own
    locks around every method.
    """

    def __init__(self, catalog: Catalog, url: str, *, collection: str = COLLECTION, dim: int = 128):
        self.catalog, self.url, self.collection, self.dim = catalog, url, collection, dim
        self._vectors: MilvusVectors | None = None
        self._bound = False
        self._wm: dict | None = None  # in memory; persisted by save()
        self._writes = False

    @property
    def vectors(self) -> MilvusVectors:
        if self._vectors is None:
            self._vectors = MilvusVectors(self.url, collection=self.collection)
        return self._vectors

    @property
    def capabilities(self):
        return self.vectors.capabilities

    # -- binding ------------------------------------------------------------------------------
    def _store_id(self) -> str | None:
        sid = self.catalog.get_meta(STORE_ID_KEY)
        if sid is None and self._writes:
            sid = uuid.uuid4().hex
            self.catalog.set_meta(STORE_ID_KEY, sid)
        return sid

    def _bind(self) -> bool:
        """Bind to the collection once the catalog knows its model; False while it does not (no faces yet)."""
        if self._bound:
            return True
        model = self.catalog.get_meta("model_id")
        if model is None:
            return False
        sid = self._store_id()
        if sid is None:
            raise StoreError(f"the Milvus vectors at {self.vectors.location} were never built for this store; run a "
                             "command that writes (e.g. `faceindex reindex`) first")
        self._bound = self.vectors.bind(model, self.dim, sid, create=True)
        return self._bound

    def _saved_watermark(self) -> dict:
        raw = self.catalog.get_meta(WATERMARK_KEY)
        try:
            wm = json.loads(raw) if raw else {}
            if wm.get("collection") == self.collection:
                return {"max_face_id": int(wm["max_face_id"]), "epoch": int(wm["epoch"])}
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable %s in the catalog; the Milvus vectors are checked in full", WATERMARK_KEY)
        return {"max_face_id": 0, "epoch": -1}

    # -- lifecycle ---------------------------------------------------------------------------
    def open_for_writing(self) -> None:
        """Connect, bind, and repair what a crash between the catalog's and Milvus' writes left."""
        self._writes = True
        _ = self.vectors  # connect now: an unreachable server fails the command that writes, before any work
        if not self._bind():
            return
        self._wm = self._saved_watermark()
        if (self._wm["epoch"] != self.catalog.epoch or self._wm["max_face_id"] != self.catalog.max_face_id()
                or self.vectors.count() != self._catalog_count()):
            self.repair()

    def close(self) -> None:
        if self._vectors is not None:
            if self._writes:
                self.save()
            self._vectors.close()
            self._vectors = None
        self._bound = self._writes = False

    # -- synchronisation ---------------------------------------------------------------------
    def behind(self) -> bool:
        return (self._wm is None or self._wm["epoch"] != self.catalog.epoch
                or self.catalog.max_face_id() > self._wm["max_face_id"])

    def caught_up(self) -> MilvusVectors:
        """The collection with every catalog faceprint in it (re-added or deleted as needed)."""
        if not self._bind():
            return _Empty(self.vectors)
        if self._wm is None:
            self._wm = self._saved_watermark()
        if self._wm["epoch"] != self.catalog.epoch:
            self.repair()
        elif self.catalog.max_face_id() > self._wm["max_face_id"]:
            top = self.catalog.max_face_id()
            for ids, vectors in self.catalog.iter_embeddings(after_id=self._wm["max_face_id"]):
                self.vectors.add(ids, vectors)
            self._wm["max_face_id"] = top
            self.vectors.flush()
        return self.vectors

    def repair(self) -> dict[str, int]:
        """Diff the id sets of catalog and Milvus; re-add missing faces, delete orphans. Returns the counts."""
        top, epoch = self.catalog.max_face_id(), self.catalog.epoch
        truth = self._catalog_ids()
        held = self.vectors.all_ids(upto=top)
        missing = np.setdiff1d(truth, held, assume_unique=True)
        orphans = np.setdiff1d(held, truth, assume_unique=True)
        first = self._saved_watermark()["epoch"] < 0  # never filled: a first fill, not a repair
        if (len(missing) or len(orphans)) and not first:
            log.warning("Milvus vectors out of step with the catalog: re-adding %d, deleting %d",
                        len(missing), len(orphans))
        for lo in range(0, len(missing), 50_000):
            rows = self.catalog.face_vectors([int(i) for i in missing[lo:lo + 50_000]])
            if rows:
                self.vectors.add(np.array([r[0] for r in rows]), np.stack([r[1] for r in rows]))
        if len(orphans):
            self.vectors.delete(orphans)
        self.vectors.flush()
        self._wm = {"max_face_id": top, "epoch": epoch}
        self._persist()
        return {"added": int(len(missing)), "deleted": int(len(orphans))}

    def rebuild(self) -> MilvusVectors:
        """Drop the collection and load every catalog faceprint into a new one (`faceindex reindex`)."""
        if self.catalog.get_meta("model_id") is None:
            return self.vectors
        if self.vectors.exists():
            self.vectors.drop()
        self._bound = False
        self._bind()
        top, epoch = self.catalog.max_face_id(), self.catalog.epoch
        for ids, vectors in self.catalog.iter_embeddings():
            self.vectors.add(ids, vectors)
        self.vectors.flush()
        self._wm = {"max_face_id": top, "epoch": epoch}
        self._persist()
        return self.vectors

    def forget(self, face_ids: list[int]) -> None:
        """Delete faces the catalog already deleted (flush, compaction request, verification query)."""
        if not self._bind():
            return
        if self._wm is None:
            self._wm = self._saved_watermark()
        if self._wm["epoch"] == self.catalog.epoch - 1:
            self.vectors.delete(np.asarray(face_ids, dtype=np.int64))
            self._wm["epoch"] = self.catalog.epoch
            self._persist()
        else:
            self.repair()
        if self.vectors.backend == "milvus-lite":
            # Lite keeps deleted rows in its segment files and does not compact on request; dropping the
            # collection deletes them (measured), so rebuild it from the catalog: O(faces) per erasure, the
            # price of not leaving erased faceprints on disk. A crash mid-rebuild is repaired at the next open.
            self.rebuild()

    def save(self) -> None:
        if self._vectors is not None and self._bound:
            self.vectors.flush()
            self._persist()

    def _persist(self) -> None:
        if self._writes and self._wm is not None:
            self.catalog.set_meta(WATERMARK_KEY, json.dumps(self._wm | {"collection": self.collection}))

    # -- catalog side ------------------------------------------------------------------------
    def _catalog_count(self) -> int:
        return self.catalog.conn.execute("SELECT count(*) FROM faces WHERE embedding IS NOT NULL").fetchone()[0]

    def _catalog_ids(self) -> np.ndarray:
        rows = self.catalog.conn.execute("SELECT id FROM faces WHERE embedding IS NOT NULL ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def search_above(self, vector: np.ndarray, threshold: float, limit: int) -> list[tuple[int, float]]:
        """Every catalog face with cosine >= threshold, best first: an exact scan of the catalog, not Milvus.

        Erasure and opt-out use this, where a face an approximate index misses is a privacy failure; the
        catalog is the source of truth and holds every faceprint (cost: one read of the faceprints, ~0.5 s
        per 1 M faces). On a catalog of billions this scan belongs in the cluster, which is not built yet.
        """
        q = np.asarray(vector, dtype=np.float32).ravel()
        q = q / (np.linalg.norm(q) or 1.0)
        hits_ids, hits_scores = [], []
        for ids, vectors in self.catalog.iter_embeddings():
            norms = np.linalg.norm(vectors, axis=1)
            sims = (vectors @ q) / np.where(norms == 0, 1, norms)
            keep = sims >= threshold
            hits_ids.append(ids[keep])
            hits_scores.append(sims[keep])
        if not hits_ids:
            return []
        ids, scores = np.concatenate(hits_ids), np.concatenate(hits_scores)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [(int(ids[i]), float(scores[i])) for i in order]


class _Empty:
    """What `caught_up` answers before the store has any faceprint (no model bound, no collection yet)."""

    def __init__(self, vectors: MilvusVectors):
        self.kind = vectors.kind

    def __len__(self) -> int:
        return 0

    def search(self, queries, k):
        n = len(np.atleast_2d(queries))
        return np.full((n, k), -np.inf, dtype=np.float32), np.full((n, k), -1, dtype=np.int64)
