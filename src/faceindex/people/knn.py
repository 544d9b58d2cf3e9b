"""The k-nearest-neighbour graph grouping works on: edges (i, j, cosine) from FAISS, never all pairs.

Three ways to find each face's neighbours, cheapest adequate first:
- a search the caller already has (`search`): the store's own vector index, in face-id space, wrapped by
  `row_search` into row space. Incremental runs use it: a few thousand new faces are a few thousand
  queries, and the index is already built and caught up at ingest.
- exact (IndexFlatIP) below EXACT_BELOW faces: n² dot products, < ~1 min on 2 cores.
- above it, an HNSW graph built for the job (`job_index`, M 16, efConstruction 40) and searched at a small
  efSearch (JOB_EF). Grouping only needs each face's *close* neighbours (cosine >= ~0.92, same person),
  which an HNSW walk reaches within a few hops, so the breadth that a search for strangers' faces needs
  (ef 256-512 in the store's index) is wasted here. A missed edge rarely matters: a person's faces are
  linked by many. Measured in BENCHMARKS.md (people grouping, scale).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EXACT_BELOW = 50_000
"""Faces below which the k-NN graph is exact (flat inner product): n² dot products cost < ~1 min on 2 cores."""

JOB_M = 16
"""HNSW degree of a graph built for one grouping job: builds ~4x faster than M 32 for a little recall."""

JOB_EF_CONSTRUCTION = 40

JOB_EF = 48
"""efSearch of the job graph's k-NN search (at least k + 1)."""

Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""(queries float32 (q, dim), k) -> (cosines (q, k), rows (q, k) of `x`, -1 where none), best first."""


def knn_edges(x: np.ndarray, k: int, *, queries: np.ndarray | None = None, min_sim: float = -1.0,
              threads: int | None = None, index=None, search: Search | None = None,
              ef: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (i, j, cosine) from each query row to its k nearest rows of `x` with cosine >= min_sim.

    `x`: float32 (n, dim), unit rows. `queries`: row indices of `x` to search for (default: all).
    Self-matches and duplicates (i, j) / (j, i) are dropped. Neighbours come from `search` when given
    (e.g. the store's index through `row_search`), else from `index` (a FAISS index holding `x` in row
    order, e.g. kept between runs), else exact below EXACT_BELOW rows, else a job HNSW graph (`job_index`)
    searched at efSearch `ef` (default max(JOB_EF, k + 1)).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    rows = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    if n < 2 or len(rows) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    kk = min(k + 1, n)
    if search is not None:
        sims, nbrs = search(x[rows], kk)
    else:
        import faiss

        if threads:
            faiss.omp_set_num_threads(threads)
        if index is None and n < EXACT_BELOW:
            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x)
        elif index is None:
            index = job_index(x)
        if isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(efSearch=max(ef or JOB_EF, kk))
            sims, nbrs = _batched(index, x, rows, kk, params)
        else:
            sims, nbrs = _batched(index, x, rows, kk, None)
    src = np.repeat(rows, nbrs.shape[1])
    dst, sim = np.asarray(nbrs).ravel().astype(np.int64), np.asarray(sims).ravel()
    keep = (dst >= 0) & (dst != src) & (sim >= min_sim)
    return undirected(src[keep], dst[keep], sim[keep])


def _batched(index, x: np.ndarray, rows: np.ndarray, kk: int, params, step: int = 65_536):
    """FAISS search in slices of `step` queries: bounds the (q, dim) copy of the query rows at 1 M faces."""
    sims = np.empty((len(rows), kk), np.float32)
    nbrs = np.empty((len(rows), kk), np.int64)
    for lo in range(0, len(rows), step):
        part = x[rows[lo:lo + step]]
        sims[lo:lo + step], nbrs[lo:lo + step] = index.search(part, kk, params=params)
    return sims, nbrs


def job_index(x: np.ndarray, *, m: int = JOB_M, ef_construction: int = JOB_EF_CONSTRUCTION):
    """An HNSW index over unit faceprints, built for one grouping job (row order = `x`'s)."""
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    return index


PairSearch = Callable[[np.ndarray, int], list[list[tuple[int, float]]]]
"""(queries (q, dim), k) -> per query, up to k (face id, cosine) pairs best first: FaceStore.search."""


def from_pairs(pair_search: PairSearch) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """A FaceStore.search-style search as one returning arrays (scores (q, k), face ids (q, k), -1 = none)."""

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for q, hits in enumerate(pair_search(queries, k)):
            for c, (face_id, score) in enumerate(hits[:k]):
                ids[q, c], scores[q, c] = face_id, score
        return scores, ids

    return search


def row_search(face_search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], face_ids: np.ndarray,
               *, spare: int = 8) -> Search:
    """Turn a search in face-id space (the store's index: (scores, face ids)) into one in row space of `x`.

    `face_ids`: int64 (n,), strictly increasing: the face of each row of `x`. Faces the index holds that are
    not rows (another collection, grouping not allowed there) come back as -1; `spare` extra neighbours are
    asked for so that such faces do not crowd out the k that count.
    """
    face_ids = np.asarray(face_ids, dtype=np.int64)
    if len(face_ids) > 1 and not (np.diff(face_ids) > 0).all():
        raise ValueError("face_ids must be strictly increasing")

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = face_search(queries, k + spare)
        scores, ids = np.asarray(scores, np.float32), np.asarray(ids, np.int64)
        pos = np.clip(np.searchsorted(face_ids, ids), 0, max(len(face_ids) - 1, 0))
        found = (ids >= 0) & (face_ids[pos] == ids) if len(face_ids) else np.zeros(ids.shape, bool)
        return np.where(found, scores, -np.inf).astype(np.float32), np.where(found, pos, -1)

    return search


def undirected(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges with i < j, each pair once (its highest similarity), strongest first."""
    a, b = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((-s, b, a))
    a, b, s = a[order], b[order], s[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, s = a[first], b[first], s[first]
    order = np.argsort(-s, kind="stable")
    return a[order], b[order], s[order].astype(np.float32)
