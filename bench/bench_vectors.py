"""The same synthetic faceprints through the embedded vector index (FAISS) and through Milvus Lite.

    python bench/bench_vectors.py                         # 100 k faces (~5 min on 2 busy cores)
    python bench/bench_vectors.py --sizes 20000 --queries 200 --milvus-index FLAT

Per backend: ingest rows/s (adds in batches of 5 000 plus the save or flush that makes them durable),
bytes per face on disk after that, single-query search p50/p99 (wall), recall@10 against exact search
(FAISS IndexFlatIP over the same vectors), and mate recall (true mates above cosine 0.92 in the exact top 50
that a top-50 search returns). Queries are fresh synthetic photos of people in the gallery
(store.synthetic, shaped like dlib ResNet faceprints). Milvus Lite is the Milvus engine embedded in a local
process (pip milvus-lite); it is what the tests use, not a cluster: its figures say nothing about a
Milvus server's speed, only about using it through the same interface.
"""

from __future__ import annotations

import argparse
import datetime as dt
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

from faceindex.store.index_factory import search_threads  # noqa: E402
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


def latencies(search, queries: np.ndarray, k: int) -> np.ndarray:
    for i in range(min(10, len(queries))):
        search(queries[i:i + 1], k)
    out = np.empty(len(queries))
    for i in range(len(queries)):
        t = time.perf_counter()
        search(queries[i:i + 1], k)
        out[i] = time.perf_counter() - t
    return out * 1e3


def recall(got: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(g[g >= 0]) & set(t)) / len(t) for g, t in zip(got, gt, strict=True)]))


def mate_recall(got, gt_i, gt_s, who, ident) -> float:
    found = total = 0
    for i in range(len(who)):
        mates = gt_i[i][(gt_s[i] >= MATE_THRESHOLD) & (ident[gt_i[i]] == who[i])]
        total += len(mates)
        found += np.isin(mates, got[i]).sum()
    return found / max(total, 1)


def run(name, ingest, search, size_of, n, q, who, ident, gt_i, gt_s, k) -> str:
    t = time.perf_counter()
    ingest()
    build = time.perf_counter() - t
    lat = latencies(search, q, k)
    _, got = search(q, k)
    _, got_m = search(q, MATE_K)
    row = (f"| {n:,} | {name} | {n / build:,.0f} | {size_of() / n:,.0f} | {np.percentile(lat, 50):.2f} | "
           f"{np.percentile(lat, 99):.2f} | {recall(got, gt_i[:, :k]):.3f} | "
           f"{mate_recall(got_m, gt_i, gt_s, who, ident):.3f} |")
    print(row, flush=True)
    return row


def bench(n: int, a: argparse.Namespace, work: Path) -> list[str]:
    g = make_gallery(n, seed=a.seed)
    q, who = g.probes(a.queries, seed=a.seed + 1)
    ids = np.arange(1, n + 1, dtype=np.int64)  # face ids start at 1 as in the catalog
    ident = np.concatenate([[-1], g.identities])  # indexed by face id
    flat = faiss.IndexFlatIP(128)
    flat.add(g.vectors)
    gt_s, gt_rows = flat.search(q, MATE_K)
    gt_i = gt_rows + 1
    flat.reset()
    rows = []

    # Embedded default: VectorIndex as FaceStore builds it (exact up to 50 k, then HNSW-SQ8 + mmap re-rank).
    vi = VectorIndex(128, "synthetic", work_dir=work)
    path = work / "index.faiss"

    def faiss_ingest():
        for lo in range(0, n, BATCH):
            vi.add(ids[lo:lo + BATCH], g.vectors[lo:lo + BATCH])
        vi.save(path, {"max_face_id": n, "epoch": 0})

    def faiss_search(x, k):
        with search_threads(len(x)):
            return vi.search(x, k)

    rows.append(run(f"faiss (embedded default, {vi.params.layout} ef {vi.params.ef_search})", faiss_ingest,
                    faiss_search, lambda: disk_bytes(path) + disk_bytes(work / "index.faiss.vectors"),
                    n, q, who, ident, gt_i, gt_s, a.k))
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
    a = p.parse_args()
    a.milvus_index = [s.strip().upper() for s in a.milvus_index.split(",") if s.strip()]
    print(f"# bench_vectors {dt.date.today()}: {machine_line()}, faiss {faiss.__version__}")
    print("| faces | backend | ingest rows/s | disk B/face | p50 ms | p99 ms | recall@10 | mate recall |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-vectors-") as work:
            rows += bench(n, a, Path(work))


if __name__ == "__main__":
    main()
