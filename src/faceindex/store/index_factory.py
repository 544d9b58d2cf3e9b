"""FAISS structures behind VectorIndex: parameters, construction, views of stored vectors, memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields

import faiss
import numpy as np

from faceindex.errors import InvalidInputError


@dataclass(frozen=True)
class IndexParams:
    """Tuning of the approximate (HNSW) index, measured with bench/bench_search.py.

    Measured on synthetic faceprints shaped like dlib's (synthetic.DLIB_RESNET), 2 shared cores,
    1 M faces, M 32, ef_construction 40: ef_search 64 / 128 / 256 gave recall@10 vs exact
    0.948 / 0.974 / 0.989, mate recall above cosine 0.92 0.991 / 0.995 / 0.998, p99 CPU per
    single query 1.0 / 1.5 / 2.5 ms; build 404 s. At 100 k faces ef 64 already gives 0.989.

    - ``hnsw_m``: graph degree. Higher = better recall on clustered data, more memory
      (level 0 costs ``2·M·4`` bytes/face: 256 B at 32) and slower builds. At 100 k faces 16 lost
      ~1.5 points of recall@10 for the same latency; 48 built 2-3× slower for +0.5 point.
    - ``ef_construction``: candidate list while building. 40 gave the recall of 80 at 100 k faces
      for less build time; the build dominates a rebuild (~7 min at 1 M on 2 busy cores).
    - ``ef_search``: candidate list while searching (raised to ``k`` when ``k`` is larger).
      Latency grows about linearly with it; recall saturates. 256 is the smallest measured value
      meeting recall@10 >= 0.98 at 1 M; larger galleries need more (lower it for < 200 k faces).
    - ``max_dead_fraction``: erased faces stay as zeroed graph nodes (HNSW cannot delete); once
      they exceed this fraction of the nodes the index is rebuilt from the live vectors.
    - ``threads``: OpenMP threads for builds and batch searches; None = the CPUs this process may
      use. Searches of fewer than SMALL_BATCH queries always use one thread (see there).
    """

    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 256
    max_dead_fraction: float = 0.2
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.hnsw_m < 4 or self.ef_construction < 1 or self.ef_search < 1:
            raise InvalidInputError("hnsw_m must be >= 4 and ef_construction, ef_search >= 1")
        if not 0.0 < self.max_dead_fraction < 1.0:
            raise InvalidInputError("max_dead_fraction must be in (0, 1)")
        if self.threads is not None and self.threads < 1:
            raise InvalidInputError("threads must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def set_threads(params: IndexParams) -> None:
    """Apply the OpenMP thread count for builds and batch searches of the calling thread.

    None = the CPUs in this process's affinity mask (respects cpusets, unlike a bare core count).
    """
    faiss.omp_set_num_threads(max(1, params.threads or len(os.sched_getaffinity(0))))


# Below this many queries a search runs on one OpenMP thread. FAISS splits even a single query
# across threads (flat) and waits at a barrier; on 2 shared, busy cores a descheduled worker made
# single-query exact search at 50 k faces 23 ms p50 with 2 threads vs 1.4 ms with 1.
SMALL_BATCH = 16


@contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` OpenMP threads (a per-thread setting in libgomp), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def new_flat(dim: int) -> faiss.IndexFlatIP:
    """Exact inner-product index: O(n·dim) per query, 4·dim bytes/face, supports true removal."""
    return faiss.IndexFlatIP(dim)


def new_hnsw(dim: int, params: IndexParams) -> faiss.IndexHNSWFlat:
    """HNSW graph over float32 vectors; distances are exact inner products of the stored vectors.

    Flat (float32) storage rather than SQ8/PQ codes because the graph walk then computes exact
    cosines, so no separate re-ranking copy is needed: the stored vectors are walked and scored
    once. Quantised storage would save memory only if the exact copy lived off-heap (see report).
    """
    index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    return index


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """A writable (ntotal, dim) float32 view of the vectors inside a flat or HNSW-flat index.

    The view aliases FAISS memory: it is invalid after the next add/remove (which may reallocate),
    so take a fresh one each time and never keep it.
    """
    flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    n, d = flat.ntotal, flat.d
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)


def memory_bytes(index: faiss.Index, n_labels: int) -> int:
    """Resident bytes of the structure: vectors, graph links, levels/offsets, plus our int64 labels."""
    total = index.ntotal * index.d * 4 + n_labels * 8
    if isinstance(index, faiss.IndexHNSW):
        h = index.hnsw
        total += h.neighbors.size() * 4 + h.levels.size() * 4 + h.offsets.size() * 8
    return total


def search_threads(n_queries: int):
    """Context for a search of ``n_queries``: one thread for small batches, else unchanged."""
    return omp_threads(1) if n_queries < SMALL_BATCH else nullcontext()
