"""Benchmark: `faceindex add --ray` on a local Ray cluster (one, then two worker nodes of 1 CPU) against local ingest.

The same photos go through each run in the same invocation, each into a fresh store, so the ratios are what to
read. On a 2-core machine two worker nodes cannot beat the local process pool: this measures Ray's overhead and
the per-core rate that a cluster's size can be planned from, not a speed-up.

    python bench/bench_ray_ingest.py --images 120 [--source ../shared/faces/lfw-devtrain/images]

Per run: wall seconds of the whole command (process start, Ray connect, actor start and model loading, scan,
analysis, commits) and photos/s, overall and per core. Each run is also made on a folder of one photo: its wall
time is the run's fixed cost (for Ray: connecting, starting the job's worker processes, loading the models; a
first unmeasured one-photo run per configuration pays the one-off unpacking of the shipped code on each node),
and (N - 1) / (wall N - wall 1) is the steady rate once that is paid, the figure a cluster's size is planned from.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine_line

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEINDEX_TEST_FACES", REPO.parent / "shared" / "faces"))
DEFAULT_SOURCE = FACES / "lfw-devtrain" / "images"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def pick_images(source: Path, n: int) -> list[Path]:
    """Every k-th photo of the sorted folder, so the sample spans many identities deterministically."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    step = max(1, len(files) // n)
    return files[::step][:n]


def ingest(photos: Path, store: Path, *extra: str, env: dict | None = None) -> tuple[float, dict]:
    """(wall seconds, the JSON report) of one `faceindex add` into a fresh store."""
    command = [sys.executable, "-m", "faceindex", "add", str(photos), "-c", "bench", "--basis", "consent",
               "--purpose", "benchmark", "--store", str(store), "--json", *extra]
    start = time.monotonic()
    done = subprocess.run(command, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(extra)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from faceindex.ingest.ray_localcluster import LocalRayCluster

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    photos = work / "photos"
    photos.mkdir()
    for i, path in enumerate(pick_images(args.source, args.images)):
        shutil.copy(path, photos / f"{i:05d}{path.suffix.lower()}")
    n = len(list(photos.iterdir()))
    one = work / "one"
    one.mkdir()
    shutil.copy(sorted(photos.iterdir())[0], one)
    print(f"{dt.date.today()} · {machine_line()} · {n} photos of {args.source.name}", flush=True)
    rows = []

    def run(name: str, cores: int, *extra: str, env: dict | None = None) -> None:
        # Not measured: the first job on a node also unpacks the shipped code there (cached for later jobs).
        ingest(one, work / f"warm-{len(rows)}", *extra, env=env)
        fixed, _ = ingest(one, work / f"one-{len(rows)}", *extra, env=env)
        wall, report = ingest(photos, work / f"store-{len(rows)}", *extra, env=env)
        rows.append((name, cores, wall, fixed, report["faces"]))
        print(f"{name}: {wall:.1f} s wall ({fixed:.1f} s for one photo), {report['faces']} faces", flush=True)

    try:
        run("local, --workers 1", 1, "--workers", "1")
        run("local, --workers 2", 2, "--workers", "2")
        # Ray starts every actor with OMP_NUM_THREADS = its CPUs (1 here); the same cap on a local run tells the
        # scheduler's effect apart from that of BLAS/OpenMP threads fighting for the cores.
        run("local, --workers 1, OMP_NUM_THREADS=1 (as Ray sets)", 1, "--workers", "1", env={"OMP_NUM_THREADS": "1"})
        run("local, --workers 2, OMP_NUM_THREADS=1 (as Ray sets)", 2, "--workers", "2", env={"OMP_NUM_THREADS": "1"})
        start = time.monotonic()
        with LocalRayCluster(workers=1) as cluster:
            started = time.monotonic() - start
            run("--ray, 1 worker node", 1, "--ray", cluster.address, env=cluster.env)
            cluster.add_worker()
            run("--ray, 2 worker nodes", 2, "--ray", cluster.address, env=cluster.env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0][2]
    faces = {r[4] for r in rows}
    print(f"\nfaces found: {'the same in every run' if len(faces) == 1 else f'DIFFER between runs: {sorted(faces)}'}")
    print(f"Ray cluster start (head + 1 worker node, not counted below): {started:.1f} s\n")
    print(f"| run | cores | wall s ({n} photos) | photos/s | per core | vs local 1 worker | fixed cost s (1 photo) "
          "| steady photos/s | steady per core | faces |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, cores, wall, fixed, faces in rows:
        steady = (n - 1) / max(wall - fixed, 1e-9)
        print(f"| {name} | {cores} | {wall:.1f} | {n / wall:.2f} | {n / wall / cores:.2f} | {base / wall:.2f}x | "
              f"{fixed:.1f} | {steady:.2f} | {steady / cores:.2f} | {faces} |")


if __name__ == "__main__":
    main()
