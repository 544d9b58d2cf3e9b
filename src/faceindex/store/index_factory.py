"""FAISS structures behind VectorIndex: parameters, construction, views of stored vectors, memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields

import faiss
import numpy as np

from faceindex.errors import InvalidInputError

LAYOUT_FLAT = "hnsw-flat"
LAYOUT_SQ8_MMAP = "hnsw-sq8-mmap"
LAYOUT_IVF_SQ8 = "ivf-sq8-mmap"
LAYOUT_AUTO = "sq8-mmap"
LAYOUTS = (LAYOUT_AUTO, LAYOUT_SQ8_MMAP, LAYOUT_IVF_SQ8, LAYOUT_FLAT)
MMAP_LAYOUTS = (LAYOUT_AUTO, LAYOUT_SQ8_MMAP, LAYOUT_IVF_SQ8)
"""Layouts whose approximate index keeps SQ8 codes in RAM and the float32 vectors in a memory-mapped file."""

# Per-layout defaults of hnsw_m / ef_search (used when IndexParams leaves them None).
_LAYOUT_DEFAULTS = {
    LAYOUT_FLAT: {"hnsw_m": 32, "ef_construction": 40, "ef_search": 256},
    LAYOUT_SQ8_MMAP: {"hnsw_m": 16, "ef_construction": 100, "ef_search": 512},
    LAYOUT_IVF_SQ8: {"hnsw_m": 16, "ef_construction": 100, "ef_search": 512},
    LAYOUT_AUTO: {"hnsw_m": 16, "ef_construction": 100, "ef_search": 512},
}

# Structures an approximate index can have (VectorIndex.kind).
HNSW, IVF = "hnsw", "ivf"


@dataclass(frozen=True)
class IndexParams:
    """Tuning of the approximate (HNSW) index, measured with bench/bench_search.py.

    Measured on synthetic faceprints shaped like dlib's (synthetic.DLIB_RESNET), 2 shared cores,
    1 M faces, one query per call (wall p99):

    - hnsw-sq8-mmap (default), M 16, ef_construction 100, rerank 4·k: ef_search 256 / 512 / 768
      gave recall@10 vs exact 0.965 / 0.983 / 0.987, mate recall above cosine 0.92
      0.976 / 0.984 / 0.986, p99 2.4 / 3.4-3.7 / 5.5 ms; 280 B/face resident (RssAnon growth 282)
      + 512 B/face mapped; build 168 s. 512 is the smallest measured ef meeting recall@10 and
      mate recall >= 0.98 at 1 M, with thin margins; at 100 k it gives 0.998 / 0.994.
    - hnsw-flat, M 32, ef_construction 40: ef_search 64 / 128 / 256 / 512 gave recall@10
      0.948 / 0.974 / 0.989 / 0.997, mate recall 0.991 / 0.995 / 0.998 / 0.999, p99
      1.0 / 1.5 / 1.6-2.5 / 3.7 ms; 792 B/face resident; build 115 s in the same run as the sq8
      row (load ~1.7; 404 s at load 3-6). More recall, mate recall and build speed for 2.8x the RAM.

    - ``layout``: how the approximate index holds vectors (the exact flat index below
      ``approximate_above`` is the same for all):

      * ``"sq8-mmap"`` (default): ``"hnsw-sq8-mmap"`` up to ``ivf_above`` faces, ``"ivf-sq8-mmap"``
        beyond. HNSW-SQ8 M16 lost recall with size at a fixed ef (recall@10 0.983 at 1 M, 0.916 at
        10 M, ef 512) and a bigger graph does not fit 300 B/face; IVF keeps its recall when its lists
        grow with the gallery and costs ~150 B/face.
      * ``"ivf-sq8-mmap"``: IVF over SQ8 codes of residuals (1 B/dimension + an 8-byte row id in the
        lists: ~145 B/face at 128-d), ``nlist`` lists whose centroids an HNSW graph indexes; a search
        scans the ``nprobe`` nearest lists and re-ranks the ``rerank_factor·k`` best codes exactly from
        the same memory-mapped float32 file as hnsw-sq8-mmap. Erased rows leave the lists at once.

      * ``"hnsw-flat"``: FAISS IndexHNSWFlat, float32 vectors in RAM; the walk scores exactly.
        ~792 bytes/face resident at M 32 (512 vectors + 256 level-0 links + labels/levels).
      * ``"hnsw-sq8-mmap"``: HNSW over 8-bit scalar-quantised codes in RAM (128 B/face at
        dim 128) + level-0 links (``8·M`` B: 128 at M 16), ~280 bytes/face resident in all. The
        float32 vectors live in a memory-mapped file beside the index file (512 B/face of disk and
        page cache, not counted as process memory) and are read only to re-rank the
        ``rerank_factor·k`` best SQ8 candidates exactly, so reported scores stay exact cosines.
        Costs: a query touches ~``rerank_factor·k`` random 512 B rows of that file (page-cache
        hits when warm; disk reads when cold), the SQ8 walk is less precise than float32 (more
        ``ef_search`` for the same recall), and every save CRCs the whole vectors file.
    - ``hnsw_m``: graph degree; None = the layout's default (32 hnsw-flat, 16 hnsw-sq8-mmap).
      Higher = better recall on clustered data, more memory (level 0 costs ``2·M·4`` bytes/face:
      256 B at 32) and slower builds. At 100 k faces 16 lost ~1.5 points of recall@10 for the same
      latency (float32 walk); 48 built 2-3× slower for +0.5 point.
    - ``ef_construction``: candidate list while building; None = the layout's default (40
      hnsw-flat, 100 hnsw-sq8-mmap). At M 32, 40 gave the recall of 80 at 100 k faces for less
      build time; the build dominates a rebuild (~7 min at 1 M on 2 busy cores). At M 16 (sq8)
      40 leaves nodes the walk cannot reach: at 100 k, ef_search 512, recall@10 / mate recall
      0.991 / 0.990 with 40, 0.997 / 0.994 with 100, 0.997 / 0.995 with 200 (build 8 / 17 / 33 s).
    - ``ef_search``: candidate list while searching (raised to ``k`` — or to ``rerank_factor·k`` in
      the sq8 layout — when that is larger); None = the layout's default (256 hnsw-flat, 512
      hnsw-sq8-mmap: the coarser SQ8 walk and the sparser M 16 graph need a wider list).
      Latency grows about linearly with it; recall saturates. 256 is the smallest measured value
      meeting recall@10 >= 0.98 at 1 M; larger galleries need more (lower it for < 200 k faces).
    - ``rerank_factor``: sq8 layout only: how many SQ8 candidates per requested result are
      re-scored exactly from the vectors file (k' = factor·k). More = recall closer to what the
      walk found, more random reads of the vectors file per query.
    - ``max_dead_fraction``: erased faces stay as zeroed graph nodes (HNSW cannot delete); once
      they exceed this fraction of the nodes the index is rebuilt from the live vectors.
    - ``threads``: OpenMP threads for builds and batch searches; None = the CPUs this process may
      use. Searches of fewer than SMALL_BATCH queries always use one thread (see there).
    - ``ivf_above``: layout "sq8-mmap" only: galleries above this many faces get IVF instead of
      HNSW (crossing it rebuilds the index; FaceStore does so beside the index in use).
    - ``nlist``: IVF lists; None = ``auto_nlist(n)`` (~4·sqrt(n)) for the size at build time, and the
      index is rebuilt with more lists once it holds 4x the faces it was built for.
    - ``nprobe``: IVF lists scanned per query; None = ``ivf.nprobe_for``: 1/10 of the lists, capped
      at ~600 k codes scanned. Recall depends on the share of lists probed (a faceprint's true
      neighbours spread over many lists: they all sit in one narrow cone); latency on the codes
      scanned (~27 ns of CPU per SQ8 code here). bench_vectors.py, synthetic faceprints: at 2 M
      (4 161 lists) 209 / 400 lists gave recall@10 0.971 / 0.991, mate recall 0.976 / 0.994, CPU
      p99 3.1 / 5.2 ms; at 10 M (8 601 lists) 500 / 861 gave 0.981 / 0.993, mate recall 0.980 /
      0.993, CPU p99 12.2 / 23.2 ms (BENCHMARKS.md).
    """

    layout: str = LAYOUT_AUTO
    hnsw_m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    rerank_factor: int = 4
    max_dead_fraction: float = 0.2
    threads: int | None = None
    ivf_above: int = 1_000_000
    nlist: int | None = None
    nprobe: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InvalidInputError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        for name, value in _LAYOUT_DEFAULTS[self.layout].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: resolve the per-layout default once
        if self.hnsw_m < 4 or self.ef_construction < 1 or self.ef_search < 1:
            raise InvalidInputError("hnsw_m must be >= 4 and ef_construction, ef_search >= 1")
        if self.rerank_factor < 1:
            raise InvalidInputError("rerank_factor must be >= 1")
        if not 0.0 < self.max_dead_fraction < 1.0:
            raise InvalidInputError("max_dead_fraction must be in (0, 1)")
        if self.threads is not None and self.threads < 1:
            raise InvalidInputError("threads must be >= 1")
        if self.ivf_above < 0 or (self.nprobe is not None and self.nprobe < 1) or (
                self.nlist is not None and self.nlist < 1):
            raise InvalidInputError("ivf_above must be >= 0, nprobe and nlist >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IndexParams:
        """Inverse of ``to_dict``; files written before layouts existed were all ``hnsw-flat``."""
        known = {f.name for f in fields(cls)}
        return cls(**({"layout": LAYOUT_FLAT} | {k: v for k, v in d.items() if k in known}))


def approximate_kind(params: IndexParams, n: int) -> str:
    """The approximate structure for ``n`` faces: HNSW or IVF (layout "sq8-mmap": IVF above ``ivf_above``)."""
    if params.layout == LAYOUT_IVF_SQ8 or (params.layout == LAYOUT_AUTO and n > params.ivf_above):
        return IVF
    return HNSW


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

    Flat (float32) storage: the graph walk computes exact cosines, so no separate re-ranking copy
    is needed, at 512 B/face of RAM for the vectors. ``new_hnsw_sq8`` is the memory-lean
    alternative (codes in RAM, exact copy memory-mapped).
    """
    index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    return index


def new_hnsw_sq8(dim: int, params: IndexParams) -> faiss.IndexHNSWSQ:
    """HNSW graph over 8-bit scalar-quantised codes (1 byte/dimension); needs ``train`` first.

    Walk distances are approximate (codes, not vectors), so VectorIndex re-ranks the candidates
    with the float32 vectors of its memory-mapped file. Per-dimension min/max ranges come from
    the training sample, widened by 5 % each side so later adds seldom clip.
    """
    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    sq = faiss.downcast_index(index.storage).sq
    sq.rangestat = faiss.ScalarQuantizer.RS_minmax
    sq.rangestat_arg = 0.05
    return index


def is_ivf(index: faiss.Index) -> bool:
    return isinstance(index, faiss.IndexIVF)


def uses_vectors_file(index: faiss.Index) -> bool:
    """True when the index holds codes only and its float32 rows live in a VectorFile (sq8 / ivf layouts)."""
    return is_ivf(index) or is_sq8(index)


def is_sq8(index: faiss.Index) -> bool:
    """True for an HNSW index whose storage is scalar-quantised codes (the sq8-mmap layout)."""
    return isinstance(index, faiss.IndexHNSW) and isinstance(
        faiss.downcast_index(index.storage), faiss.IndexScalarQuantizer
    )


def stored_codes(index: faiss.Index) -> np.ndarray:
    """A writable (ntotal, code_size) uint8 view of the codes of an HNSW-SQ index (same caveats
    as ``stored_vectors``: aliases FAISS memory, invalid after the next add)."""
    sq = faiss.downcast_index(index.storage)
    n, cs = sq.ntotal, sq.code_size
    if n == 0:
        return np.zeros((0, cs), dtype=np.uint8)
    return faiss.rev_swig_ptr(sq.codes.data(), n * cs).reshape(n, cs)


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
    """Resident bytes of the structure: vectors or codes, graph links, levels/offsets, our int64 labels.

    Counts what FAISS allocates for the payload (vector growth slack and allocator overhead
    excluded); memory-mapped files are not counted (see VectorIndex.mapped_bytes).
    """
    if is_ivf(index):
        q = faiss.downcast_index(index.quantizer)
        quant = q.ntotal * q.d * 4 + q.hnsw.neighbors.size() * 4 + q.hnsw.levels.size() * 4
        return index.invlists.compute_ntotal() * (index.code_size + 8) + quant + n_labels * 8
    per_face = index.d * 4
    if is_sq8(index):
        per_face = faiss.downcast_index(index.storage).code_size
    total = index.ntotal * per_face + n_labels * 8
    if isinstance(index, faiss.IndexHNSW):
        h = index.hnsw
        total += h.neighbors.size() * 4 + h.levels.size() * 4 + h.offsets.size() * 8
    return total


def search_threads(n_queries: int):
    """Context for a search of ``n_queries``: one thread for small batches, else unchanged."""
    return omp_threads(1) if n_queries < SMALL_BATCH else nullcontext()
