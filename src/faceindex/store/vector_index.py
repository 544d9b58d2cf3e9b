"""Cosine-similarity vector index over faceprints: exact while small, HNSW or IVF beyond; atomic save/load."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import faiss
import numpy as np

from faceindex.errors import InvalidInputError, ModelMismatchError, StoreError
from faceindex.store import index_factory as fx
from faceindex.store import index_file, ivf
from faceindex.store.index_factory import IndexParams
from faceindex.store.index_file import VectorFile
from faceindex.store.vectors import FAISS_CAPABILITIES, VectorCapabilities

__all__ = ["IndexParams", "VectorIndex"]

_NORM_TOLERANCE = 1e-3


class VectorIndex:
    """Cosine-similarity index over L2-normalised float32 vectors keyed by int64 face ids.

    A rebuildable cache of the catalog: row ``r`` of the FAISS index holds the vector of face
    ``self._labels[r]``. While ``len(self) <= approximate_above`` search is exact (IndexFlatIP,
    O(n·dim) per query: ~1.4 ms at 50 k faces on one core). Beyond it the index turns into HNSW or
    IVF (built once from the stored vectors, then grown incrementally; rebuilt when the size calls
    for another structure, see ``rebuild_needed``) by ``params.layout`` (index_factory.IndexParams;
    figures from bench/bench_search.py, 1 M faces):

    - ``"sq8-mmap"`` (default): the next one up to ``params.ivf_above`` (1 M) faces, then IVF over
      SQ8 residual codes (``"ivf-sq8-mmap"``: ~145 B/face resident, same vectors file and re-ranking;
      its 10 M figures are in BENCHMARKS.md).
    - ``"hnsw-sq8-mmap"``: HNSW M16 over SQ8 codes, ~280 bytes/face resident, with the
      float32 vectors in a memory-mapped file (index_file.VectorFile; 512 B/face of page cache):
      before the first save a hidden work file in ``work_dir``, afterwards ``<index file>.vectors``
      beside the saved index, grown in place. The ``rerank_factor·k`` best SQ8 candidates are
      re-scored from that file, so reported scores are exact cosines. 3.7 ms p99 per query,
      recall@10 0.983, mate recall 0.984 (ef_search 512). Latency assumes the file is in the page
      cache; a cold query reads ~``rerank_factor·k`` random rows from disk.
    - ``"hnsw-flat"``: HNSW M32 over float32 vectors in RAM, 792 bytes/face; the walk scores
      exactly, no second copy. 2.5 ms p99, recall@10 0.989, mate recall 0.998 (ef_search 256).

    Erasure: in the flat index removed vectors are deleted outright. HNSW cannot delete nodes, so
    a removed face's vector is overwritten with zeros in place and its label set to -1 (no file
    written later holds its bytes); its graph links stay (they hold ids of neighbours, no
    embedding) until the graph is rebuilt, once dead nodes exceed ``params.max_dead_fraction``.
    In the sq8 layout the row's SQ8 code is zeroed too, and its row of the vectors file is zeroed
    and flushed to the file at once. IVF deletes the code from its list (true removal) and zeroes the
    file row the same way; only the row's slot in the vectors file waits for the compaction.

    Not thread-safe for writers: the catalog's single writer must serialise add/remove/save;
    concurrent searches without a writer are safe (FAISS search is read-only).
    """

    # Exact search per query on one core (p50 / p99): 1.4 / 2.9 ms at 50 k faces, 2.8 / 5.7 ms at
    # 100 k, 11 / 13 ms at 200 k (the vectors stop fitting in cache), so the 5 ms p99 target needs
    # HNSW from ~80 k faces; 50 k leaves margin for busy cores. HNSW there: recall@10 >= 0.997.
    DEFAULT_APPROXIMATE_ABOVE = 50_000

    def __init__(
        self,
        dim: int,
        model_id: str,
        *,
        approximate_above: int = DEFAULT_APPROXIMATE_ABOVE,
        params: IndexParams | None = None,
        work_dir: Path | None = None,
    ):
        """``work_dir``: where the sq8 layout keeps its vectors file before the first save (None = the
        system temp dir, where faceprints then land on disk until the save copies them out and
        deletes the file); pass the store directory so the first save is a rename, not a copy."""
        if dim < 1 or not model_id:
            raise InvalidInputError("dim must be >= 1 and model_id non-empty")
        if approximate_above < 0:
            raise InvalidInputError("approximate_above must be >= 0")
        self.dim = dim
        self.model_id = model_id
        self.approximate_above = approximate_above
        self.params = params or IndexParams()
        fx.set_threads(self.params)
        self._index: faiss.Index = fx.new_flat(dim)
        self._labels = np.empty(0, dtype=np.int64)  # row -> face id; -1 = dead (zeroed) HNSW node
        self._dead = 0
        self._selector: faiss.IDSelector | None = None  # excludes dead rows; None when there are none
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self._vf: VectorFile | None = None  # the float32 rows of an sq8 or ivf index (None otherwise)
        self._trained_for = 0  # faces an ivf index's lists were sized for (auto nlist)
        self.checkpoint: Callable[[], None] | None = None
        """Called between the steps of a bulk build (after training, between added chunks); it may raise to
        abandon the build (FaceStore drops a snapshot build when faces were deleted meanwhile)."""

    # -- size and shape -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels) - self._dead

    @property
    def kind(self) -> str:
        """Which structure is in use: "flat" (exact), "hnsw" or "ivf" (approximate)."""
        if fx.is_ivf(self._index):
            return fx.IVF
        return fx.HNSW if isinstance(self._index, faiss.IndexHNSW) else "flat"

    @property
    def nlist(self) -> int | None:
        """Inverted lists of an ivf index (None for the other kinds)."""
        return self._index.nlist if self.kind == fx.IVF else None

    def _kind_for(self, n: int) -> str:
        return "flat" if n <= self.approximate_above else fx.approximate_kind(self.params, n)

    def rebuild_needed(self, n_more: int) -> bool:
        """Whether adding ``n_more`` faces calls for a new structure rather than an append: crossing
        ``approximate_above`` or ``params.ivf_above``, or an IVF index grown past 4x the size its lists were
        trained for (its lists would be 4x longer: slower scans). FaceStore then builds it in the background."""
        n = len(self) + max(0, n_more)
        if self._kind_for(n) != self.kind:
            return True
        return self.kind == fx.IVF and self.params.nlist is None and n > 4 * self._trained_for

    def needs_compaction(self) -> bool:
        """Erased (dead) rows exceed ``params.max_dead_fraction``: a rebuild would reclaim them."""
        return self._dead > self.params.max_dead_fraction * max(len(self._labels), 1)

    def max_id(self) -> int:
        """The largest face id held (0 when empty)."""
        live = self._labels[self._labels >= 0]
        return int(live.max()) if len(live) else 0

    @property
    def layout(self) -> str:
        """``params.layout``: what the index becomes beyond ``approximate_above``."""
        return self.params.layout

    def memory_bytes(self) -> int:
        """Resident bytes of vectors or codes, graph and labels (Python object overhead excluded).

        The memory-mapped vectors of the sq8 layout are not included: see ``mapped_bytes``.
        """
        return fx.memory_bytes(self._index, len(self._labels))

    def mapped_bytes(self) -> int:
        """Bytes of float32 vectors in the memory-mapped file (page cache, not process memory); 0 if none."""
        return 0 if self._vf is None else self._vf.rows * self._vf.row_bytes

    def _vectors(self) -> np.ndarray:
        """All stored rows as float32 (n, dim): a view of FAISS memory or of the mapped file."""
        return self._vf.view() if self._vf is not None else fx.stored_vectors(self._index)

    def set_ef_search(self, ef_search: int) -> None:
        """Change the HNSW search breadth (recall/latency trade-off) without rebuilding."""
        p = self.params.to_dict() | {"ef_search": ef_search}
        self.params = IndexParams.from_dict(p)

    # -- input checks ---------------------------------------------------------------------------
    def _as_vectors(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"{what} must have shape (n, {self.dim}), got {np.shape(x)}")
        if not np.isfinite(x).all():
            raise InvalidInputError(f"{what} contain NaN or infinity")
        norms = np.linalg.norm(x, axis=1)
        if (norms == 0).any():
            raise InvalidInputError(f"{what} contain a zero vector (no direction, no cosine)")
        if np.abs(norms - 1).max(initial=0) > _NORM_TOLERANCE:
            # Callers should normalise; doing it here keeps scores cosines if one forgets
            # (raw dlib descriptors have norm ~1.44).
            x = x / norms[:, None]
        return np.ascontiguousarray(x)

    # -- writes ---------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add faces. ``ids`` int64 (n,) unique and >= 0, not already present; ``vectors`` (n, dim).

        Crossing ``approximate_above`` builds the HNSW graph from every stored vector inside this
        call (~10-20 s at 50 k faces on 2 cores); later adds extend the graph incrementally.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise InvalidInputError("ids must be a 1-D integer array")
        ids = ids.astype(np.int64)
        vectors = self._as_vectors(vectors, "vectors")
        if len(ids) != len(vectors):
            raise InvalidInputError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        if ids.min() < 0:
            raise InvalidInputError("face ids must be >= 0 (-1 marks an empty result slot)")
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self._labels).any():
            raise InvalidInputError("duplicate face id: already in the index or repeated in the batch")
        if self.rebuild_needed(len(ids)):
            self._rebuild(extra=(ids, vectors))
            return
        if self._vf is not None:
            self._vf.append(vectors)
        if self.kind == fx.IVF:
            self._index.add_with_ids(vectors, np.arange(len(self._labels), len(self._labels) + len(ids)))
        else:
            self._index.add(vectors)
        self._labels = np.concatenate([self._labels, ids])

    def extend(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Add every (ids, vectors) batch as one build sized for the total: a bulk load (FaceStore's rebuild).

        On an empty index of a memory-mapped layout the batches stream into the vectors file (RAM stays at
        one batch), then the structure for the final size is built once (one IVF training, no HNSW built
        early and grown). On a non-empty index it is ``add`` per batch.
        """
        if len(self._labels) or self.layout not in fx.MMAP_LAYOUTS:
            for ids, vectors in batches:
                self.add(ids, vectors)
            return
        vf = VectorFile.create(self.work_dir or Path(tempfile.gettempdir()), self.dim)
        try:
            labels = []
            for ids, vectors in batches:
                ids = np.asarray(ids, dtype=np.int64)
                vectors = self._as_vectors(vectors, "vectors")
                if len(ids) != len(vectors) or (len(ids) and ids.min() < 0):
                    raise InvalidInputError("ids must match the vectors and be >= 0")
                vf.append(vectors)
                labels.append(ids)
            labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
            if len(np.unique(labels)) != len(labels):
                raise InvalidInputError("duplicate face id in the batches")
            if len(labels) <= self.approximate_above:
                self._labels = np.empty(0, np.int64)
                self._index = fx.new_flat(self.dim)
                self._index.add(np.ascontiguousarray(vf.view()))
                self._labels = labels
                vf.delete()
                return
            self._build(vf, labels)
        except BaseException:
            vf.delete(wipe=True)  # an abandoned build: its rows may include faces erased since
            raise

    def discard(self) -> None:
        """Abandon an index that was never saved: zero and delete its vectors work file (it may hold faceprints
        erased since it was built) and drop the structure. The index is empty and unusable afterwards."""
        if self._vf is not None and self._vf.temp:
            self._vf.delete(wipe=True)
        self._vf = None
        self._index, self._labels, self._dead, self._selector = fx.new_flat(self.dim), np.empty(0, np.int64), 0, None

    def _step(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint()

    def remove(self, ids: np.ndarray, *, compact: bool = True) -> int:
        """Remove faces by id (unknown ids are ignored); returns how many were removed.

        Removed vectors are deleted (flat) or overwritten with zeros (HNSW) in memory, so no file
        a later ``save()`` writes holds a byte of them. Cost O(n) per call (~0.1 s at 1 M faces);
        an HNSW compaction, when it triggers, rebuilds the graph (~7 min at 1 M on 2 busy cores).
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        ids = ids[ids >= 0]  # -1 labels dead HNSW rows; it must never match them
        rows = np.flatnonzero(np.isin(self._labels, ids)) if len(ids) else np.empty(0, np.int64)
        if len(rows) == 0:
            return 0
        if self.kind == "flat":
            self._index.remove_ids(faiss.IDSelectorBatch(rows.astype(np.int64)))  # compacts storage
            self._labels = np.delete(self._labels, rows)
        else:
            if self.kind == fx.IVF:
                self._vf.zero(rows)  # erase the float32 bytes in the file (msync'd now)
                self._index.remove_ids(faiss.IDSelectorBatch(rows.astype(np.int64)))  # codes leave the lists
            elif self._vf is not None:
                self._vf.zero(rows)
                fx.stored_codes(self._index)[rows] = 0  # and their SQ8 codes
            else:
                fx.stored_vectors(self._index)[rows] = 0.0  # erase the bytes; the node stays in the graph
            self._labels[rows] = -1
            self._dead += len(rows)
            if compact and self.needs_compaction():
                self._rebuild()
            elif self.kind == fx.HNSW:  # an ivf index no longer holds the rows at all
                self._selector = _dead_selector(self._labels)
        return len(rows)

    def _rebuild(self, extra: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Rebuild from the live vectors (plus ``extra``), choosing the structure by the new size."""
        live = self._labels >= 0
        vectors, labels = self._vectors()[live], self._labels[live]  # copy (fancy index), in RAM meanwhile
        if extra is not None:
            labels = np.concatenate([labels, extra[0]])
            vectors = np.concatenate([vectors, extra[1]])
        old_vf = self._vf
        if self._kind_for(len(labels)) == "flat" or self.layout not in fx.MMAP_LAYOUTS:
            fx.set_threads(self.params)
            big = len(labels) > self.approximate_above
            index = fx.new_hnsw(self.dim, self.params) if big else fx.new_flat(self.dim)
            index.add(vectors)
            self._index, self._labels, self._dead, self._selector, self._vf = index, labels, 0, None, None
        else:
            directory = old_vf.path.parent if old_vf is not None else self.work_dir or Path(tempfile.gettempdir())
            vf = VectorFile.create(directory, self.dim)
            try:
                vf.append(vectors)
                del vectors
                self._build(vf, labels)
            except BaseException:
                vf.delete()
                raise
        if old_vf is not None:
            # A work file goes now, zeroed (an unsaved build may hold rows erased since); a saved one stays until the
            # next save replaces or deletes it, so the saved index stays loadable meanwhile.
            old_vf.delete(wipe=True) if old_vf.temp else old_vf.close()

    def _build(self, vf: VectorFile, labels: np.ndarray) -> None:
        """Build the approximate structure of a memory-mapped layout over every row of ``vf`` (adopted)."""
        fx.set_threads(self.params)
        rows = vf.view()
        n = len(rows)
        rng = np.random.default_rng(0)
        kind = fx.approximate_kind(self.params, n)
        if kind == fx.IVF:
            nlist = self.params.nlist or ivf.auto_nlist(n)
            # ~32 training vectors per list asked for (those under ivf.MIN_MEMBERS are dropped: ~1/4 at 2 M).
            m = min(n, max(_SQ8_TRAIN_SAMPLE, 32 * nlist))
            sample = np.ascontiguousarray(rows[np.sort(rng.choice(n, m, replace=False))] if m < n else rows)
            index = ivf.new_ivf_sq8(self.dim, self.params, ivf.coarse_centroids(sample, nlist), sample)
        else:
            index = fx.new_hnsw_sq8(self.dim, self.params)
            m = min(n, _SQ8_TRAIN_SAMPLE)
            index.train(np.ascontiguousarray(rows[np.sort(rng.choice(n, m, replace=False))] if m < n else rows))
        for lo in range(0, n, _ADD_CHUNK):  # chunks: page the mapped rows in a bounded amount at a time
            self._step()
            chunk = np.ascontiguousarray(rows[lo : lo + _ADD_CHUNK])
            if kind == fx.IVF:
                index.add_with_ids(chunk, np.arange(lo, lo + len(chunk), dtype=np.int64))
            else:
                index.add(chunk)
        self._index, self._labels, self._dead, self._selector, self._vf = index, labels, 0, None, vf
        self._trained_for = n

    # -- the VectorStore protocol (store/vectors.py) ---------------------------------------------
    @property
    def capabilities(self) -> VectorCapabilities:
        return FAISS_CAPABILITIES

    def delete(self, ids: np.ndarray) -> int:
        """``remove`` under the protocol's name."""
        return self.remove(ids)

    def count(self) -> int:
        return len(self)

    def flush(self) -> None:
        """Nothing to do in memory: FaceStore.save_index persists this index with the catalog's watermark."""

    def close(self) -> None:
        """Drop the mapping of the vectors file (the file stays)."""
        if self._vf is not None:
            self._vf.close()

    # -- reads ----------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar faces per query, best first.

        Returns (scores float32 (q, k) exact cosines, ids int64 (q, k)); empty slots have score
        -inf and id -1. Cost: flat O(n·dim) per query; HNSW ~O(ef_search·M·dim·log n).
        """
        queries = self._as_vectors(queries, "queries")
        if k < 1:
            raise InvalidInputError("k must be >= 1")
        nq = len(queries)
        if len(self) == 0:
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        sp = None
        k_walk = k * self.params.rerank_factor if self._vf is not None else k
        if self.kind == fx.IVF:
            sp = ivf.ivf_search_params(self.params, self._index.nlist, self._index.ntotal)
        elif self.kind == fx.HNSW:
            # Per-call parameters rather than mutating hnsw.efSearch: concurrent readers stay safe.
            sp = faiss.SearchParametersHNSW(efSearch=max(self.params.ef_search, k_walk))
            if self._selector is not None:
                sp.sel = self._selector  # skip dead (erased) nodes while still walking through them
        with fx.search_threads(nq):
            scores, rows = self._index.search(queries, k_walk, params=sp)
        if self._vf is not None:
            scores, rows = self._rerank(queries, rows, k)
        ids = np.where(rows < 0, -1, self._labels[np.maximum(rows, 0)])
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)  # ids < 0 also covers dead rows
        return scores, ids

    def _rerank(self, queries: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the SQ8 candidates ``rows`` (q, k') from the vectors file; the best ``k``.

        Reads q·k' rows of 4·dim bytes at random places in the mapped file (page cache when warm).
        """
        cand = self._vf.view()[np.maximum(rows, 0)]  # (q, k', dim) copy out of the mapping
        exact = np.einsum("qd,qkd->qk", queries, cand)
        exact[rows < 0] = -np.inf
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, order, axis=1), np.take_along_axis(rows, order, axis=1)

    def search_above(
        self, query: np.ndarray, threshold: float, limit: int = 10_000
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every stored face with cosine >= ``threshold`` to ONE query, best first, at most ``limit``.

        Always an exact scan of all stored vectors, whatever ``kind`` is: this serves erasure and
        opt-out, where missing a face is a privacy failure and ~65 ms per 1 M faces is affordable
        (sq8 layout: a chunked scan of the mapped file, plus disk reads when it is not cached).
        Returns (scores float32 (m,), ids int64 (m,)).
        """
        q = self._as_vectors(query, "query")
        if len(q) != 1:
            raise InvalidInputError("search_above takes exactly one query vector")
        if limit < 1:
            raise InvalidInputError("limit must be >= 1")
        stored = self._vectors()
        step = 1 << 18  # chunks bound the temporaries when scanning a mapped file
        sims = np.concatenate([stored[lo : lo + step] @ q[0] for lo in range(0, len(stored), step)] or [np.zeros(0)])
        rows = np.flatnonzero((sims >= threshold) & (self._labels >= 0))
        order = np.argsort(-sims[rows], kind="stable")[:limit]
        rows = rows[order]
        return sims[rows].astype(np.float32), self._labels[rows].copy()

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: Path, watermark: dict) -> None:
        """Write the index atomically to ``path`` with the catalog's ``watermark`` (a small JSON dict).

        Temp file in the same directory, fsync, ``os.replace``, fsync of the directory: a crash
        leaves the old or the new file, never a mix. The file holds only live vectors (see the
        class doc on erasure). Format and checks: index_file.py.

        sq8 layout: the vectors file is first made durable as ``<path>.vectors`` (fsync; rename or
        copy, see VectorFile.persist_as), then its row count and CRC32 go into the index header,
        which is renamed into place last. The index keeps growing that file in place afterwards.
        A flat-kind save deletes a ``<path>.vectors`` left from an earlier approximate index.
        """
        path = Path(path)
        target = index_file.vectors_path(path)
        meta = {
            "model_id": self.model_id,
            "dim": self.dim,
            "count": len(self),
            "kind": self.kind,
            "approximate_above": self.approximate_above,
            "params": self.params.to_dict(),
            "trained_for": self._trained_for,
            "watermark": watermark,
        }
        try:
            if self._vf is not None:
                self._vf = self._vf.persist_as(target)
                meta["vectors"] = {"file": target.name, "rows": self._vf.rows, "crc32": self._vf.crc()}
            index_file.write(path, meta, self._labels, self._index)
            if self._vf is None and target.exists():
                target.unlink()  # a stale file of an earlier approximate index (erased rows zeroed)
                index_file.fsync_dir(path.parent)
        except OSError as e:
            raise StoreError(f"could not write vector index {path}: {e}") from e

    @classmethod
    def load(
        cls, path: Path, *, model_id: str | None = None, dim: int | None = None
    ) -> tuple[VectorIndex, dict]:
        """Read a file written by ``save``; returns (index, watermark).

        Raises StoreError when the file is missing, truncated or corrupt (the caller rebuilds from
        the catalog), ModelMismatchError when ``model_id``/``dim`` are given and differ.
        """
        meta, labels, index = index_file.read(Path(path))
        try:
            held_model, held_dim, count = str(meta["model_id"]), int(meta["dim"]), int(meta["count"])
            params = IndexParams.from_dict(meta["params"])
            vi = cls(held_dim, held_model, approximate_above=int(meta["approximate_above"]), params=params)
            watermark = meta["watermark"]
        except (KeyError, TypeError, ValueError, InvalidInputError) as e:
            raise StoreError(f"{path} has unusable metadata ({e}); rebuild it") from e
        if model_id is not None and held_model != model_id:
            raise ModelMismatchError(f"index holds model {held_model!r}, expected {model_id!r}")
        if dim is not None and held_dim != dim:
            raise ModelMismatchError(f"index holds {held_dim}-d vectors, expected {dim}-d")
        if (labels >= 0).sum() != count or index.d != held_dim:
            raise StoreError(f"{path} is inconsistent (count or dimension)")
        if fx.uses_vectors_file(index):
            try:
                v = meta["vectors"]
                rows, crc = int(v["rows"]), int(v["crc32"])
            except (KeyError, TypeError, ValueError) as e:
                raise StoreError(f"{path} lacks its vectors record ({e}); rebuild it") from e
            if rows != len(labels):
                raise StoreError(f"{path} is inconsistent ({rows} vector rows for {len(labels)} labels)")
            vi._vf = VectorFile.open(index_file.vectors_path(Path(path)), held_dim, rows, crc)
        vi._index, vi._labels = index, labels
        vi._dead = int((labels < 0).sum())
        vi._trained_for = int(meta.get("trained_for", len(labels)))
        if vi._dead and vi.kind == fx.HNSW:
            vi._selector = _dead_selector(labels)
        return vi, watermark


# Rows the SQ8 per-dimension ranges are trained on (min/max: a sample suffices, with the 5 % margin).
_SQ8_TRAIN_SAMPLE = 200_000
_ADD_CHUNK = 1 << 18


def _dead_selector(labels: np.ndarray) -> faiss.IDSelector:
    return faiss.IDSelectorNot(faiss.IDSelectorBatch(np.flatnonzero(labels < 0).astype(np.int64)))
