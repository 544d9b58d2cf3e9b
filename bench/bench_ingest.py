"""Benchmark: ingest throughput of `faceindex add` against the face_recognition CLI on the same photos.

Both use the same dlib HOG detector (upsample 1) and the same dlib ResNet weights. The baseline
runs in the same invocation, so the ratio is what to read, not the absolute seconds.

    python bench/bench_ingest.py --images 400 [--source ../shared/faces/lfw-devtrain/images]
    python bench/bench_ingest.py --images 60 --source ../shared/faces/people --profile   (CPU per stage, no baseline)

Needs `pip install --no-deps face_recognition` (its `dlib` requirement would compile dlib from
source; dlib-bin already provides the module).
"""

from __future__ import annotations

import argparse
import datetime as dt
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


def pick_images(source: Path, n: int) -> list[Path]:
    """Every k-th photo of the sorted folder, so the sample spans many identities deterministically."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    step = max(1, len(files) // n)
    return files[::step][:n]


def run_face_recognition(known: Path, unknown: Path, cpus: int) -> tuple[float, int, int]:
    """(seconds, faces found, images with no face) for the face_recognition CLI."""
    exe = shutil.which("face_recognition") or str(Path(sys.executable).parent / "face_recognition")
    start = time.perf_counter()
    done = subprocess.run([exe, "--cpus", str(cpus), str(known), str(unknown)], capture_output=True, text=True,
                          check=True)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if "," in line]
    no_face = sum(1 for line in lines if line.endswith("no_persons_found"))
    return seconds, len(lines) - no_face, no_face


def run_faceindex(unknown: Path, store: Path, workers: int, extra_env: dict | None = None) -> tuple[float, int, int]:
    """(seconds, faces found incl. quality rejects, images with no face) for `faceindex add`."""
    import json

    env = {**os.environ, **(extra_env or {})}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "faceindex", "add", str(unknown), "--collection", "bench", "--basis",
                           "legitimate-interests", "--purpose", "benchmark", "--store", str(store), "--workers",
                           str(workers), "--json"], capture_output=True, text=True, check=True, env=env)
    seconds = time.perf_counter() - start
    report = json.loads(done.stdout.strip().splitlines()[-1])
    import sqlite3

    conn = sqlite3.connect(store / "catalog.sqlite")
    no_face = conn.execute("SELECT count(*) FROM images WHERE status='indexed' AND id NOT IN "
                           "(SELECT image_id FROM faces)").fetchone()[0]
    conn.close()
    return seconds, report["faces"] + report["rejected_faces"], no_face


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--baseline-only", action="store_true",
                        help="skip the informational rows (CLI on all cores, faceindex on dlib's runtime): the ratio "
                        "needs only the CLI --cpus 1 and faceindex's default")
    parser.add_argument("--also-src", type=Path, action="append", default=[],
                        help="also time the default `faceindex add` with these sources first on PYTHONPATH (e.g. "
                        "another checkout's src/, for a before/after in the same run); repeatable")
    parser.add_argument("--profile", action="store_true",
                        help="only print one worker's CPU per stage on the sample (ingest_profile.py)")
    args = parser.parse_args()
    images = pick_images(args.source, args.images)
    if args.profile:
        from ingest_profile import print_profile

        print(f"### One worker's CPU per stage, {len(images)} photos from {args.source.name} ({dt.date.today()})")
        print(f"- machine: {machine_line()}")
        print_profile(images)
        return
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        unknown, known = tmp / "photos", tmp / "known"
        unknown.mkdir()
        known.mkdir()
        for n, src in enumerate(images):
            shutil.copy(src, unknown / f"{n:05d}_{src.name}")
        shutil.copy(images[0], known / "someone.jpg")
        rows = []
        for cpus in (1,) if args.baseline_only else (1, -1):
            rows.append((f"face_recognition CLI --cpus {cpus}", *run_face_recognition(known, unknown, cpus)))
        if not args.baseline_only:
            rows.append(("faceindex add --workers 1, dlib runtime",
                         *run_faceindex(unknown, tmp / "s1", 1, {"FACEINDEX_EMBED_RUNTIME": "dlib"})))
        rows.append((f"faceindex add --workers {cores} (default)", *run_faceindex(unknown, tmp / "s2", cores)))
        for n, src in enumerate(args.also_src):
            env = {"PYTHONPATH": os.pathsep.join([str(src.resolve()), os.environ.get("PYTHONPATH", "")])}
            rows.append((f"faceindex add --workers {cores} (default), sources {src}",
                         *run_faceindex(unknown, tmp / f"also{n}", cores, env)))
    base = rows[0][1]
    print(f"### Ingest throughput, {len(images)} photos from {args.source.name} ({dt.date.today()})")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- machine: {machine_line()}")
    print("\n| run | seconds | photos/s | faces found | photos with no face | speed vs face_recognition --cpus 1 |")
    print("|---|---|---|---|---|---|")
    for name, seconds, faces, no_face in rows:
        print(f"| {name} | {seconds:.1f} | {len(images) / seconds:.2f} | {faces} | {no_face} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
