"""People grouping at scale: group N synthetic faceprints from scratch, then assign new faces incrementally.

    python bench/bench_people_scale.py --faces 1000000 --baseline-faces 100000 --new 1000
    (or the two parts as separate processes: --faces 0 --baseline-faces 100000, --baseline-faces 0)

Data: store/synthetic.py faceprints with identity structure fitted to dlib's (same person cosine
0.95 ± 0.016, strangers 0.84 ± 0.04; geometric identity sizes of mean 8), so the graph has the edges a
real store's would. Thresholds: the defaults from the dlib model's calibration (people.grouping).

In one run:
1. baseline, at `--baseline-faces`: the grouping as it was before the job graph (HNSW M 32, efConstruction
   40, efSearch 128, k 20), and the job graph (people/knn.py: HNSW M 16, efConstruction 40, efSearch 48) on
   the same faces: time ratio and quality of both;
2. from scratch at `--faces` with the job graph;
3. incremental: `--new` fresh photos of gallery identities assigned to the grouped faces through an index
   that already holds the gallery: (a) the job graph kept from step 2 and (b) the store's own index
   (store.vector_index.VectorIndex at its default layout, what FaceStore keeps), searched through
   knn.row_search as PeopleOps does; its build is ingest's cost and is reported, not counted.

Each phase reports wall seconds and process CPU seconds (all threads). The machine is shared: wall time
depends on the other jobs, so "idle 2-core estimate" = CPU of the multi-threaded FAISS phases / threads
+ CPU of the single-threaded phases (agglomeration), what the run would take with the cores to itself.

These are the arrays alone; `people cluster` end to end (catalog + store index, the Engine path) is measured by
bench/bench_people_e2e.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import machine_line  # noqa: E402

from faceindex.matching import load_calibration  # noqa: E402
from faceindex.people.grouping import GroupingParams, agglomerate  # noqa: E402
from faceindex.people.knn import job_index, knn_edges, row_search  # noqa: E402
from faceindex.people.metrics import cluster_scores  # noqa: E402
from faceindex.store.synthetic import make_gallery  # noqa: E402


class Clock:
    """Wall and process-CPU seconds per named phase; `parallel` phases run on `threads` FAISS threads."""

    def __init__(self, threads: int):
        self.threads = threads
        self.rows: list[tuple[str, float, float, bool]] = []

    def run(self, name: str, fn, *, parallel: bool):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        self.rows.append((name, wall, cpu, parallel))
        print(f"  {name}: wall {wall:.1f} s, CPU {cpu:.1f} s (load {load()})", flush=True)
        return out

    def total(self, names: list[str]) -> tuple[float, float, float]:
        """(wall, CPU, idle 2-core estimate) over the named phases."""
        picked = [r for r in self.rows if r[0] in names]
        wall = sum(r[1] for r in picked)
        cpu = sum(r[2] for r in picked)
        idle = sum(r[2] / self.threads if r[3] else r[2] for r in picked)
        return wall, cpu, idle


def load() -> str:
    import os

    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def scores_line(labels: np.ndarray, truth: np.ndarray) -> str:
    s = cluster_scores(labels, truth)
    return (f"pairwise P {s.pairwise_precision:.4f} R {s.pairwise_recall:.4f}, BCubed P {s.bcubed_precision:.4f} "
            f"R {s.bcubed_recall:.4f} F {s.bcubed_f:.4f}, unassigned {s.unassigned}")


def from_scratch(name: str, x: np.ndarray, truth: np.ndarray, params: GroupingParams, clock: Clock, *,
                 m: int, ef: int):
    """Build a job HNSW graph (M `m`), search all faces at efSearch `ef`, agglomerate; returns (labels, index)."""
    print(f"{name}: {len(x)} faces, HNSW M {m}, efSearch {ef}, k {params.k}", flush=True)
    index = clock.run(f"{name} build", lambda: job_index(x, m=m), parallel=True)
    edges = clock.run(f"{name} k-NN", lambda: knn_edges(x, params.k, min_sim=params.edge_threshold, index=index,
                                                        ef=ef), parallel=True)
    labels = clock.run(f"{name} agglomerate", lambda: agglomerate(x, edges, params), parallel=False)
    wall, cpu, idle = clock.total([f"{name} build", f"{name} k-NN", f"{name} agglomerate"])
    print(f"  {name}: {len(edges[0])} edges; total wall {wall:.1f} s, CPU {cpu:.1f} s, idle 2-core estimate "
          f"{idle:.1f} s; {scores_line(labels, truth)}", flush=True)
    return labels, index


def incremental(name: str, x: np.ndarray, labels: np.ndarray, new_x: np.ndarray, truth: np.ndarray,
                params: GroupingParams, clock: Clock, add_and_search) -> None:
    """Assign new faces (free) to the grouped store: index add + k-NN of the new faces + agglomerate."""
    n, n_new = len(x), len(new_x)
    all_x = np.concatenate([x, new_x])
    rows = np.arange(n, n + n_new)
    start = np.concatenate([labels, np.full(n_new, -1, np.int64)])

    def step():
        search = add_and_search(new_x)
        edges = knn_edges(all_x, params.k, queries=rows, min_sim=params.edge_threshold, search=search)
        return agglomerate(all_x, edges, params, start=start)

    out = clock.run(f"assign {n_new} ({name})", step, parallel=True)
    got = out[rows]
    joined = int(np.isin(got, labels[labels >= 0]).sum())
    assert np.array_equal(out[:n][labels >= 0], labels[labels >= 0]), "an existing group changed"
    print(f"  {joined} joined an existing person, {int((got >= 0).sum()) - joined} formed new ones, "
          f"{int((got < 0).sum())} left unassigned; after: {scores_line(out, truth)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000, help="0 = only the baseline")
    parser.add_argument("--baseline-faces", type=int, default=100_000, help="0 = no baseline")
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-store-index", action="store_true", help="skip step 3b (its build takes minutes)")
    parser.add_argument("--known-people", action="store_true",
                        help="only step 3b, with the true identities (seen >= 2 times) as the existing people")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    params = GroupingParams.from_calibration(load_calibration("dlib-resnet-v1"))
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine_line()}; FAISS threads "
          f"{args.threads}; edge {params.edge_threshold:.3f}, link {params.link_threshold:.3f}, single "
          f"{params.single_threshold:.3f}, k {params.k}", flush=True)
    clock = Clock(args.threads)
    if args.baseline_faces:
        g = make_gallery(args.baseline_faces, seed=7)
        base, _ = from_scratch("before (M 32, ef 128)", g.vectors, g.identities, params, clock, m=32, ef=128)
        new, _ = from_scratch("job graph (M 16, ef 48)", g.vectors, g.identities, params, clock, m=16, ef=48)
        b = clock.total([r[0] for r in clock.rows if r[0].startswith("before")])
        j = clock.total([r[0] for r in clock.rows if r[0].startswith("job graph")])
        print(f"  at {args.baseline_faces}: job graph / before = {j[0] / b[0]:.2f} wall, {j[1] / b[1]:.2f} CPU; "
              f"agreement of the two groupings (one scored against the other as truth): "
              f"{scores_line(new, np.where(base >= 0, base, -2 - np.arange(len(base))))}", flush=True)
        del g, base, new
    if not args.faces:
        return
    gallery = make_gallery(args.faces, seed=7)
    x, truth = gallery.vectors, gallery.identities
    new_x, new_truth = gallery.probes(args.new, seed=11)
    all_truth = np.concatenate([truth, new_truth])
    if args.known_people:
        # The people are known (as if an operator had confirmed every identity seen twice or more); only the
        # incremental step through the store's index runs.
        sizes = np.bincount(truth)
        labels = np.where(sizes[truth] >= 2, truth, -1)
        store_incremental(x, labels, new_x, all_truth, params, clock, args.new)
        return
    labels, index = from_scratch(f"{args.faces}", x, truth, params, clock, m=16, ef=48)

    def job_add(q: np.ndarray):
        index.add(q)  # the job graph grows by the new faces, as a kept index would

        def search(v: np.ndarray, k: int):
            return index.search(v, k, params=faiss.SearchParametersHNSW(efSearch=max(48, k)))
        return search

    incremental("job graph kept", x, labels, new_x, all_truth, params, clock, job_add)
    if not args.no_store_index:
        store_incremental(x, labels, new_x, all_truth, params, clock, args.new)


def store_incremental(x: np.ndarray, labels: np.ndarray, new_x: np.ndarray, all_truth: np.ndarray,
                      params: GroupingParams, clock: Clock, n_new: int) -> None:
    """Step 3b: the new faces' neighbours from the store's own index (VectorIndex, default layout)."""
    from faceindex.store.vector_index import VectorIndex

    store = VectorIndex(x.shape[1], "synthetic")
    face_ids = np.arange(1, len(x) + 1, dtype=np.int64)
    clock.run(f"store index build ({store.layout}, at ingest: not counted)",
              lambda: store.add(face_ids, x), parallel=True)
    all_ids = np.arange(1, len(x) + n_new + 1, dtype=np.int64)

    def store_add(q: np.ndarray):
        store.add(all_ids[len(x):], q)  # ingest adds the new faces to the store's index
        return row_search(store.search, all_ids, spare=params.k)  # as PeopleOps asks

    incremental(f"store's index, {store.layout}, ef {store.params.ef_search}", x, labels, new_x, all_truth,
                params, clock, store_add)


if __name__ == "__main__":
    main()
