"""IVF over SQ8 residual codes: list sizing, coarse training, construction and per-search parameters."""

from __future__ import annotations

import math

import faiss
import numpy as np

from faceindex.store.index_factory import IndexParams


def auto_nlist(n: int) -> int:
    """Inverted lists asked for ``n`` faces: ~4·sqrt(n) (4 000 at 1 M, 12 649 at 10 M), at least 16.

    More lists = fewer codes scanned per probed list but more lists to probe for the same recall and a
    dearer coarse training; 4·sqrt(n) keeps both halves of a search (coarse walk, list scan) small.
    coarse_centroids keeps fewer: at 2 M faces 4 161 of 5 656 (k-means leaves many small clusters).
    """
    return max(16, int(4 * math.sqrt(max(n, 1))))


_KMEANS_ITER = 10
_TWO_LEVEL_ABOVE = 1024
_QUANTIZER_M = 32


def coarse_centroids(sample: np.ndarray, nlist: int, *, seed: int = 0) -> np.ndarray:
    """Unit-norm centroids of the IVF lists: spherical k-means of ``sample``, 10 iterations; at most ``nlist``.

    Above 1 024 lists in two levels (sqrt(nlist) clusters, then each split into lists in proportion to
    its share of the sample), so an iteration costs ~sample·2·sqrt(nlist) dot products instead of
    sample·nlist: 16 k lists from 260 k vectors train in ~1 min on one core instead of ~30. The lists are
    a little less balanced than flat k-means would make them; probing enough of them absorbs that.

    Privacy: a centroid is kept only when it is the mean of at least MIN_MEMBERS training faceprints, so
    no centroid written to the index file is one person's faceprint (an erased face's bytes never
    survive in it); an erasure does not retrain the lists, the next rebuild does.
    """
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if nlist <= _TWO_LEVEL_ABOVE or len(sample) <= nlist:
        centroids = _kmeans(sample, nlist, seed)
    else:
        top = int(math.sqrt(nlist))
        km = faiss.Kmeans(sample.shape[1], top, **_kmeans_args(seed))
        km.train(sample)
        _, assign = km.assign(sample)
        sizes = np.bincount(assign, minlength=top)
        shares = np.maximum(1, np.round(sizes * (nlist / len(sample)))).astype(int)
        centroids = np.concatenate([_kmeans(sample[assign == c], int(shares[c]), seed + 1 + int(c))
                                    for c in np.flatnonzero(sizes)])
    if len(centroids) == 0:  # a sample too small for lists of MIN_MEMBERS: one list, the mean of all
        mean = sample.mean(axis=0, keepdims=True)
        centroids = mean / np.linalg.norm(mean)
    return np.ascontiguousarray(centroids, dtype=np.float32)


MIN_MEMBERS = 8
"""Fewest training faceprints a kept IVF centroid averages (see coarse_centroids)."""


def _kmeans_args(seed: int) -> dict:
    # min_points_per_centroid 1: small clusters are dealt with below (no warning spam from FAISS).
    return {"niter": _KMEANS_ITER, "spherical": True, "seed": seed, "min_points_per_centroid": 1,
            "max_points_per_centroid": 1 << 30}


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Centroids of up to ``k`` clusters of ``x``, each the mean of >= MIN_MEMBERS rows (others dropped:
    their rows join the nearest kept list when added)."""
    k = min(k, len(x) // MIN_MEMBERS)
    if k < 1:
        return np.empty((0, x.shape[1]), dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, **_kmeans_args(seed))
    km.train(x)
    _, assign = km.assign(x)
    return km.centroids[np.bincount(assign, minlength=k) >= MIN_MEMBERS]


def new_ivf_sq8(dim: int, params: IndexParams, centroids: np.ndarray, sample: np.ndarray) -> faiss.IndexIVF:
    """IVF over SQ8 codes of the residuals to ``centroids`` (one list per centroid), trained on ``sample``.

    The coarse quantizer is an HNSW graph over the centroids (so picking ``nprobe`` lists costs ~log
    nlist, not nlist). Codes are 1 byte/dimension of the vector minus its list's centroid: finer than
    SQ8 of the raw vectors, which all sit in one narrow cone. Rows are added with explicit ids (the row
    numbers), so removals (true deletions from the lists) never make ids collide.
    """
    quantizer = faiss.IndexHNSWFlat(dim, _QUANTIZER_M, faiss.METRIC_INNER_PRODUCT)
    quantizer.hnsw.efConstruction = 40
    quantizer.hnsw.efSearch = 32  # the walk that assigns each added vector its list (searches pass their own)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, len(centroids), faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT, True
    )
    index.own_fields = True
    quantizer.this.disown()  # the IVF index frees it
    index.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
    index.sq.rangestat_arg = 0.05
    index.train(np.ascontiguousarray(sample, dtype=np.float32))  # the quantizer is full: trains the SQ only
    return index


# How many lists a search probes when ``nprobe`` is None: PROBE_FRACTION of them, but no more than
# about MAX_SCANNED codes (~27 ns of CPU each here). Measured with bench_vectors.py (BENCHMARKS.md): at
# 2 M faces (4 161 lists) 1/20 gave recall@10 0.971, 1/10 0.991 at CPU p99 5.2 ms; at 10 M (8 601 lists
# of ~1 160) 500 lists (580 k codes) gave 0.981 / mate recall 0.980 at CPU p99 12.2 ms, 861 (1/10)
# 0.993 / 0.993 at 23.2 ms. The cap keeps 10 M under the 20 ms p99 target at recall >= 0.98; more
# lists per gallery make the same share more accurate (10 M at 5.8 % beat 2 M at 5 %).
PROBE_FRACTION = 1 / 10
MAX_SCANNED = 600_000


def nprobe_for(params: IndexParams, nlist: int, ntotal: int) -> int:
    """Lists to probe: ``params.nprobe``, else PROBE_FRACTION of ``nlist`` capped near MAX_SCANNED codes."""
    if params.nprobe:
        return min(nlist, params.nprobe)
    share = math.ceil(nlist * PROBE_FRACTION)
    cap = math.ceil(MAX_SCANNED * nlist / max(ntotal, 1))  # lists of the mean length holding MAX_SCANNED codes
    return max(1, min(nlist, share, cap))


def ivf_search_params(params: IndexParams, nlist: int, ntotal: int) -> faiss.SearchParametersIVF:
    """Per-call IVF parameters: ``nprobe`` lists, found by an HNSW walk of breadth 1.5·nprobe (>= 64)."""
    nprobe = nprobe_for(params, nlist, ntotal)
    sp = faiss.SearchParametersIVF(nprobe=nprobe)
    sp.quantizer_params = faiss.SearchParametersHNSW(efSearch=max(64, nprobe * 3 // 2))
    return sp
