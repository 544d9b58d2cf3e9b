"""`people cluster` end to end (Engine, catalog + store index) on a synthetic store: from scratch, then +new faces.

    python bench/bench_people_e2e.py build --store /tmp/ps-100k --faces 100000       # once: catalog + index
    python bench/bench_people_e2e.py run --store /tmp/ps-100k --new 1000

`build` fills a real store (SQLite catalog + the store's FAISS index, saved) with store/synthetic.py faceprints
of identities (seed 7, as bench_people_scale.py), 4 faces per synthetic photo. `run` works on copies of it:
1. from scratch: `engine.people.cluster()` on a copy of the ungrouped store (wall, CPU, peak RSS);
2. 1 000 fresh photos of gallery identities are ingested (catalog rows + index catch-up, saved: not timed),
   the store is copied, and `people cluster` runs on each copy: the full-read path as it was
   (`incremental=False`) and the incremental path, in the same run (a ratio), with both results compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import machine_line  # noqa: E402

from faceindex.pipeline.types import Face  # noqa: E402
from faceindex.store.synthetic import make_gallery  # noqa: E402

MODEL = "dlib-resnet-v1+flip"
PER_IMAGE = 4


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def insert(catalog, collection_id: int, vectors: np.ndarray, tag: str, per_image: int = PER_IMAGE) -> None:
    """Insert the vectors as faces of synthetic photos (`per_image` each), 10 k photos per transaction."""
    step = 10_000 * per_image
    for start in range(0, len(vectors), step):
        with catalog.transaction():
            for lo in range(start, min(len(vectors), start + step), per_image):
                image_id = catalog.insert_image(collection_id, f"/synthetic/{tag}{lo:09d}.jpg",
                                                sha256=f"{tag}{lo:060d}", size_bytes=1)
                faces = [Face(box=(0, 0, 100, 100), score=1.0, detector="synthetic", landmarks=[], size_px=100,
                              blur=100.0, embedding=vectors[i]) for i in range(lo, min(len(vectors), lo + per_image))]
                catalog.insert_faces(image_id, faces, MODEL)


def build(root: Path, faces: int) -> None:
    from faceindex.store.face_store import FaceStore

    t = time.perf_counter()
    gallery = make_gallery(faces, seed=7)
    store = FaceStore(root)
    with store.catalog.transaction():
        store.catalog.bind_model(MODEL)
        collection = store.catalog.create_collection("scale", "legitimate-interests", "benchmark")
    insert(store.catalog, collection.id, gallery.vectors, "g")
    print(f"catalog: {faces} faces in {time.perf_counter() - t:.0f} s (load {load()})", flush=True)
    store.index()
    store.save_index()
    store.close()
    print(f"built {root} in {time.perf_counter() - t:.0f} s wall (load {load()})", flush=True)


def timed(label: str, fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"  {label}: wall {wall:.3f} s, CPU {cpu:.3f} s, peak RSS so far {rss} MiB (load {load()})", flush=True)
    return out, wall, cpu


def copy_store(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def cluster(root: Path, *, incremental: bool = True):
    from faceindex.engine.core import Engine

    engine = Engine.open(root, mode="write")
    try:
        engine.store.index()  # the index is loaded and caught up at open/ingest in a serving process: not timed
        return timed(f"people cluster ({'incremental' if incremental else 'full read, as before'})",
                     lambda: engine.people.cluster(incremental=incremental)) + (people_of(engine),)
    finally:
        engine.close()


def people_of(engine) -> dict[int, tuple[int | None, float | None]]:
    """face id -> (person id or None, confidence) of every face (the result to compare)."""
    rows = engine.catalog.conn.execute(
        "SELECT f.id, pf.person_id, pf.confidence FROM faces f LEFT JOIN person_faces pf ON pf.face_id = f.id"
        " AND pf.state != 'rejected'").fetchall()
    return {int(f): (p, c) for f, p, c in rows}


def add_new(root: Path, faces: int, new: int) -> None:
    """Ingest `new` fresh photos of gallery identities (one face each) and catch the index up (not timed)."""
    from faceindex.store.face_store import FaceStore

    gallery = make_gallery(faces, seed=7)
    new_x, _ = gallery.probes(new, seed=11)
    store = FaceStore(root)
    collection = store.catalog.get_collection("scale")
    insert(store.catalog, collection.id, new_x, "n", per_image=1)
    store.index()
    store.save_index()
    store.close()


def run(root: Path, new: int, work: Path, *, again: bool = False) -> None:
    from faceindex.store.face_store import FaceStore

    store = FaceStore(root, lazy=True)
    faces = store.catalog.max_face_id()
    store.catalog.close()
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine_line()}; store {root} ({faces} faces)",
          flush=True)
    grouped = work / "grouped"
    if not again:
        copy_store(root, grouped)
        print(f"1. from scratch, {faces} faces:", flush=True)
        report, _, _, _ = cluster(grouped)
        print(f"  {report.to_dict()}", flush=True)
        add_new(grouped, faces, new)
    old, new_root = work / "old", work / "new"
    copy_store(grouped, old)
    copy_store(grouped, new_root)
    print(f"2. {new} new faces into the grouped store:", flush=True)
    r_new, w_new, c_new, p_new = cluster(new_root, incremental=True)  # first: the cheap one, on a busy machine
    print(f"  incremental: {r_new.to_dict()}", flush=True)
    r_old, w_old, c_old, p_old = cluster(old, incremental=False)
    print(f"  full read: {r_old.to_dict()}\n  incremental: {r_new.to_dict()}", flush=True)
    print(f"  incremental / full read: wall {w_new / w_old:.3f}, CPU {c_new / c_old:.3f}", flush=True)
    same = sum(p_old[f] == p_new[f] for f in p_old)
    diff = [f for f in p_old if p_old[f] != p_new[f]]
    print(f"  same person and confidence for {same} of {len(p_old)} faces; differing: {len(diff)} "
          f"(first {diff[:10]}: old {[p_old[f] for f in diff[:5]]}, new {[p_new[f] for f in diff[:5]]})", flush=True)


def faceprint_reads(root: Path, n: int, seed: int = 5) -> None:
    """Read `n` random faces' faceprints by id: catalog blobs (PeopleStore.embeddings, what an incremental run
    uses) against the store index's memory-mapped vectors (id -> row by a sorted copy of the index's labels;
    private attributes of VectorIndex: a measurement, not an API). Both warm (page cache), one thread."""
    from faceindex.people.store import PeopleStore
    from faceindex.store.face_store import FaceStore

    store = FaceStore(root, lazy=True)
    index = store.index()
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, store.catalog.max_face_id() + 1), n, replace=False))
    people = PeopleStore(store.catalog)
    people.embeddings(ids.tolist())  # warm
    sql, w_sql, _ = timed(f"{n} faceprints from catalog blobs", lambda: people.embeddings(ids.tolist()))
    labels = index._labels

    def mapped():
        order = np.argsort(labels)  # the index keeps no id -> row map: a run would sort once
        rows = order[np.searchsorted(labels, ids, sorter=order)]
        return np.asarray(index._vectors()[rows])

    mapped()
    mm, w_mm, _ = timed(f"{n} faceprints from the index's vectors file (with the {len(labels)}-label sort)", mapped)
    print(f"  same vectors: {np.allclose(sql, mm, atol=1e-6)}; catalog / mapped file = {w_sql / w_mm:.1f}", flush=True)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["build", "run", "reads"])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--work", type=Path, help="where `run` puts its copies (default: beside --store)")
    parser.add_argument("--again", action="store_true",
                        help="`run` from step 2 on the grouped store (with the new faces) a previous run left")
    args = parser.parse_args()
    if args.what == "build":
        build(args.store, args.faces)
    elif args.what == "reads":
        faceprint_reads(args.store, args.new)
    else:
        run(args.store, args.new, args.work or args.store.parent / (args.store.name + "-work"), again=args.again)


if __name__ == "__main__":
    main()
