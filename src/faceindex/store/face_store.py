"""A store directory: the catalog plus the vector index kept in step with it by a watermark."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from faceindex.errors import ModelMismatchError, StoreError
from faceindex.store.catalog import Catalog
from faceindex.store.index_builds import IndexBuilds
from faceindex.store.index_factory import LAYOUT_AUTO, LAYOUT_SQ8_MMAP, IndexParams
from faceindex.store.index_file import VECTORS_SUFFIX, remove_dead_work_files
from faceindex.store.milvus_vectors import COLLECTION
from faceindex.store.rwlock import ReadWriteLock
from faceindex.store.vector_index import VectorIndex
from faceindex.store.vectors import FAISS, FAISS_CAPABILITIES, VectorCapabilities, backend_of, redacted
from faceindex.store.write_lock import FILE_MODE, make_private_dir

log = logging.getLogger(__name__)

CATALOG_FILE = "catalog.sqlite"
INDEX_FILE = "index.faiss"
EMBEDDING_DIM = 128
class FaceStore(IndexBuilds):
    """Owns `<root>/catalog.sqlite` (truth) and `<root>/index.faiss` (derived, rebuildable).

    The index file carries a watermark `{"max_face_id", "epoch"}`: faces are only ever appended with
    growing ids, and the catalog's epoch grows on every deletion. So an index whose epoch matches
    only needs the faces above its max id appended; any other index is rebuilt. The index is saved
    after the catalog commits, so it can lag behind the catalog after a crash, never run ahead.

    Opening: `FaceStore(root)` creates the directory (0700) and the catalog, and finishes an index rewrite
    a crash interrupted (as before). `lazy=True` touches nothing: reads need an existing store
    (StoreNotFoundError), catch the index up in memory only and never save it; `open_for_writing()` does
    the creating and the crash repair, after which saves happen as usual.

    Threads: `search` and `search_above` may run from many threads at once (on Milvus too, once the mirror
    is in step). Catching the index up with the catalog (appends) and `forget_vectors` take an exclusive
    lock, so a search never sees an index being mutated; `rebuild_index` builds the new index beside the one
    in use and takes the exclusive lock only to swap it in, so searches go on during a rebuild (answered
    by the old index). The index file itself is written under the store's write lock, which a rebuild takes
    only for its end (catch-up, save, swap), so adds, erasures and people operations go on during it too.

    Lock order: a snapshot build holds `_build` while it waits for the write lock at its end, so nothing waits
    for `_build` (or for a build to finish) while holding the write lock: such callers build under it themselves.

    Catalog elsewhere: `catalog_url` "postgresql://…" keeps the catalog in that database (store.pg_connections)
    instead of `<root>/catalog.sqlite`; the directory still holds the write lock and the store's local files.

    Vectors elsewhere: `vectors_url` other than "faiss" (a Milvus URI or a Milvus Lite `*.db` path) keeps the
    faceprints in Milvus instead of the index file, with the same catalog-first ordering and its watermark in
    the catalog's meta (store.milvus_mirror); every method below then delegates to that mirror.
    """

    concurrent_reads = True
    """The guarantee above, as a flag callers can check: reads (catalog and index) from many threads need no
    lock of the caller's. The REST service's EngineGate then reads without its own lock."""

    def __init__(self, root: Path, *, approximate_above: int = VectorIndex.DEFAULT_APPROXIMATE_ABOVE,
                 params: IndexParams | None = None, ef_search: int | None = None, lazy: bool = False,
                 vectors_url: str | None = None, vectors_collection: str = COLLECTION, catalog_url: str | None = None):
        self.root = Path(root)
        self.catalog = Catalog(self.root / CATALOG_FILE, lazy=True, url=catalog_url)
        self.vectors_url = vectors_url or FAISS
        self._mirror = None
        if backend_of(self.vectors_url) != FAISS:
            from faceindex.store.milvus_mirror import MilvusMirror  # pymilvus only when asked for

            self._mirror = MilvusMirror(self.catalog, self.vectors_url, collection=vectors_collection,
                                        dim=EMBEDDING_DIM)
        self.approximate_above = approximate_above
        self.params = params
        self.ef_search = ef_search  # applied to a loaded index too (a search-time setting, not a build one)
        self._index: VectorIndex | None = None
        self._watermark = {"max_face_id": 0, "epoch": -1}
        self._dirty = False
        self._rw = ReadWriteLock()
        self._building = False  # a build is running; read and written under _rw.write()
        self._init_builds()
        self.build_hook: Callable[[VectorIndex], None] | None = None
        """Called in the building thread with the new index, complete but not yet saved or serving (tests)."""
        self._writes = False
        if not lazy:
            self.open_for_writing()

    def open_for_writing(self) -> None:
        """Create the store (directory 0700, files 0600), migrate the catalog, and finish an index rewrite
        that a crash interrupted; idempotent."""
        if self._writes:
            return
        if not self.root.exists() or not self.catalog.exists:
            if self.root.exists() and not os.access(self.root, os.W_OK):
                raise StoreError(f"cannot create a store in {self.root}: the directory is read-only")
            make_private_dir(self.root)
        elif self.root.stat().st_mode & 0o077 and os.access(self.root, os.W_OK):
            make_private_dir(self.root)  # a store made by an older faceindex: readable by others
        self.catalog.open_for_writing()
        for name in (INDEX_FILE, INDEX_FILE + VECTORS_SUFFIX):
            path = self.root / name
            if path.exists() and path.stat().st_mode & 0o077:
                os.chmod(path, FILE_MODE)
        self._writes = True
        if self._mirror is not None:
            with self._file_lock(), self._rw.write():
                self._drop_index_files()
                self._mirror.open_for_writing()
            return
        if remove_dead_work_files(self.root):
            log.warning("removed the index work file of a build that did not finish (its process is gone)")
        if self.catalog.get_meta("index_saved_epoch") not in (None, str(self.catalog.epoch)):
            # Deletions committed but the index file was not rewritten (crash mid-erasure): finish now,
            # so the erased faceprints leave the index file at the first open for writing.
            self.rebuild_index()

    def _drop_index_files(self) -> None:
        """Delete FAISS index files left from running this store on the embedded backend: on Milvus nothing
        rewrites them, so an erasure would leave its faceprints there. Switching back rebuilds from the catalog."""
        doomed = [self.root / INDEX_FILE, self.root / (INDEX_FILE + VECTORS_SUFFIX)]
        doomed += list(self.root.glob(f".{INDEX_FILE}*.tmp-*"))
        for path in doomed:
            if path.exists():
                log.warning("vectors are on %s now: deleting the embedded index file %s", redacted(self.vectors_url),
                            path.name)
                path.unlink()
        if self.catalog.get_meta("index_saved_epoch") is not None:
            self.catalog.conn.execute("DELETE FROM meta WHERE key = 'index_saved_epoch'")

    @property
    def writes_open(self) -> bool:
        return self._writes

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    @property
    def model_id(self) -> str | None:
        return self.catalog.get_meta("model_id")

    @property
    def vector_capabilities(self) -> VectorCapabilities:
        """What the vector backend can promise (erasure provable byte by byte or not, what may linger)."""
        return FAISS_CAPABILITIES if self._mirror is None else self._mirror.capabilities

    def close(self) -> None:
        if self._mirror is not None:
            self._mirror.close()
        elif self._writes:
            self.save_index()
        if self._index is not None:
            self._index = None
        self.catalog.close()
        self._writes = False

    # -- index synchronisation ------------------------------------------------------------------
    def index(self) -> VectorIndex:
        """The index, loaded or rebuilt on first use and caught up with the catalog on every call.

        Catching up appends the new faces under the exclusive lock, one batch per hold. Anything that needs
        a new structure — a rebuild after deletions by another process, crossing ``approximate_above`` or a
        layout boundary — is built by ``rebuild_index`` beside the index in use, which keeps serving; while
        another thread builds, this returns the index in use (behind the catalog until the swap).
        """
        if self._mirror is not None:
            with self._rw.write():
                return self._mirror.caught_up()
        while True:
            with self._rw.write():
                if self._index is None and not self._building:
                    self._index = self._load()
                if self._index is not None:
                    if self._building:
                        return self._index  # stale until the build in progress swaps in its index
                    if self._watermark["epoch"] == self.catalog.epoch and not self._index.rebuild_needed(
                            self.catalog.max_face_id() - self._watermark["max_face_id"]):
                        if not self._append_batch(self._index, self._watermark):
                            return self._index
                        continue  # one batch per hold of the lock: searches interleave with a long catch-up
                wait = self._building  # no index to serve: wait for the build in progress, then look again
            if not wait or self._holds_write_lock():
                # (Holding the write lock, waiting would deadlock: the build in progress takes it for its end.
                # Build under it instead; the other build, ending later, swaps in an index no less current.)
                return self.rebuild_index()
            with self._builds_done:
                self._builds_done.wait_for(lambda: self._builds == 0)

    def _behind(self) -> bool:
        """Cheap check (two indexed lookups) whether the catalog has changed since the index was caught up."""
        if self._mirror is not None:
            return self._mirror.behind()
        return (self._index is None or self._watermark["epoch"] != self.catalog.epoch
                or self.catalog.max_face_id() > self._watermark["max_face_id"])

    def gallery_size(self) -> int:
        """Faces the index holds once caught up with the catalog (what a search searches)."""
        return len(self._current())

    def _current(self):
        """The caught-up index (or Milvus collection); the exclusive lock is taken only when there is something
        to catch up, so searches of an index (or a Milvus mirror) in step with the catalog run concurrently."""
        if self._behind():
            return self.index()
        return self._index if self._mirror is None else self._mirror.vectors

    def _new_index(self) -> VectorIndex:
        # work_dir: an approximate index of the hnsw-sq8-mmap layout keeps its memory-mapped vectors
        # here before the first save, so that save is a rename within the store directory.
        return self._tuned(VectorIndex(
            EMBEDDING_DIM, self.model_id or "unbound", approximate_above=self.approximate_above, params=self.params,
            work_dir=self.root if self._writes else Path(tempfile.gettempdir()),
        ))

    def _tuned(self, index: VectorIndex) -> VectorIndex:
        """Apply the `ef_search` override: a search-time setting, so it holds for built and loaded indexes alike.

        An index saved under the former default layout (hnsw-sq8-mmap) is the same structure as the current one
        (sq8-mmap) below `ivf_above`: it adopts the current layout, so it becomes IVF once it grows past that.
        """
        if self.ef_search is not None and index.params.ef_search != self.ef_search:
            index.set_ef_search(self.ef_search)
        wanted = self.params or IndexParams()
        if index.layout == LAYOUT_SQ8_MMAP and wanted.layout == LAYOUT_AUTO:
            index.params = IndexParams.from_dict(index.params.to_dict() | {
                "layout": LAYOUT_AUTO, "ivf_above": wanted.ivf_above, "nlist": wanted.nlist, "nprobe": wanted.nprobe})
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

    def _append_batch(self, index: VectorIndex, watermark: dict, *, mark_dirty: bool = True) -> bool:
        """Append the next batch (<= 50 k) of faces above the watermark; False when there was none left."""
        # Read the top id first: every face at or below it is committed, so the watermark may move there even
        # when the last faces are rejected ones (no faceprint), and `_behind` stays cheap and exact.
        top = self.catalog.max_face_id()
        for ids, vectors in self.catalog.iter_embeddings(after_id=watermark["max_face_id"]):
            index.add(ids, vectors)
            watermark["max_face_id"] = int(ids[-1])
            self._dirty = self._dirty or mark_dirty
            return True
        if top > watermark["max_face_id"]:
            watermark["max_face_id"] = top
            self._dirty = self._dirty or mark_dirty
        return False

    def _file_lock(self):
        """The store's write lock while the index file may be rewritten (always taken before the index lock)."""
        return self.catalog.write_lock() if self._writes else nullcontext()

    def save_index(self) -> None:
        """Persist the index atomically (mode 0600) if it changed since the last save; only once opened for
        writing (a read never writes a file)."""
        if not self._writes:
            return
        with self._file_lock(), self._rw.write():
            if self._mirror is not None:
                self._mirror.save()
                return
            if self._index is not None and self._dirty:
                self._save_as(self._index, self._watermark)
                self._dirty = False

    def _save_as(self, index: VectorIndex, watermark: dict) -> None:
        index.save(self.index_path, dict(watermark))
        self.catalog.set_meta("index_saved_epoch", str(watermark["epoch"]))

    def forget_vectors(self, face_ids: list[int]) -> None:
        """Drop faces already deleted from the catalog from the in-memory index and rewrite the file.

        Called after the catalog transaction that deleted them committed (and bumped the epoch). When the
        erased nodes pass the index's compaction threshold, or the index is not in step, it is rebuilt
        (`rebuild_index`: searches go on with the index the erased faces were just removed from).
        """
        if not face_ids:
            return
        with self._file_lock(), self._rw.write():
            if self._mirror is not None:
                self._mirror.forget(face_ids)
                return
            if self._index is None and not self._building:  # (a build hides an empty index: nothing served)
                self._index = self._load()
            in_step = self._watermark["epoch"] == self.catalog.epoch - 1
            # Remove even when not in step: searches served before the rebuild below must not return them.
            if self._index is not None:
                self._index.remove(np.asarray(face_ids, dtype=np.int64), compact=False)
            if in_step and self._index is not None:
                self._watermark["epoch"] = self.catalog.epoch
                self._dirty = True
                if self._writes:
                    self._save_as(self._index, self._watermark)
                    self._dirty = False
        # Outside the write lock: a rebuild here is a snapshot one (taken after the deletion, so without them).
        if self._builds and not self._holds_write_lock():
            # A build in progress was started before this deletion: it drops itself at its next checkpoint
            # and builds again (without these faces, compacted); wait for its work file to go.
            self._wait_for_dropped_build()
        elif not in_step or self._index is None or self._index.needs_compaction():
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
        index = self._current()
        with self._rw.read():
            if self._mirror is None and self._index is not None:
                index = self._index  # the index in use now: a rebuild may have swapped since `_current`
            if len(index) == 0 or len(vectors) == 0:
                return [[] for _ in range(len(vectors))]
            scores, ids = index.search(np.asarray(vectors, dtype=np.float32), k)
        return [
            [(int(i), float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def search_above(self, vector: np.ndarray, threshold: float, limit: int = 10_000) -> list[tuple[int, float]]:
        """Every face with cosine >= threshold to one vector, best first (exact: erasure and opt-out use it)."""
        if self._mirror is not None:
            self._current()
            with self._rw.read():
                return self._mirror.search_above(vector, threshold, limit)
        index = self._current()
        with self._rw.read():
            index = self._index if self._index is not None else index
            if len(index) == 0:
                return []
            scores, ids = index.search_above(np.asarray(vector, dtype=np.float32), threshold, limit)
        return [(int(i), float(s)) for s, i in zip(scores, ids, strict=True) if i >= 0]
