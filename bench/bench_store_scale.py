"""Benchmark: a whole store at scale — catalog writes, index build, reopen, and search through the Engine path.

Fills a real store (SQLite catalog + FAISS index) with N synthetic faceprints shaped like dlib's, then
times: the catalog inserts, the first index build (FaceStore.index()), a save, a reopen of the store
(index load + catch-up check), and single-face searches through FaceStore.search (the path Engine.search
uses after embedding), warm, then cold: every store file dropped from the page cache
(posix_fadvise DONTNEED, as after a reboot) and the store reopened, so the memory-mapped vectors that the
default layout re-ranks with are read from disk as the searches touch them. Baseline in the same run:
exact FAISS search over the same vectors.

    python bench/bench_store_scale.py --faces 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from benchlib import machine_line

from faceindex.pipeline.types import Face
from faceindex.store.face_store import FaceStore
from faceindex.store.synthetic import make_gallery


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def fill_catalog(store: FaceStore, vectors: np.ndarray, per_image: int = 4) -> None:
    """Insert the vectors as faces of synthetic images (per_image faces each), 10k images per transaction."""
    catalog = store.catalog
    with catalog.transaction():
        catalog.bind_model("dlib-resnet-v1+flip")
        collection = catalog.create_collection("scale", "legitimate-interests", "benchmark")
    n = len(vectors)
    for start in range(0, n, 10_000 * per_image):
        with catalog.transaction():
            for lo in range(start, min(n, start + 10_000 * per_image), per_image):
                image_id = catalog.insert_image(collection.id, f"/synthetic/{lo:09d}.jpg", sha256=f"{lo:064x}",
                                                size_bytes=1)
                faces = [Face(box=(0, 0, 100, 100), score=1.0, detector="synthetic", landmarks=[], size_px=100,
                              blur=100.0, embedding=vectors[i]) for i in range(lo, min(n, lo + per_image))]
                catalog.insert_faces(image_id, faces, "dlib-resnet-v1+flip")


def drop_page_cache(root: Path) -> None:
    """Ask the kernel to forget the cached pages of every file under `root` (clean pages go; no root needed)."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def search_latencies(store: FaceStore, probes: np.ndarray) -> list[float]:
    """Milliseconds per single-face top-10 search, in probe order."""
    return [timed(lambda v=v: store.search(v[None, :], 10))[1] * 1000 for v in probes]


def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    gallery = make_gallery(args.faces)
    probes, _ = gallery.probes(args.queries)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        store = FaceStore(root)
        _, t_fill = timed(lambda: fill_catalog(store, gallery.vectors))
        rows.append(("catalog inserts", f"{t_fill:.1f} s", f"{args.faces / t_fill:,.0f} faces/s"))
        index, t_build = timed(store.index)
        rows.append(("first index build", f"{t_build:.1f} s", f"kind {index.kind}, load average after "
                     f"{os.getloadavg()[0]:.1f}"))
        _, t_save = timed(store.save_index)
        rows.append(("index save", f"{t_save:.1f} s", ""))
        store.catalog.close()
        store, t_open = timed(lambda: FaceStore(root))
        _, t_load = timed(store.index)
        rows.append(("reopen store + load index", f"{t_open + t_load:.2f} s", ""))
        sizes = {p.name: p.stat().st_size for p in root.iterdir() if p.is_file()}
        latencies = search_latencies(store, probes)
        store.catalog.close()
        del store
        gc.collect()  # unmap the vectors file before its pages are dropped
        drop_page_cache(root)
        store, t_cold_open = timed(lambda: FaceStore(root))
        _, t_cold_load = timed(store.index)
        rows.append(("reopen + load index, page cache dropped", f"{t_cold_open + t_cold_load:.2f} s", ""))
        cold = search_latencies(store, probes)
        store.catalog.close()
    exact = faiss.IndexFlatIP(gallery.vectors.shape[1])
    exact.add(gallery.vectors)
    faiss.omp_set_num_threads(1)
    exact_ms = [timed(lambda v=v: exact.search(v[None, :], 10))[1] * 1000 for v in probes[:50]]
    print(f"### Store at scale: {args.faces:,} synthetic faces ({dt.date.today()})")
    print(f"- command: `python bench/bench_store_scale.py --faces {args.faces}`")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"- machine: {machine_line()}; peak RSS of the whole run {peak_mib} MiB")
    print("\n| step | time | note |\n|---|---|---|")
    for step, value, note in rows:
        print(f"| {step} | {value} | {note} |")
    warm = statistics.median(latencies)
    print(f"| FaceStore.search, one face, top 10 | p50 {warm:.2f} ms, p99 {p99(latencies):.2f} ms"
          f" | {statistics.median(exact_ms) / statistics.median(latencies):.1f}x faster than exact FAISS "
          f"(p50 {statistics.median(exact_ms):.1f} ms, 1 thread) |")
    print(f"| the same searches, cold page cache | first {cold[0]:.1f} ms, p50 {statistics.median(cold):.2f} ms, "
          f"p99 {p99(cold):.2f} ms | {args.queries} searches right after the reopen; the first pay the disk reads |")
    print("\n| file | MiB | bytes/face |\n|---|---|---|")
    for name, size in sorted(sizes.items()):
        print(f"| {name} | {size / 2**20:,.0f} | {size / args.faces:,.0f} |")


if __name__ == "__main__":
    main()
