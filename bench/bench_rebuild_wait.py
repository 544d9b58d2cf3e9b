"""Benchmark: how long an `add` of a few real photos waits while the index is rebuilt, before and after.

Fills a real store with N synthetic faceprints shaped like dlib's (the default layout: HNSW-SQ8 over a memory-
mapped vectors file above 50 k faces), builds its index, then in one run and one process:

- "alone": `Engine.ingest` of 3 photos with no rebuild running (the add's own cost: decode, detect, embed, commit);
- "locked": the same kind of add started while `FaceStore.rebuild_index` runs with the write lock held for the
  whole build (the behaviour before the snapshot build; forced with `locked_build_below`);
- "snapshot": the same while a snapshot build runs (the write lock only for its short end).

Each add uses photos not yet in the store (an add of known photos would be skipped by content hash). The add
starts 1 s after the rebuild (so the build holds whatever it holds); its wall time is reported against the
rebuild's. The ratio locked/snapshot is the figure; "alone" says how much of an add is its own work.

    python bench/bench_rebuild_wait.py --faces 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import threading
import time
from pathlib import Path

from bench_store_scale import fill_catalog
from benchlib import machine_line

from faceindex.config import Settings
from faceindex.engine import Engine
from faceindex.store.face_store import FaceStore
from faceindex.store.synthetic import make_gallery

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces" / "people"
PHOTOS = {  # 3 photos per arm, one face each, none shared between arms
    "warm-up": ["Barack_Obama/face_recognition__obama.jpg"],
    "alone": ["Barack_Obama/face_recognition__obama1.jpg", "Barack_Obama/face_recognition__obama2.jpg",
              "Barack_Obama/face_recognition__obama3.jpg"],
    "locked": ["Barack_Obama/face_recognition__obama-240p.jpg", "Barack_Obama/face_recognition__obama-480p.jpg",
               "Barack_Obama/face_recognition__obama-720p.jpg"],
    "snapshot": ["Barack_Obama/face_recognition__obama-1080p.jpg",
                 "Barack_Obama/face_recognition__obama_partial_face.jpg", "Barack_Obama/face_recognition__32bit.png"],
}


def timed_add(engine: Engine, arm: str) -> tuple[float, int]:
    start = time.perf_counter()
    report = engine.ingest([FACES / p for p in PHOTOS[arm]], "news", basis="consent", purpose="benchmark")
    return time.perf_counter() - start, report.counts()["faces"]


def add_during_rebuild(engine: Engine, arm: str, locked: bool) -> tuple[float, float, int]:
    """(add wall s, rebuild wall s, faces added) with the add started 1 s into a rebuild."""
    store = engine.store
    store.locked_build_below = 10**12 if locked else 0
    out: dict[str, float] = {}

    def rebuild() -> None:
        start = time.perf_counter()
        store.rebuild_index()
        out["rebuild"] = time.perf_counter() - start

    builder = threading.Thread(target=rebuild)
    builder.start()
    time.sleep(1.0)
    assert builder.is_alive(), "the rebuild ended within 1 s: use more --faces"
    add_s, faces = timed_add(engine, arm)
    builder.join()
    return add_s, out["rebuild"], faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        root = Path(tmp) / "store"
        store = FaceStore(root)
        fill_catalog(store, make_gallery(args.faces, seed=5).vectors)
        t0 = time.perf_counter()
        kind = store.index().kind
        first_build = time.perf_counter() - t0
        store.close()
        with Engine.open(root, Settings(workers=1), mode="write") as engine:
            timed_add(engine, "warm-up")  # loads the models once, outside every timed add
            alone, _ = timed_add(engine, "alone")
            rows = [(arm, *add_during_rebuild(engine, arm, locked=arm == "locked")) for arm in ("locked", "snapshot")]
            faces = engine.stats()["faces"]
    print(f"# rebuild wait — {dt.date.today()} — {machine_line()}")
    print(f"{args.faces:,} synthetic faces, index {kind} (first build {first_build:.1f} s); {faces:,} faces at the end")
    print("| add of 3 photos | add wall s | rebuild wall s | faces added |")
    print("|---|---|---|---|")
    print(f"| alone (no rebuild) | {alone:.2f} | - | 3 photos |")
    for arm, add_s, rebuild_s, added in rows:
        print(f"| during a {arm} rebuild | {add_s:.2f} | {rebuild_s:.1f} | {added} |")
    locked, snapshot = rows[0][1], rows[1][1]
    print(f"ratio locked / snapshot add wall: {locked / snapshot:.1f}x "
          f"(waiting beyond the add's own {alone:.2f} s: {locked - alone:.1f} s vs {snapshot - alone:.1f} s)")


if __name__ == "__main__":
    main()
