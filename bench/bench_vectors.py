"""The same synthetic faceprints through the embedded vector index (FAISS) and through Milvus Lite.

    python bench/bench_vectors.py                         # 100 k faces (~5 min on 2 busy cores)
    python bench/bench_vectors.py --sizes 20000 --queries 200 --milvus-index FLAT
    python bench/bench_vectors.py --sizes 10000000 --milvus-index none --bulk --nprobe 0,500,800   # embedded only

Per backend: ingest rows/s (adds in batches of 5 000 plus the save or flush that makes them durable),
bytes per face on disk after that, single-query search p50/p99 (wall), recall@10 against exact search
(FAISS IndexFlatIP over the same vectors), and mate recall (true mates above cosine 0.92 in the exact top 50
that a top-50 search returns). Queries are fresh synthetic photos of people in the gallery
(store.synthetic, shaped like dlib ResNet faceprints). Milvus Lite is the Milvus engine embedded in a local
process (pip milvus-lite); it is what the tests use, not a cluster: its figures say nothing about a
Milvus server's speed, only about using it through the same interface.

Embedded extras: ``--bulk`` loads the faces with one ``VectorIndex.extend`` (what FaceStore's rebuild does:
one build sized for the total) instead of adds of 5 000; ``--nprobe`` re-measures the search at other IVF
probe counts on the same index (0 = the default); resident B/face is the index's own count of its RAM
(codes, lists, graph, labels) and RSS growth the process's anonymous memory growth over the build; p99 CPU
is the searching thread's CPU time (what the load average of a shared machine does not inflate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from benchlib import machine_line  # noqa: E402

from faceindex.store.index_factory import IndexParams, search_threads  # noqa: E402
from faceindex.store.ivf import nprobe_for  # noqa: E402
from faceindex.store.milvus_vectors import MilvusVectors  # noqa: E402
from faceindex.store.synthetic import make_gallery  # noqa: E402
from faceindex.store.vector_index import VectorIndex  # noqa: E402

BATCH = 5_000
MATE_K, MATE_THRESHOLD = 50, 0.92


def disk_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def latencies(search, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and thread-CPU milliseconds of one-query searches (after 10 warm-up searches)."""
    for i in range(min(10, len(queries))):
        search(queries[i:i + 1], k)
    wall, cpu = np.empty(len(queries)), np.empty(len(queries))
    for i in range(len(queries)):
        t, c = time.perf_counter(), time.thread_time()
        search(queries[i:i + 1], k)
        wall[i], cpu[i] = time.perf_counter() - t, time.thread_time() - c
    return wall * 1e3, cpu * 1e3


def anon_rss() -> int:
    """Anonymous resident bytes of this process (RssAnon: excludes mapped files such as the vectors file)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def recall(got: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(g[g >= 0]) & set(t)) / len(t) for g, t in zip(got, gt, strict=True)]))


def mate_recall(got, gt_i, gt_s, who, ident) -> float:
    found = total = 0
    for i in range(len(who)):
        mates = gt_i[i][(gt_s[i] >= MATE_THRESHOLD) & (ident[gt_i[i]] == who[i])]
        total += len(mates)
        found += np.isin(mates, got[i]).sum()
    return found / max(total, 1)


def run(name, ingest, search, size_of, n, q, who, ident, gt_i, gt_s, k, resident=None, build=None) -> str:
    """One table row; ``ingest`` None = already ingested (``build`` seconds given), a re-measure."""
    rss0, load0 = anon_rss(), load()
    if ingest is not None:
        t = time.perf_counter()
        ingest()
        build = time.perf_counter() - t
    rss = (anon_rss() - rss0) / n if ingest is not None else float("nan")
    name = name() if callable(name) else name
    lat, cpu = latencies(search, q, k)
    _, got = search(q, k)
    _, got_m = search(q, MATE_K)
    res = f"{resident() / n:,.0f} / {rss:,.0f}" if resident is not None else "–"
    row = (f"| {n:,} | {name} | {n / build:,.0f} ({build:,.0f} s) | {size_of() / n:,.0f} | {res} | "
           f"{np.percentile(lat, 50):.2f} | {np.percentile(lat, 99):.2f} | {np.percentile(cpu, 99):.2f} | "
           f"{recall(got, gt_i[:, :k]):.3f} | {mate_recall(got_m, gt_i, gt_s, who, ident):.3f} | {load0} → {load()} |")
    print(row, flush=True)
    return row


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` by inner product, in slices of 1 M rows (no second copy of a 10 M gallery)."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for lo in range(0, len(x), 1 << 20):
        s = q @ x[lo:lo + (1 << 20)].T
        top = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cs, ci = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1), np.concatenate([best_i, top + lo], 1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    return best_s, best_i


def bench(n: int, a: argparse.Namespace, work: Path) -> list[str]:
    g = make_gallery(n, seed=a.seed)
    q, who = g.probes(a.queries, seed=a.seed + 1)
    ids = np.arange(1, n + 1, dtype=np.int64)  # face ids start at 1 as in the catalog
    ident = np.concatenate([[-1], g.identities])  # indexed by face id
    gt_s, gt_i = exact_top(g.vectors, q, MATE_K)
    gt_i += 1
    rows = []

    # Embedded default: VectorIndex as FaceStore builds it (exact up to 50 k, then HNSW-SQ8, IVF-SQ8 above
    # 1 M; float32 vectors memory-mapped for the re-ranking).
    vi = VectorIndex(128, "synthetic", work_dir=work, params=IndexParams(**({"layout": a.layout} if a.layout else {})))
    path = work / "index.faiss"

    def faiss_ingest():
        if a.bulk:
            vi.extend((ids[lo:lo + BATCH * 10], g.vectors[lo:lo + BATCH * 10]) for lo in range(0, n, BATCH * 10))
        else:
            for lo in range(0, n, BATCH):
                vi.add(ids[lo:lo + BATCH], g.vectors[lo:lo + BATCH])
        vi.save(path, {"max_face_id": n, "epoch": 0})

    def faiss_search(x, k):
        with search_threads(len(x)):
            return vi.search(x, k)

    def label() -> str:
        p = vi.params
        if vi.kind == "ivf":
            nl = vi.nlist
            return f"faiss {p.layout}: ivf nlist {nl:,} nprobe {nprobe_for(p, nl, len(vi))}"
        return f"faiss {p.layout}: {vi.kind}" + (f" ef {p.ef_search}" if vi.kind == "hnsw" else "")

    size = lambda: disk_bytes(path) + disk_bytes(work / "index.faiss.vectors")  # noqa: E731
    t0 = time.perf_counter()
    rows.append(run(label, faiss_ingest, faiss_search, size, n, q, who, ident, gt_i, gt_s, a.k,
                    resident=vi.memory_bytes))
    build = time.perf_counter() - t0
    for nprobe in a.nprobe:
        if vi.kind == "ivf":
            vi.params = IndexParams.from_dict(vi.params.to_dict() | {"nprobe": nprobe or None})
            rows.append(run(label(), None, faiss_search, size, n, q, who, ident, gt_i, gt_s, a.k,
                            resident=vi.memory_bytes, build=build))
    vi.close()

    for index_type in a.milvus_index:
        db = work / f"milvus-{index_type.lower()}.db"
        spec = {"index_type": index_type,
                "params": {"M": a.hnsw_m, "efConstruction": a.ef_construction} if index_type == "HNSW" else {}}
        mv = MilvusVectors(str(db), collection="bench", index=spec)
        mv.ef = a.ef
        mv.bind("synthetic", 128, "bench", create=True)

        def milvus_ingest(mv=mv):
            for lo in range(0, n, BATCH):
                mv.add(ids[lo:lo + BATCH], g.vectors[lo:lo + BATCH])
            mv.flush()

        label = f"Milvus Lite {index_type}" + (f" M {a.hnsw_m} ef {a.ef}" if index_type == "HNSW" else "")
        rows.append(run(label, milvus_ingest, mv.search, lambda db=db: disk_bytes(db), n, q, who, ident, gt_i,
                        gt_s, a.k))
        mv.close()
        shutil.rmtree(db, ignore_errors=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000", help="comma-separated gallery sizes")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--milvus-index", default="FLAT,HNSW", help="Milvus index types to measure (FLAT, HNSW, ...)")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", type=int, default=256)
    p.add_argument("--layout", default="", help="embedded layout (default: the default, sq8-mmap)")
    p.add_argument("--bulk", action="store_true", help="embedded: one bulk build (VectorIndex.extend)")
    p.add_argument("--nprobe", default="", help="embedded IVF: re-measure at these nprobe (0 = default)")
    a = p.parse_args()
    a.milvus_index = [s.strip().upper() for s in a.milvus_index.split(",") if s.strip() and s.strip() != "none"]
    a.nprobe = [int(s) for s in a.nprobe.split(",") if s.strip()]
    print(f"# bench_vectors {dt.date.today()}: {machine_line()}, faiss {faiss.__version__}")
    print("| faces | backend | ingest rows/s (s) | disk B/face | resident / RSS growth B/face | p50 ms | p99 ms | "
          "p99 CPU ms | recall@10 | mate recall | load before → after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-vectors-") as work:
            rows += bench(n, a, Path(work))


if __name__ == "__main__":
    main()
