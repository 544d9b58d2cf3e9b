"""Benchmark VectorIndex search against exact FAISS flat search on synthetic dlib-like faceprints.

    python bench/bench_search.py                       # 100 k and 1 M faces (~12 min on 2 busy cores)
    python bench/bench_search.py --sizes 100000 --ef 64,128
    python bench/bench_search.py --layout hnsw-flat,hnsw-sq8-mmap --ef 256,512 --save-dir DIR
    python bench/bench_search.py --calibrate-lfw 280   # re-measure real dlib similarity statistics

Queries are fresh synthetic photos of people in the gallery (mated probes). Reported per size: exact
baseline (IndexFlatIP) single-query p50/p99 and batch throughput; VectorIndex build time, memory
bytes/face, and for each ef_search the single-query p50/p99, batch throughput, recall@k vs exact,
and mate recall: of the true mates (same identity) with exact cosine >= threshold inside the exact
top mate-k, the fraction a mate-k search returns.

Memory, per layout: "B/face" is VectorIndex.memory_bytes() (FAISS payload: vectors or SQ8 codes,
graph, levels, labels); "RSS Δ/face" is the growth of the process's anonymous resident memory
(RssAnon) across the build, allocator slack included; "mapped/face" is the float32 vectors file of
the hnsw-sq8-mmap layout (page cache, not process memory; it is warm during the timed searches).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from benchlib import machine_line  # noqa: E402

from faceindex.store import index_file  # noqa: E402
from faceindex.store.index_factory import LAYOUTS, search_threads  # noqa: E402
from faceindex.store.synthetic import make_gallery, similarity_stats  # noqa: E402
from faceindex.store.vector_index import IndexParams, VectorIndex  # noqa: E402


def machine() -> str:
    return f"{machine_line()} (shared machine), faiss {faiss.__version__}"


def latencies_ms(search, queries: np.ndarray, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU time (ms) of ``n`` single-query calls, after a short warm-up.

    CPU time (this thread's) excludes time spent descheduled, which on shared, busy cores is what
    dominates the wall-clock p99; both are reported so the two effects stay apart.
    """
    for i in range(min(10, n)):
        search(queries[i : i + 1], k)
    wall, cpu = np.empty(n), np.empty(n)
    for i in range(n):
        t, c = time.perf_counter(), time.thread_time()
        search(queries[i : i + 1], k)
        wall[i], cpu[i] = time.perf_counter() - t, time.thread_time() - c
    return wall * 1e3, cpu * 1e3


def throughput(search, queries: np.ndarray, k: int) -> float:
    t = time.perf_counter()
    search(queries, k)
    return len(queries) / (time.perf_counter() - t)


def mate_recall(got, gt_ids, gt_scores, who, ident_of, threshold) -> tuple[float, int]:
    """Fraction of true mates above ``threshold`` in the exact top list that ``got`` contains."""
    found = total = 0
    for i in range(len(who)):
        mates = gt_ids[i][(gt_scores[i] >= threshold) & (ident_of[gt_ids[i]] == who[i])]
        total += len(mates)
        found += np.isin(mates, got[i]).sum()
    return found / max(total, 1), total


def rss_kib() -> dict[str, int]:
    """RssAnon / RssFile of this process in KiB (Linux /proc/self/status), after malloc_trim.

    malloc_trim hands freed heap back to the kernel first, so build temporaries that were freed
    are not counted as the index's memory (what glibc keeps cached would be, otherwise).
    """
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f) if k in ("RssAnon", "RssFile")}


def bench_size(n: int, a: argparse.Namespace) -> list[str]:
    rows = []
    t = time.perf_counter()
    g = make_gallery(n, seed=a.seed)
    q, who = g.probes(a.queries, seed=a.seed + 1)
    st = similarity_stats(g.vectors, g.identities)
    print(
        f"[{n}] generated in {time.perf_counter() - t:.1f} s; {g.identities.max() + 1} identities; cos same "
        f"{st['same_mean']:.3f}±{st['same_sd']:.3f}, different {st['diff_mean']:.3f}±{st['diff_sd']:.3f}",
        flush=True,
    )
    kk = max(a.k, a.mate_k)
    flat = faiss.IndexFlatIP(g.vectors.shape[1])
    flat.add(g.vectors)
    gt_s, gt_i = flat.search(q, kk)

    def exact(x, k):  # the same thread rule as VectorIndex (1 thread for single queries), for fairness
        with search_threads(len(x)):
            return flat.search(x, k)

    lat, cpu = latencies_ms(exact, q, a.k, min(a.exact_queries, len(q)))
    qps = throughput(exact, q, a.k)
    exact_p50 = np.percentile(lat, 50)
    rows.append(
        f"| {n:,} | exact flat | – | {exact_p50:.2f} | {np.percentile(lat, 99):.2f} | "
        f"{np.percentile(cpu, 99):.2f} | {qps:,.0f} | 1.000 | 1.000 | {g.vectors.shape[1] * 4 + 8} | – | – | – | 1× |"
    )
    print(rows[-1], flush=True)
    flat.reset()  # frees its copy of the vectors before the index under test is built

    for layout in a.layout:
        rows += bench_layout(n, layout, g, q, who, gt_i, gt_s, exact_p50, a)
    return rows


def bench_layout(n, layout, g, q, who, gt_i, gt_s, exact_p50, a) -> list[str]:
    """Build VectorIndex with ``layout`` over the gallery and sweep ``a.ef``; one table row per ef."""
    rows = []
    params = IndexParams(
        layout=layout, hnsw_m=a.hnsw_m, ef_construction=a.ef_construction, rerank_factor=a.rerank_factor
    )
    vi = VectorIndex(
        g.vectors.shape[1], "synthetic", approximate_above=a.approximate_above, params=params, work_dir=a.save_dir
    )
    ids = np.arange(n, dtype=np.int64)
    rss0 = rss_kib()
    t = time.perf_counter()
    for lo in range(0, n, a.batch):  # batches, as ingest would: the flat -> HNSW switch happens inside
        vi.add(ids[lo : lo + a.batch], g.vectors[lo : lo + a.batch])
    build_s = time.perf_counter() - t
    rss1 = rss_kib()
    bpf = vi.memory_bytes() / n
    rss_pf = (rss1["RssAnon"] - rss0["RssAnon"]) * 1024 / n
    mapped_pf = vi.mapped_bytes() / n
    name = f"{vi.kind} {layout} M{vi.params.hnsw_m} efC{vi.params.ef_construction}"
    if vi.mapped_bytes():
        name += f" rerank {a.rerank_factor}×k"
    print(
        f"[{n}] VectorIndex {name} built in {build_s:.1f} s, {bpf:.0f} B/face (FAISS payload), RssAnon Δ "
        f"{rss_pf:.0f} B/face, mapped {mapped_pf:.0f} B/face, RssFile {rss0['RssFile']} -> {rss1['RssFile']} KiB",
        flush=True,
    )
    for ef in a.ef:
        vi.set_ef_search(ef)
        lat, cpu = latencies_ms(vi.search, q, a.k, len(q))
        qps = throughput(vi.search, q, a.k)
        _, got = vi.search(q, a.k)
        rec = np.mean([np.isin(gt_i[i, : a.k], got[i]).mean() for i in range(len(q))])
        _, got_m = vi.search(q, a.mate_k)
        mrec, n_mates = mate_recall(got_m, gt_i, gt_s, who, g.identities, a.threshold)
        p50 = np.percentile(lat, 50)
        rows.append(
            f"| {n:,} | {name} | {ef} | {p50:.2f} | "
            f"{np.percentile(lat, 99):.2f} | {np.percentile(cpu, 99):.2f} | {qps:,.0f} | {rec:.4f} | "
            f"{mrec:.4f} ({n_mates}) | {bpf:.0f} | {rss_pf:.0f} | {mapped_pf:.0f} | {build_s:.0f} | "
            f"{exact_p50 / p50:.0f}× |"
        )
        print(rows[-1], flush=True)
    if a.save_dir:
        path = Path(a.save_dir) / f"bench_{n}.fidx"
        t = time.perf_counter()
        vi.save(path, {"bench": n})
        t_save = time.perf_counter() - t
        t = time.perf_counter()
        VectorIndex.load(path)
        t_load = time.perf_counter() - t
        size = path.stat().st_size / n
        print(f"[{n}] {layout}: save {t_save:.1f} s, load {t_load:.1f} s, index file {size:.0f} B/face", flush=True)
        path.unlink()
        index_file.vectors_path(path).unlink(missing_ok=True)
    return rows


def calibrate_lfw(n_faces: int) -> None:
    """Embed up to ``n_faces`` lfw-devtrain faces with dlib and print the statistics synthetic.py fits."""
    import dlib  # lazy: only this mode needs the models
    import face_recognition_models as frm

    root = Path(os.environ.get("FACEINDEX_TEST_FACES", Path(__file__).resolve().parents[2] / "shared/faces"))
    root = root / "lfw-devtrain/images"
    names = sorted(p.name for p in root.iterdir() if len(list(p.glob("*.jpg"))) >= 3)
    np.random.default_rng(0).shuffle(names)
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    vecs, labels = [], []
    for name in names:
        for f in sorted((root / name).glob("*.jpg"))[:4]:
            if len(vecs) >= n_faces:
                break
            img = dlib.load_rgb_image(str(f))
            faces = det(img, 1)
            if faces:  # LFW photos are centred on the labelled person
                box = min(faces, key=lambda r: (r.center().x - 125) ** 2 + (r.center().y - 125) ** 2)
                vecs.append(np.array(rec.compute_face_descriptor(img, sp(img, box))))
                labels.append(name)
    x = np.array(vecs)
    norm = np.linalg.norm(x, axis=1).mean()
    print(f"{len(x)} faces of {len(set(labels))} people; raw descriptor norm {norm:.3f}")
    st = similarity_stats(x / np.linalg.norm(x, axis=1, keepdims=True), np.array(labels), max_faces=len(x))
    print({k: round(v, 4) for k, v in st.items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    p.add_argument("--sizes", type=ints, default=[100_000, 1_000_000], help="gallery sizes (faces)")
    p.add_argument("--queries", type=int, default=1000, help="mated probes per size")
    p.add_argument("--exact-queries", type=int, default=200, help="single queries timed on exact search")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mate-k", type=int, default=50, help="candidate list for mate recall")
    p.add_argument("--threshold", type=float, default=0.92, help="match threshold (cosine) for mate recall")
    p.add_argument("--ef", type=ints, default=[64, 128, 256], help="ef_search values to sweep")
    p.add_argument("--hnsw-m", type=int, default=None, help="graph degree (default: the layout's)")
    p.add_argument(
        "--layout",
        type=lambda s: s.split(","),
        default=[IndexParams.layout],
        help=f"approximate layouts to build, comma-separated, of {LAYOUTS} (default: VectorIndex's)",
    )
    p.add_argument("--rerank-factor", type=int, default=IndexParams.rerank_factor, help="sq8 layout: k' = factor·k")
    p.add_argument("--ef-construction", type=int, default=None, help="(default: the layout's)")
    p.add_argument(
        "--approximate-above",
        type=int,
        default=VectorIndex.DEFAULT_APPROXIMATE_ABOVE,
        help="VectorIndex switch point (its default)",
    )
    p.add_argument("--batch", type=int, default=100_000, help="faces per add() call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-dir", help="also time save/load of the index here (and keep sq8 vectors files here)")
    p.add_argument("--calibrate-lfw", type=int, metavar="N", help="only measure N real lfw-devtrain faces")
    a = p.parse_args()
    if a.calibrate_lfw:
        calibrate_lfw(a.calibrate_lfw)
        return
    if a.save_dir:
        Path(a.save_dir).mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now().astimezone()
    header = [
        "| faces | index | ef | p50 ms | p99 ms | p99 CPU ms | batch q/s | recall@10 | mate recall (n) "
        "| B/face | RSS Δ/face | mapped/face | build s | speed-up p50 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [r for n in a.sizes for r in bench_size(n, a)]
    git = ["git", "rev-parse", "--short", "HEAD"]
    rev = subprocess.run(git, capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    print("\n```text")
    print(f"command: python bench/{Path(__file__).name} {shlex.join(sys.argv[1:])}")
    print(f"machine: {machine()}")
    print(f"date:    {started:%Y-%m-%d %H:%M %Z}, commit {rev or '?'}, threads {faiss.omp_get_max_threads()}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print("```\n")
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
