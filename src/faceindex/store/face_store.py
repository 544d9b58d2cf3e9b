"""A store directory: the catalog plus the vector index kept in step with it by a watermark."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from faceindex.errors import ModelMismatchError, StoreError
from faceindex.store.catalog import Catalog
from faceindex.store.index_factory import IndexParams
from faceindex.store.vector_index import VectorIndex

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite"
INDEX_FILE = "index.faiss"
EMBEDDING_DIM = 128


class FaceStore:
    """Owns `<root>/catalog.sqlite` (truth) and `<root>/index.faiss` (derived, rebuildable).

    The index file carries a watermark `{"max_face_id", "epoch"}`: faces are only ever appended with
    growing ids, and the catalog's epoch grows on every deletion. So an index whose epoch matches
    only needs the faces above its max id appended; any other index is rebuilt. The index is saved
    after the catalog commits, so it can lag behind the catalog after a crash, never run ahead.
    """

    def __init__(self, root: Path, *, approximate_above: int = VectorIndex.DEFAULT_APPROXIMATE_ABOVE,
                 params: IndexParams | None = None, ef_search: int | None = None):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {self.root}: {exc}") from exc
        self.catalog = Catalog(self.root / CATALOG_FILE)
        self.approximate_above = approximate_above
        self.params = params
        self.ef_search = ef_search  # applied to a loaded index too (a search-time setting, not a build one)
        self._index: VectorIndex | None = None
        self._watermark = {"max_face_id": 0, "epoch": -1}
        self._dirty = False
        if self.catalog.get_meta("index_saved_epoch") not in (None, str(self.catalog.epoch)):
            # Deletions committed but the index file was not rewritten (crash mid-erasure): finish now,
            # so the erased faceprints leave the index file at the first open.
            self.rebuild_index()

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    @property
    def model_id(self) -> str | None:
        return self.catalog.get_meta("model_id")

    def close(self) -> None:
        self.save_index()
        self.catalog.close()

    # -- index synchronisation ------------------------------------------------------------------
    def index(self) -> VectorIndex:
        """The index, loaded or rebuilt on first use and caught up with the catalog on every call."""
        if self._index is None:
            self._index = self._load()
        if self._watermark["epoch"] != self.catalog.epoch:
            return self.rebuild_index()
        self._append_new()
        return self._index

    def _new_index(self) -> VectorIndex:
        # work_dir: an approximate index of the hnsw-sq8-mmap layout keeps its memory-mapped vectors
        # here before the first save, so that save is a rename within the store directory.
        return self._tuned(VectorIndex(
            EMBEDDING_DIM, self.model_id or "unbound", approximate_above=self.approximate_above, params=self.params,
            work_dir=self.root,
        ))

    def _tuned(self, index: VectorIndex) -> VectorIndex:
        """Apply the `ef_search` override: a search-time setting, so it holds for built and loaded indexes alike."""
        if self.ef_search is not None and index.params.ef_search != self.ef_search:
            index.set_ef_search(self.ef_search)
        return index

    def _load(self) -> VectorIndex:
        if not self.index_path.exists():
            self._watermark = {"max_face_id": 0, "epoch": self.catalog.epoch}
            return self._new_index()
        try:
            index, watermark = VectorIndex.load(self.index_path)
        except StoreError as exc:
            log.warning("index file unusable (%s); rebuilding from the catalog", exc)
            self._watermark = {"max_face_id": 0, "epoch": -1}
            return self._new_index()
        if self.model_id and index.model_id not in (self.model_id, "unbound"):
            self._watermark = {"max_face_id": 0, "epoch": -1}
            return self._new_index()
        self._watermark = {"max_face_id": int(watermark.get("max_face_id", 0)),
                           "epoch": int(watermark.get("epoch", -1))}
        return self._tuned(index)

    def _append_new(self) -> None:
        for ids, vectors in self.catalog.iter_embeddings(after_id=self._watermark["max_face_id"]):
            self._index.add(ids, vectors)
            self._watermark["max_face_id"] = int(ids[-1])
            self._dirty = True

    def rebuild_index(self) -> VectorIndex:
        """Rebuild the index from the catalog's faceprints and persist it (`faceindex reindex`)."""
        self._index = self._new_index()
        self._watermark = {"max_face_id": 0, "epoch": self.catalog.epoch}
        self._append_new()
        self._dirty = True
        self.save_index()
        return self._index

    def save_index(self) -> None:
        """Persist the index atomically if it changed since the last save."""
        if self._index is None or not self._dirty:
            return
        self._index.save(self.index_path, dict(self._watermark))
        self.catalog.set_meta("index_saved_epoch", str(self._watermark["epoch"]))
        self._dirty = False

    def forget_vectors(self, face_ids: list[int]) -> None:
        """Drop faces already deleted from the catalog from the in-memory index and rewrite the file.

        Called after the catalog transaction that deleted them committed (and bumped the epoch).
        """
        if not face_ids:
            return
        if self._index is None:
            self._index = self._load()
        if self._watermark["epoch"] == self.catalog.epoch - 1:
            self._index.remove(np.asarray(face_ids, dtype=np.int64))
            self._watermark["epoch"] = self.catalog.epoch
            self._dirty = True
            self.save_index()
        else:
            self.rebuild_index()

    # -- queries ----------------------------------------------------------------------------
    def check_model(self, model_id: str) -> None:
        current = self.model_id
        if current is not None and current != model_id:
            raise ModelMismatchError(
                f"this store holds faceprints of model {current!r}; the probe was embedded with {model_id!r}"
            )

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, up to k (face_id, cosine) pairs, best first."""
        index = self.index()
        if len(index) == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        scores, ids = index.search(np.asarray(vectors, dtype=np.float32), k)
        return [
            [(int(i), float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def search_above(self, vector: np.ndarray, threshold: float, limit: int = 10_000) -> list[tuple[int, float]]:
        index = self.index()
        if len(index) == 0:
            return []
        scores, ids = index.search_above(np.asarray(vector, dtype=np.float32), threshold, limit)
        return [(int(i), float(s)) for s, i in zip(scores, ids, strict=True) if i >= 0]
